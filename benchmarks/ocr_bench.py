"""OCR benchmark: seconds per 720p keyframe, RapidOCR defaults against our fast settings,
on one core and on all cores, and OCR's share of end-to-end pipeline time.

Prints a markdown table; every figure is measured in this one run.
Usage: python benchmarks/ocr_bench.py [--frames 12]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tests.support.media import Text, TextShot, make_text_video  # noqa: E402
from vidcurate.pipeline.options import OcrConfig  # noqa: E402
from vidcurate.pipeline.query import connect  # noqa: E402
from vidcurate.pipeline.run import run  # noqa: E402
from vidcurate.transforms.media.decoding import read_frame  # noqa: E402
from vidcurate.transforms.models import import_rapidocr  # noqa: E402
from vidcurate.transforms.models.ocr import engine_params  # noqa: E402

FAST = OcrConfig(enabled=True, min_confidence=0.5, det_side=960, angle_cls=False)
SHOTS = [
    TextShot("mandelbrot", 3, (Text("Breaking News at Nine", size=56, x="80", y="h-140",
                                    box=True),)),
    TextShot("gradients", 3),
    TextShot("slate", 3, tuple(Text(f"Line {i}: the quick brown fox jumps", size=40,
                                    x="100", y=str(100 + 90 * i)) for i in range(5))),
    TextShot("mandelbrot", 3, (Text("LIVE Markets rally as tech stocks climb",
                                    font="DejaVuSansMono.ttf", size=36, x="40+60*t", y="40",
                                    box=True),)),
]


def engine(params: dict, threads: int | None):
    params = dict(params)
    if threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    ocr = import_rapidocr().RapidOCR(params=params)
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # "no text" warning per frame
    return ocr


def per_frame(ocr, frames) -> float:
    ocr(frames[0])  # warm-up: first call allocates
    start = time.perf_counter()
    for f in frames:
        ocr(f)
    return (time.perf_counter() - start) / len(frames)


def timed_run(args: list[str]) -> float:
    start = time.perf_counter()
    run(args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="720p keyframes to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        video = make_text_video(tmp / "text720.mp4", SHOTS * 2)
        base = ["--no-clip", "--input", str(video), "--clip-media", "none", "--keyframes", "3",
                "--keyframe-width", "1280"]
        t_without = timed_run([*base, "--output", str(tmp / "no-ocr"), "--no-ocr"])
        t_with = timed_run([*base, "--output", str(tmp / "ocr")])
        uris = [u for (us,) in connect(str(tmp / "no-ocr")).sql(
            "SELECT keyframe_uris FROM clips").fetchall() for u in us][: args.frames]
        frames = [read_frame(u) for u in uris]
        rows = []
        defaults = {"Global.log_level": "warning"}
        for name, params in (("RapidOCR defaults", defaults), ("fast (ours)",
                                                               engine_params(FAST))):
            one = per_frame(engine(params, 1), frames)
            every = per_frame(engine(params, None), frames)
            rows.append((name, one, every))
    cores = os.cpu_count()
    print(f"| settings | s / 720p keyframe, 1 core | s / 720p keyframe, {cores} cores |")
    print("|---|---|---|")
    for name, one, every in rows:
        print(f"| {name} | {one:.3f} | {every:.3f} |")
    share = (t_with - t_without) / t_with
    print(f"\n{len(frames)} keyframes of {frames[0].shape[1]}x{frames[0].shape[0]}; target: fast "
          f"<= 0.5 s per keyframe per core.")
    print(f"end to end on a {len(SHOTS) * 2 * 3} s 720p video (3 keyframes per clip): "
          f"{t_without:.1f} s without OCR, {t_with:.1f} s with; OCR's share {share:.0%}")


if __name__ == "__main__":
    main()
