"""Picture signals and decoder errors, from the cut detector's one downscaled decode.

FrameSignalsObserver is a scenes.FrameObserver: it sees every frame of the detect
decode (BGR, --detect-width wide) and measures every `stride`-th one (about 8 a second):
  - the lit area: rows and columns with at least 1% of their pixels above luma 24/255
    (black letterbox / pillarbox bars are below it); the statistics below are taken
    inside it, so bars neither darken nor flatten a clip;
  - brightness and contrast: mean and standard deviation of luma (BT.601), 0-1;
  - sharpness: variance of the Laplacian of luma (0-255) on the frame resampled to a
    fixed 256 px width, so the source resolution does not change the scale;
  - motion: DIS optical flow (OpenCV, ultrafast preset) between this sample and the
    previous one on a 128 px wide grey frame, in frame diagonals per second: the mean
    flow length over the lit area, and the least moving cell of a grid of square cells
    a quarter of the width wide. Measuring pairs ~0.12 s apart keeps temporal grain
    (a fraction of a pixel per pair, whatever the spacing) small against real motion;
    benchmarks/motion_bench.py compares this with frame differences, phase correlation,
    Farneback, Lucas-Kanade and codec motion vectors;
  - camera motion: a camera model fitted to the same flow (transforms/camera_motion.py):
    pan, tilt and zoom rates and the subject motion the model does not explain.
A few floats per sample are kept (FrameSignals); clip_signals aggregates them over a
clip's span. DecodeErrorCollector listens to ffmpeg's stderr during the same decode and
places each error line at the frames read when it arrived (DecodeLog).
"""

from __future__ import annotations

import bisect
import math
import os
import re
from array import array

import cv2
import numpy as np

from vidcurate.schemas.records import ClipSignals, DecodeError, DecodeLog, FrameSignals, Span
from vidcurate.transforms.camera_motion import clip_camera, fit_camera

SAMPLES_PER_S = 8
PICTURE_WIDTH = 256  # brightness, contrast, sharpness and the lit area are measured here
FLOW_WIDTH = 128  # optical flow runs on this width
GRID_COLUMNS = 4  # motion_patch_min: square cells, this many across the lit area
LIT_LEVEL = 24  # luma 0-255 above which a pixel is picture, not black bar
LIT_SHARE = 0.01  # a row / column is picture when this share of its pixels is lit
MAX_KEPT_ERRORS = 100  # error lines kept with their text (all are counted)


def sample_stride(fps: float) -> int:
    """Measure every k-th frame: about SAMPLES_PER_S samples a second."""
    return max(1, round(fps / SAMPLES_PER_S))


