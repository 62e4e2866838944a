"""Peak RSS and wall time of `vidcurate run` over many tiny videos, in one pass and in
batches (--batch-videos), on the in-memory DirectRunner (issue 18).

The videos are generated (two lavfi shots of 1-1.8 s at 128x72, distinct content) and
run split only (no CLIP, ASR or OCR; --min-clip-s 0.8 so each makes clips). The ratio
to watch is peak RSS of the many-video run over the few-video run: in one pass it grows
with the number of videos, in batches it stays with the batch. Each run gets a fresh
parent, so ru_maxrss of its children is this run's largest process.

Usage: python -m benchmarks.batches_bench [--few 20] [--many 200] [--batch 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import wall_and_peak
from tests.support.media import SOURCES, Clip, make_cuts_video

VCURATE = str(Path(sys.executable).parent / "vidcurate")
CORPUS = Path(tempfile.gettempdir()) / "vidcurate-batches-bench"


def corpus(count: int) -> Path:
    """count distinct tiny videos (made once, reused)."""
    folder = CORPUS / f"{count}"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(SOURCES)
    for i in range(count):
        path = folder / f"v{i:05d}.mp4"
        if path.exists():
            continue
        first = names[i % len(names)]
        second = names[(i // len(names) + 1 + i) % len(names)]
        if second == first:
            second = names[(names.index(second) + 1) % len(names)]
        make_cuts_video(path, [Clip(first, 1.0 + (i % 5) * 0.2),
                               Clip(second, 1.0 + (i // 5 % 5) * 0.2)],
                        size=(128, 72), fps=15, audio=False, gop=15)
    return folder


def measure(folder: Path, batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="batches-bench-") as tmp:
        cmd = [VCURATE, "run", "--input", str(folder), "--output", f"{tmp}/out",
               "--work-dir", f"{tmp}/work", "--no-clip", "--no-asr", "--no-ocr",
               "--no-nsfw", "--min-clip-s", "0.8", "--batch-videos", str(batch)]
        return wall_and_peak(cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--few", type=int, default=20)
    parser.add_argument("--many", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()

    rows = []
    for count in (args.few, args.many):
        folder = corpus(count)
        for batch in (0, args.batch):
            got = measure(folder, batch)
            rows.append((count, batch, got))
            print(f"{count} videos, --batch-videos {batch}: {got}", file=sys.stderr)
    print("\n| videos | --batch-videos | peak RSS MB | wall s |\n|---|---|---|---|")
    for count, batch, got in rows:
        print(f"| {count} | {batch} | {got['rss_mb']:.0f} | {got['wall']:.1f} |")
    rss = {(c, b): g["rss_mb"] for c, b, g in rows}
    print(f"\npeak RSS {args.many}/{args.few} videos: one pass "
          f"{rss[(args.many, 0)] / rss[(args.few, 0)]:.3f}, in batches of {args.batch} "
          f"{rss[(args.many, args.batch)] / rss[(args.few, args.batch)]:.3f}")


if __name__ == "__main__":
    main()
