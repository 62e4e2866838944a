"""Per-video overhead and memory: the same footage as a few long videos and as
hundreds of short ones (issue 18).

The long corpus is peer_bench's footage as 60 s 720p videos (30 by default). The short one is
the same files stream-copied into pieces of about 10 s (short-form length; each piece
starts on a keyframe, so no frame is re-encoded): the same pixels and the same cuts, in
about 6 times as many files. `vidcurate run` split only (no CLIP, ASR or OCR; copy-mode
clips and default keyframes) runs over both, alternated, median of --repeat; the extra
wall time per extra file is the per-video overhead (target <= 0.3 s). Peak RSS of each
run shows whether memory grows with the number of videos (target: flat).

Usage: python -m benchmarks.short_videos_bench [--repeat 3] [--workers 2] [--videos 30]
       [--piece-s 10]   (30 videos of 60 s against 180 of 10 s)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import wall_and_peak
from benchmarks.peer_bench import PEER, build_corpus

VCURATE = str(Path(sys.executable).parent / "vidcurate")


def short_corpus(long_files: list[Path], piece_s: int) -> Path:
    folder = PEER / f"short-{len(long_files)}x{piece_s}s"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for f in long_files:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(f), "-map", "0",
                        "-c", "copy", "-f", "segment", "-segment_time", str(piece_s),
                        "-reset_timestamps", "1", str(folder / f"{f.stem}-%03d.mp4")],
                       check=True)
    done.touch()
    return folder


def measure(corpus: Path, workers: int) -> dict:
    """Wall time and peak RSS of one split-only run (a fresh parent per run, so
    ru_maxrss is this run's own largest process)."""
    with tempfile.TemporaryDirectory(prefix="short-bench-") as tmp:
        cmd = [VCURATE, "run", "--input", str(corpus), "--output", f"{tmp}/out", "--no-clip",
               "--no-asr", "--no-ocr", "--no-nsfw"]
        if workers > 1:
            cmd += ["--direct_num_workers", str(workers), "--direct_running_mode",
                    "multi_processing"]
        return wall_and_peak(cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--piece-s", type=int, default=10)
    parser.add_argument("--videos", type=int, default=30)
    args = parser.parse_args()

    long_dir, _ = build_corpus(args.videos, 60)
    long_files = sorted(long_dir.glob("*.mp4"))
    short_dir = short_corpus(long_files, args.piece_s)
    corpora = {"long": long_dir, "short": short_dir}
    counts = {name: len(list(d.glob("*.mp4"))) for name, d in corpora.items()}
    runs: dict[str, list[dict]] = {name: [] for name in corpora}
    for round_ in range(args.repeat):
        for name in (corpora if round_ % 2 == 0 else reversed(corpora)):
            runs[name].append(measure(corpora[name], args.workers))
            print(f"round {round_ + 1}: {name}: {runs[name][-1]}", file=sys.stderr)
    wall = {n: statistics.median(r["wall"] for r in runs[n]) for n in corpora}
    rss = {n: max(r["rss_mb"] for r in runs[n]) for n in corpora}
    overhead = (wall["short"] - wall["long"]) / (counts["short"] - counts["long"])
    print(f"\nsplit only, {args.workers} worker(s), median of {args.repeat}\n")
    print("| corpus | files | wall s | s per file | peak RSS MB |")
    print("|---|---|---|---|---|")
    for n in corpora:
        print(f"| {n} | {counts[n]} | {wall[n]:.1f} | {wall[n] / counts[n]:.2f} | "
              f"{rss[n]:.0f} |")
    print(f"\nper-video overhead: {overhead:.3f} s (target <= 0.3); "
          f"peak RSS short/long: {rss['short'] / rss['long']:.2f} (target ~1.0)")


if __name__ == "__main__":
    main()