def lit_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """[x0, y0, x1, y1) of the rows and columns holding picture; all zero when none do."""
    lit = cv2.threshold(grey, LIT_LEVEL, 1, cv2.THRESH_BINARY)[1]
    h, w = grey.shape
    per_row = cv2.reduce(lit, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    per_col = cv2.reduce(lit, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = np.flatnonzero(per_row >= max(1.0, LIT_SHARE * w))
    cols = np.flatnonzero(per_col >= max(1.0, LIT_SHARE * h))
    if not len(rows) or not len(cols):
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def grid_min(values: np.ndarray, columns: int = GRID_COLUMNS) -> float:
    """The smallest mean over a grid of about square cells, `columns` across."""
    h, w = values.shape
    cols = max(1, min(columns, w))
    rows = max(1, min(h, round(h * cols / w)))
    cells = cv2.resize(values, (cols, rows), interpolation=cv2.INTER_AREA)
    return float(cells.min())


class FrameSignalsObserver:
    """Compact statistics of every `stride`-th frame (see the module docstring)."""

    def __init__(self, fps: float, source_size: tuple[int, int], stride: int | None = None
                 ) -> None:
        self.fps = fps
        self.source_size = source_size
        self.stride = stride or sample_stride(fps)
        self.n = 0
        self.size: tuple[int, int] | None = None  # measured frame (w, h)
        self.flow_size: tuple[int, int] | None = None
        self.prev: np.ndarray | None = None
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.brightness = array("f")
        self.contrast = array("f")
        self.sharpness = array("f")
        self.motion = array("f")
        self.patch_min = array("f")
        self.camera = [array("f") for _ in range(4)]  # pan, tilt, zoom, subject motion
        self.boxes = array("h")

    def observe(self, frame: np.ndarray) -> None:
        i = self.n
        self.n += 1
        if i % self.stride:
            return
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self.size is None:
            h, w = grey.shape
            self.size = (PICTURE_WIDTH, max(2, round(h * PICTURE_WIDTH / w)))
            self.flow_size = (FLOW_WIDTH, max(2, round(h * FLOW_WIDTH / w)))
        if grey.shape[1] != self.size[0] or grey.shape[0] != self.size[1]:
            shrink = grey.shape[1] > self.size[0]
            grey = cv2.resize(grey, self.size,
                              interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        box = lit_box(grey)
        x0, y0, x1, y1 = box if box[2] else (0, 0, *self.size)
        picture = grey[y0:y1, x0:x1]
        mean, std = cv2.meanStdDev(picture)
        _, lap_std = cv2.meanStdDev(cv2.Laplacian(picture, cv2.CV_16S))
        self.brightness.append(float(mean[0, 0]) / 255)
        self.contrast.append(float(std[0, 0]) / 255)
        self.sharpness.append(float(lap_std[0, 0]) ** 2)
        self.boxes.extend(box)
        self._motion(grey, (x0, y0, x1, y1))

    def _motion(self, grey: np.ndarray, box: tuple[int, int, int, int]) -> None:
        assert self.flow_size is not None and self.size is not None
        small = cv2.resize(grey, self.flow_size, interpolation=cv2.INTER_AREA)
        prev, self.prev = self.prev, small
        if prev is None:
            self.motion.append(math.nan)
            self.patch_min.append(math.nan)
            for series in self.camera:
                series.append(math.nan)
            return
        flow = self.flow.calc(prev, small, None)
        f = self.flow_size[0] / self.size[0]
        x0, y0 = int(box[0] * f), int(box[1] * f)
        x1, y1 = max(x0 + 1, math.ceil(box[2] * f)), max(y0 + 1, math.ceil(box[3] * f))
        region = flow[y0:y1, x0:x1]
        length = cv2.magnitude(region[..., 0], region[..., 1])
        # Pixels per pair -> frame diagonals per second.
        scale = self.fps / self.stride / math.hypot(*self.flow_size)
        self.motion.append(float(length.mean()) * scale)
        self.patch_min.append(grid_min(length) * scale)
        camera = fit_camera(flow, (x0, y0, x1, y1), self.stride / self.fps)
        for series, value in zip(self.camera, camera, strict=True):
            series.append(value)

    def result(self) -> FrameSignals:
        w, h = self.size or (0, 0)
        return FrameSignals(
            fps=self.fps, stride=self.stride, frame_count=self.n, width=w, height=h,
            source_width=self.source_size[0], source_height=self.source_size[1],
            brightness=np.frombuffer(self.brightness, np.float32).copy(),
            contrast=np.frombuffer(self.contrast, np.float32).copy(),
            sharpness=np.frombuffer(self.sharpness, np.float32).copy(),
            motion=np.frombuffer(self.motion, np.float32).copy(),
            motion_patch_min=np.frombuffer(self.patch_min, np.float32).copy(),
            camera_pan=np.frombuffer(self.camera[0], np.float32).copy(),
            camera_tilt=np.frombuffer(self.camera[1], np.float32).copy(),
            camera_zoom=np.frombuffer(self.camera[2], np.float32).copy(),
            subject_motion=np.frombuffer(self.camera[3], np.float32).copy(),
            boxes=np.frombuffer(self.boxes, np.int16).reshape(-1, 4).copy(),
        )


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def source_box(signals: FrameSignals, boxes: np.ndarray) -> tuple[int, int, int, int] | None:
    """The union of lit boxes (measured-frame pixels) in source pixels, rounded outwards;
    None when every frame was black."""
    boxes = boxes[boxes[:, 2] > 0]
    if not len(boxes) or not signals.width:
        return None
    sx = signals.source_width / signals.width
    sy = signals.source_height / signals.height
    x0, y0 = int(boxes[:, 0].min()), int(boxes[:, 1].min())
    x1, y1 = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    return (max(0, math.floor(x0 * sx)), max(0, math.floor(y0 * sy)),
            min(signals.source_width, math.ceil(x1 * sx)),
            min(signals.source_height, math.ceil(y1 * sy)))


def clip_signals(span: Span, signals: FrameSignals | None, log: DecodeLog | None,
                 keyframes: list[int] | None = None) -> ClipSignals:
    """A clip's signals: the means over the samples in its span (motion and camera
    motion over the sample pairs that lie wholly inside it), the union of their lit
    boxes, and the decoder error lines that can touch it (decode_error_count; see
    error_windows)."""
    errors = None if log is None else count_errors(log, span, keyframes)
    if signals is None or not signals.samples:
        return ClipSignals(decode_error_count=errors)
    k = signals.stride
    first = -(-span.start_frame // k)
    stop = min(signals.samples, -(-span.end_frame // k))
    if first >= stop:
        return ClipSignals(decode_error_count=errors)
    pairs = slice(first + 1, stop)  # motion[j] spans samples j-1 .. j
    return ClipSignals(
        motion_score=_mean(signals.motion[pairs]),
        motion_patch_min=_mean(signals.motion_patch_min[pairs]),
        **clip_camera(signals.camera_pan[pairs], signals.camera_tilt[pairs],
                      signals.camera_zoom[pairs], signals.subject_motion[pairs]),
        brightness=_mean(signals.brightness[first:stop]),
        contrast=_mean(signals.contrast[first:stop]),
        sharpness=_mean(signals.sharpness[first:stop]),
        content_box=source_box(signals, signals.boxes[first:stop]),
        decode_error_count=errors,
    )


# --- decoder errors -----------------------------------------------------------------

_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+\]")
_REPEATED = re.compile(r"\s*Last message repeated (\d+) times?")
# Frames an auto-threaded ffmpeg decodes ahead at most (its frame-thread cap is 16), and
# what the filter graph and the pipe buffer hold on top.
_AUTO_THREADS_MAX = 16
# ffmpeg's decoder names (its log tags) for audio codecs whose decoder is named otherwise.
_AUDIO_DECODERS = {"mp3": ("mp3float", "mp3"), "mp2": ("mp2float", "mp2"),
                   "opus": ("opus", "libopus"), "vorbis": ("vorbis", "libvorbis")}
_BUFFERED_FRAMES = 8


def decoder_lag_frames(threads: int) -> int:
    """How many frames the decoder can be ahead of the reader: its frame threads plus
    what the filters and the pipe hold."""
    if not threads:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        threads = min(_AUTO_THREADS_MAX, cpus + 1)
    return threads + _BUFFERED_FRAMES


class DecodeErrorCollector:
    """A tools.StderrListener for the detect decode: counts ffmpeg's error lines per
    frame position (ffmpeg's "Last message repeated N times" adds N to the line before)
    and keeps the text of the first MAX_KEPT_ERRORS."""

    def __init__(self, fps: float, lag_frames: int, keep: int = MAX_KEPT_ERRORS,
                 audio_codec: str | None = None) -> None:
        self.fps, self.lag_frames, self.keep = fps, lag_frames, keep
        # ffmpeg decodes a few audio frames while it opens the file, even with -an: a
        # damaged audio track's complaints say nothing about the picture.
        self.ignored = tuple(f"[{name} " for name in _AUDIO_DECODERS.get(
            audio_codec or "", (audio_codec,)) if name)
        self.counts: dict[int, int] = {}
        self.kept: list[DecodeError] = []
        self.total = 0
        self._last_at = 0

    def __call__(self, line: str, frames_read: int) -> None:
        if self.ignored and line.lstrip().startswith(self.ignored):
            self._last_at = -1  # a repeat of this line is ignored too
            return
        if m := _REPEATED.match(line):
            if self._last_at < 0:
                return
            at, n = self._last_at, int(m.group(1))
        else:
            at, n = frames_read, 1
            self._last_at = at
            if len(self.kept) < self.keep:
                text = _ADDRESS.sub("]", line.strip())[:300]
                self.kept.append(DecodeError(time_s=round(at / self.fps, 3), message=text))
        self.counts[at] = self.counts.get(at, 0) + n
        self.total += n

    def result(self) -> DecodeLog:
        frames = sorted(self.counts)
        return DecodeLog(fps=self.fps, lag_frames=self.lag_frames,
                         frames=np.array(frames, np.int32),
                         counts=np.array([self.counts[f] for f in frames], np.int32),
                         kept=tuple(self.kept), total=self.total)


def error_windows(log: DecodeLog, keyframes: list[int] | None = None
                  ) -> list[tuple[int, int, int]]:
    """(first frame, end frame, lines) each error position can have damaged: a line read
    at frame r is about a frame in [r, r + lag]; the damage shows from there to the next
    keyframe (where an H.264 / HEVC decoder recovers), when keyframes (frame numbers,
    sorted) are known, else to r + lag."""
    windows = []
    for r, n in zip(log.frames.tolist(), log.counts.tolist(), strict=True):
        end = r + log.lag_frames + 1
        if keyframes:
            i = bisect.bisect_right(keyframes, r + log.lag_frames)
            end = max(end, keyframes[i]) if i < len(keyframes) else max(end, 2**31 - 1)
        windows.append((r, end, n))
    return windows


def count_errors(log: DecodeLog, span: Span, keyframes: list[int] | None = None) -> int:
    """Error lines whose window (error_windows) overlaps the span."""
    if not log.total:
        return 0
    return sum(n for a, b, n in error_windows(log, keyframes)
               if a < span.end_frame and b > span.start_frame)


def decode_note(log: DecodeLog | None) -> str | None:
    """A line for the videos row: how many error lines, and where (runs of positions
    less than a second apart)."""
    if log is None or not log.total:
        return None
    gap = max(1, round(log.fps))
    runs: list[list[int]] = []
    for r in log.frames.tolist():
        if runs and r - runs[-1][1] <= gap:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    where = ", ".join(f"{a / log.fps:.1f}-{(b + log.lag_frames) / log.fps:.1f} s"
                      for a, b in runs[:5])
    more = f" and {len(runs) - 5} more places" if len(runs) > 5 else ""
    listed = (f"; the first {len(log.kept)} are in decode_errors"
              if log.total > len(log.kept) else "")
    return (f"decoder reported {log.total} error(s) (damaged data) near {where}{more}"
            f"{listed}; clips there have decode_error_count > 0")
