"""Gradual transitions (dissolves, fades to and from black or white, wipes, flashes) on
the cut detector's own downscaled decode.

PySceneDetect's detectors compare neighbouring frames, and a transition spreads its
change over many frames, each step smaller than a cut. Every frame the cut detector
reads is also reduced here to a 16x9 grid of cell means (BGR, 432 bytes a frame); the
search runs on overlapping chunks of them as they stream in (bounded memory):

1. **Fades and flashes.** A run of near-uniform black or white frames is a fade's
   bottom. On each side, the distance of the frames to that uniform colour falls
   linearly to it during a fade (``frame = (1 - a) * shot + a * colour``): a plateau
   followed by a ramp, fitted by least squares. A short white run with no ramps is a
   flash; one whose neighbours show the same scene is a camera flash, not an edit.
2. **Dissolves and wipes.** Wherever the frames ``h`` before and after a frame differ
   as much as across a cut (``--transition-min-change``) for some half-length ``h`` up
   to ``--transition-max-s``, the frames between are tested against two models of a
   transition from the frame before (A) to the frame after (B): a dissolve makes every
   frame a linear blend ``A + (t / L)(B - A)``; a wipe makes every cell either A's or
   B's, switching at different times in different cells. Motion (a pan, a street)
   fits neither: intermediate frames are new pictures. A window passes when its mean
   residual is at most ``--transition-max-residual`` of the change. A window holding
   one jump of more than half the change is a hard cut, left to the cut detector.
3. **Ends.** Each group of passing windows is projected on its A -> B direction; that
   projection is 0 before, 1 after and ramps between, so a clamped ramp fitted by
   least squares gives the first and last transition frame.

Ends were compared on generated footage (docs/pipeline/splitting.md): a straight ramp
fitted by least squares ends eased and pixel-random dissolves up to 8 frames off; where
the projection leaves its levels (3% of the way) is within 3 frames; a wipe's ends come
from its cells' switch times. Twin comparison (Zhang et al. 1993) was measured on the
same grids (benchmarks/transition_bench.py, docs/pipeline/splitting.md): 3 of 9
transitions within 3 frames against 8-9 of 9, and false transitions on a slow pan and a
street; on frame differences alone it cannot tell a dissolve from steady motion
(testsrc2's steps are as large as a dissolve's), which the blend and switch models with
the steadiness checks do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcurate.schemas.records import Transition
from vidcurate.transforms.core import AddArgument, check

# Frames either side of a transition that no clip gets either: its ends are found to
# within about this much (tests: 3 frames, one wipe 5 short), and its first and last
# frames still hold a trace of the other shot.
ZONE_GUARD_FRAMES = 5
# Cells of the grid every frame is reduced to (width, height): 16x16-pixel blocks of the
# default 256-wide decode; enough to see a wipe's edge travel, cheap to keep per frame.
GRID = (16, 9)
# A uniform frame: its cells' luma spread (0-255) below this ...
_SOLID_STD = 6.0
# ... and its mean this dark or this bright (a fade's bottom, a flash).
_BLACK, _WHITE = 40.0, 215.0
# Steps of shot after a transition that its own motion is measured on.
_PLATEAU = 8
# A fade's ramp goes on while the distance to its colour grows by more than this (0-255,
# or this share of the distance) within the next two frames.
_RAMP_TOL, _RAMP_SHARE = 0.5, 0.02
# One frame-to-frame jump larger than this share of a window's change is a hard cut.
_HARD_SHARE = 0.5
# A transition's ends: where its frames are this share of the way from A's level to B's.
_END_SHARE = 0.03
# Between two shots most of the picture changes; a person walking past the camera (a
# wipe to a cell-grid eye) changes a few cells. At least this share of the cells must
# change by at least this share of the mean change.
_COVERED, _COVER_SHARE = 0.5, 0.5
# A wipe's cells are exactly A's or B's but for the few under its edge, so its residual
# must be this much smaller than a dissolve's; a fast pan slides the picture across the
# grid and comes close.
_WIPE_SHARE = 0.6
# A frame-to-frame step this large (0-255) is a hard cut: no transition's frames reach
# across it.
_CUT_STEP = _HARD_SHARE * 255 / 4
# A transition's shots change by at most this share of the change across it over as
# many frames just before and after it (see _outside_change); measured only on sides
# of at least _MIN_SIDE frames.
_STEADY_SHARE, _MIN_SIDE = 0.9, 4
# A transition adds change / length to each frame's step on top of the shots' motion:
# its median step must exceed theirs (_outside_step) by this share of that.
_STEP_GAIN = 0.25
# Two shots differ in brightness, not only in colour: the luma cells must change by at
# least this share of the change (a hue cycle changes colour at constant luma).
_LUMA_SHARE = 0.35
# A wipe whose cells' switch times (frames) fit a plane this closely is straight.
_PLANE_RMS = 1.5
# ... once the worst cells are left out, keeping at least this share of them.
_PLANE_KEPT = 0.7
# Half-lengths (frames) at which windows are tried; scaled to the frame rate below.
_HALF_LENGTHS_25FPS = (2, 3, 4, 6, 8, 11, 15, 20, 27, 36)
_LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # BGR


@dataclass(frozen=True)
class TransitionConfig:
    """Where gradual transitions are searched and how sure a find must be; part of the
    split parameters (hashed into clip ids), since transition frames belong to no clip."""

    min_change: float = 25.0
    max_residual: float = 0.2
    max_s: float = 2.0
    flash_max_s: float = 0.25

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("no-transitions", action="store_true",
            help="Do not detect gradual transitions (dissolves, fades, wipes, flashes); "
            "their frames may then end up in clips.")
        add("transition-min-change", type=float, default=TransitionConfig.min_change,
            help="How different (mean absolute difference of 16x9 cell means, 0-255) "
            "the frames either side of a transition must be.")
        add("transition-max-residual", type=float, default=TransitionConfig.max_residual,
            help="How far the frames inside a transition may stray from a dissolve or "
            "wipe between its two ends, as a share of the change (0-1).")
        add("transition-max-s", type=float, default=TransitionConfig.max_s,
            help="Longest dissolve or wipe searched, seconds.")
        add("flash-max-s", type=float, default=TransitionConfig.flash_max_s,
            help="Longest run of white frames between two shots taken as a flash.")

    @staticmethod
    def from_options(o: Any) -> TransitionConfig | None:
        """None when --no-transitions. Raises ConfigError."""
        check(
            (o.transition_min_change > 0,
             f"--transition-min-change must be > 0, got {o.transition_min_change}"),
            (0 < o.transition_max_residual < 1,
             f"--transition-max-residual must be in (0, 1), got {o.transition_max_residual}"),
            (0.1 <= o.transition_max_s <= 10,
             f"--transition-max-s must be in [0.1, 10] seconds, got {o.transition_max_s}"),
            (0 < o.flash_max_s <= 2, f"--flash-max-s must be in (0, 2], got {o.flash_max_s}"),
        )
        if o.no_transitions:
            return None
        return TransitionConfig(min_change=o.transition_min_change,
                                max_residual=o.transition_max_residual,
                                max_s=o.transition_max_s, flash_max_s=o.flash_max_s)


def grid_of(frame: np.ndarray) -> np.ndarray:
    """A BGR frame as GRID cell means, uint8 (height, width, 3)."""
    import cv2

    return cv2.resize(frame, GRID, interpolation=cv2.INTER_AREA)


class TransitionObserver:
    """A FrameObserver: keeps the frames' grids and searches them in chunks of
    `chunk_s` seconds that overlap by enough for any transition and the shot either
    side the search looks at, so memory is bounded whatever the video's length (an
    hour at 30 fps would be 47 MB of grids). Each chunk reports the transitions that
    start in its first part; the overlap is searched again with the next chunk."""

    def __init__(self, cfg: TransitionConfig, fps: float, chunk_s: float = 60.0) -> None:
        self.cfg = cfg
        self.fps = fps
        longest = max(2, int(round(cfg.max_s * fps)))
        # Context a transition's search reads either side: a fade's ramps (twice the
        # longest), the shots' steadiness (as long again) and the steps after that.
        self.overlap = 2 * (3 * longest + 2 * _PLATEAU)
        self.chunk = max(int(round(chunk_s * fps)), self.overlap)
        self.grids: list[np.ndarray] = []
        self.offset = 0  # video frame of grids[0]
        self.found: list[Transition] = []
        self.peak = 0  # most grids held at once
        self.reported_to = 0  # video frame: transitions starting before it are reported

    def observe(self, frame: np.ndarray) -> None:
        self.grids.append(grid_of(frame))
        self.peak = max(self.peak, len(self.grids))
        if len(self.grids) >= self.chunk + self.overlap:
            self._search(final=False)

    def _search(self, final: bool) -> None:
        found = detect_transitions(np.stack(self.grids), self.fps, self.cfg)
        # Reported by this chunk: transitions starting before the middle of the overlap
        # at its end (so with at least half the overlap of context after them), all of
        # them on the last chunk. Later chunks skip what an earlier one reported.
        keep = len(self.grids) if final else len(self.grids) - self.overlap // 2
        last = max(self.found[-1].end_frame if self.found else 0, self.reported_to)
        for t in found:
            start = t.start_frame + self.offset
            if last <= start < self.offset + keep:
                self.found.append(_transition(t.kind, start, t.end_frame + self.offset,
                                              self.fps))
                last = self.found[-1].end_frame
        self.reported_to = self.offset + keep
        if not final:
            # The next chunk starts an overlap before this one's end; what it reports
            # begins half an overlap later, so it has that much context before.
            drop = len(self.grids) - self.overlap
            self.grids = self.grids[drop:]
            self.offset += drop

    def transitions(self) -> tuple[Transition, ...]:
        if self.grids:
            self._search(final=True)
            self.grids = []
        return tuple(self.found)


def _transition(kind: str, start: int, end: int, fps: float) -> Transition:
    return Transition(kind, start, end, start / fps, end / fps)


def detect_transitions(grids: np.ndarray, fps: float, cfg: TransitionConfig
                       ) -> tuple[Transition, ...]:
    """Transitions in a video given its frames' grids (n, h, w, 3), sorted, disjoint."""
    g = grids.reshape(len(grids), -1).astype(np.float32)
    luma = (grids.astype(np.float32) @ _LUMA).reshape(len(grids), -1)
    step = np.r_[0.0, np.abs(np.diff(g, axis=0)).mean(1)]  # step[t]: frame t-1 -> t
    fades = _fades(g, luma, step, fps, cfg)
    taken = np.zeros(len(g), bool)
    for t in fades:
        taken[t.start_frame:t.end_frame] = True
    gradual = _gradual(g, step, taken, fps, cfg)
    return tuple(sorted(fades + gradual, key=lambda t: t.start_frame))


# -- fades and flashes -------------------------------------------------------------------

def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _ramp_length(dist: np.ndarray) -> int:
    """Frames of ramp at the end of `dist` (distances to a fade's colour, in time order,
    up to the first uniform frame). Walking back from the uniform run, a fade's distance
    keeps growing until the shot's own level; the ramp ends where it stops growing.
    Following the slope rather than fitting a line: editors' fades ease in and out, and
    a line fitted to an eased ramp ends early."""
    x = dist[::-1]
    length = 0
    while length + 1 < len(x) and (
            x[length + 1:length + 3].max() > x[length] + max(_RAMP_TOL, _RAMP_SHARE * x[length])):
        length += 1
    return length


def _fades(g: np.ndarray, luma: np.ndarray, step: np.ndarray, fps: float,
           cfg: TransitionConfig) -> list[Transition]:
    mean, spread = luma.mean(1), luma.std(1)
    solid = (spread < _SOLID_STD) & ((mean < _BLACK) | (mean > _WHITE))
    longest = max(2, int(round(cfg.max_s * fps)))
    out: list[Transition] = []
    runs = _runs(solid)
    for i, (a, b) in enumerate(runs):
        colour = g[a:b].mean(0)
        dist = np.abs(g - colour).mean(1)
        lo = runs[i - 1][1] if i else 0
        hi = runs[i + 1][0] if i + 1 < len(runs) else len(g)
        before = _ramp_length(dist[max(lo, a - 2 * longest):a])
        after = _ramp_length(dist[b:min(hi, b + 2 * longest)][::-1])
        start, end = a - before, b + after
        # An eased fade, or one that dissolves the last of the shot away (xfade's
        # fadeblack), ends after the distance to the colour has levelled off.
        if before > 2:
            start = _settle(step, start, a, max(2, before))[0]
        if after > 2:
            end = _settle(step, b, end, max(2, after))[1]
        white = mean[a:b].mean() > _WHITE
        if before <= 2 and after <= 2:
            if not white or b - a > cfg.flash_max_s * fps:
                continue  # uniform frames between cuts: no transition to keep out
            if start > 0 and end < len(g) and (
                    np.abs(g[end] - g[start - 1]).mean() < cfg.min_change):
                continue  # the same picture either side: a camera flash, not an edit
            out.append(_transition("flash", start, end, fps))
            continue
        if before > 2 or after <= 2:
            out.append(_transition("fade_out", start, b, fps))
            if after > 2:
                out.append(_transition("fade_in", b, end, fps))
        else:
            out.append(_transition("fade_in", a, end, fps))
    return out


# -- dissolves and wipes -----------------------------------------------------------------

def _cells(x: np.ndarray) -> np.ndarray:
    """Per-cell values of flattened BGR grids (..., cells * 3) -> (..., cells)."""
    return x.reshape(*x.shape[:-1], -1, 3).mean(-1)


@dataclass(frozen=True)
class _Fit:
    change: np.ndarray  # |B - A| per window
    blend: np.ndarray  # dissolve residual, share of the change
    switch: np.ndarray  # wipe residual, share of the change
    spread: np.ndarray  # cells switch at different times (a wipe, not a cut)
    coverage: np.ndarray  # share of the cells that change (a new picture, not an object)


def _models(g: np.ndarray, starts: np.ndarray, length: int) -> _Fit:
    """For windows [s, s + length) between A = g[s - 1] and B = g[s + length]: the
    change |B - A|, the residual of a dissolve (every frame a blend of A and B) and of a
    wipe (every cell A's or B's), and whether the cells switch at different times."""
    a, b = g[starts - 1], g[starts + length]
    inner = g[starts[:, None] + np.arange(length)[None, :]]  # (k, length, features)
    change = np.maximum(np.abs(b - a).mean(-1), 1e-6)
    alpha = (np.arange(1, length + 1, dtype=np.float32) / (length + 1))[None, :, None]
    blend = np.abs(inner - (a[:, None] + alpha * (b - a)[:, None])).mean((1, 2)) / change
    to_a = _cells(np.abs(inner - a[:, None]))
    to_b = _cells(np.abs(inner - b[:, None]))
    switch = np.minimum(to_a, to_b).mean((1, 2)) / change
    # Switch time of each cell that changes more than the mean: its first frame nearer
    # B than A; a wipe's cells switch over the whole window, a cut's all at once.
    moving = _cells(np.abs(b - a)) > change[:, None]  # (k, cells)
    nearer_b = to_b < to_a
    times = np.where(nearer_b.any(1), nearer_b.argmax(1), length).astype(np.float32)
    count = np.maximum(moving.sum(1), 1)
    mean = (times * moving).sum(1) / count
    std = np.sqrt((((times - mean[:, None]) ** 2) * moving).sum(1) / count)
    spread = (moving.sum(1) >= 4) & (std >= max(1.0, length / 8))
    coverage = (_cells(np.abs(b - a)) > _COVER_SHARE * change[:, None]).mean(1)
    return _Fit(change, blend, switch, spread, coverage)


def _ramp_fit(p: np.ndarray, min_len: int, max_len: int) -> tuple[int, int]:
    """[s, e) of the clamped ramp (0 before s, rising linearly, 1 from e) closest to p in
    least squares; frames s..e-1 are the ramp's inner frames."""
    n = len(p)
    c0 = np.r_[0, np.cumsum(p ** 2)]  # sum of p^2 before s: error of the 0 plateau
    c1 = np.r_[0, np.cumsum((p - 1) ** 2)]  # after e: error of the 1 plateau
    best, best_err = (1, n - 1), np.inf
    t = np.arange(n)
    for length in range(min_len, max_len + 1):
        starts = np.arange(1, n - length)
        if not len(starts):
            break
        ramp = (t[None, :length] + 1) / (length + 1)
        idx = starts[:, None] + t[None, :length]
        err = (c0[starts] + (c1[n] - c1[starts + length])
               + ((p[idx] - ramp) ** 2).sum(1))
        k = int(np.argmin(err))
        if err[k] < best_err:
            best, best_err = (int(starts[k]), int(starts[k] + length)), float(err[k])
    return best


def _ends(p: np.ndarray, s: int, e: int) -> tuple[int, int]:
    """Move a fitted ramp's ends to where p really leaves its level before and reaches
    its level after: eased and pixel-random dissolves are not straight lines, and a
    straight line fitted to a curved ramp cuts both its ends short or long."""
    before, after = float(np.median(p[:s])) if s else 0.0, float(np.median(p[e:]))
    height = after - before
    if height <= 0:
        return s, e
    mid = (s + e) // 2
    inside = (p > before + _END_SHARE * height) & (p < after - _END_SHARE * height)
    start = mid
    while start > 0 and inside[start - 1]:
        start -= 1
    end = mid
    while end < len(p) and inside[end]:
        end += 1
    return (start, end) if end - start >= 2 else (s, e)


def _window_max(x: np.ndarray, width: int) -> np.ndarray:
    """out[i] = max(x[i:i + width])."""
    return np.lib.stride_tricks.sliding_window_view(x, width).max(-1)


def _gradual(g: np.ndarray, step: np.ndarray, taken: np.ndarray, fps: float,
             cfg: TransitionConfig) -> list[Transition]:
    n = len(g)
    scale = fps / 25.0
    longest = max(2, int(round(cfg.max_s * fps)))
    halves = sorted({max(1, int(round(h * scale))) for h in _HALF_LENGTHS_25FPS
                     if 2 * h * scale <= longest})
    found: list[tuple[float, int, int]] = []  # (change, start, end) of passing windows
    for h in halves:
        length = 2 * h
        if n < length + 2:
            break
        # Windows [s, s + length) on a stride of h / 2: a transition longer than the
        # window holds several, one shorter is caught by a shorter window.
        starts = np.arange(1, n - length, max(1, h // 2))
        change = np.abs(g[starts + length] - g[starts - 1]).mean(1)
        ok = change >= cfg.min_change
        # No jump inside (steps s .. s + length) bigger than half the change: not a cut.
        jumps = _window_max(step, length + 1)[starts]
        ok &= jumps <= _HARD_SHARE * change
        ok &= ~_window_max(taken, length + 2)[starts - 1]
        # Only windows whose change is the largest within a window's length either side
        # are fitted: a transition's windows peak where they span it, and refining
        # finds its real ends from any one of them (most of the cost was fitting every
        # window of a moving shot).
        score = np.where(ok, change, -1.0)
        pad = np.r_[np.full(2, -1.0), score, np.full(2, -1.0)]
        ok &= score >= _window_max(pad, 5)
        starts = starts[ok]
        for lo in range(0, len(starts), 256):  # bounded memory on long videos
            batch = starts[lo:lo + 256]
            fit = _models(g, batch, length)
            good = ((fit.blend <= cfg.max_residual) | (
                (fit.switch <= _WIPE_SHARE * cfg.max_residual) & fit.spread)) & (
                fit.coverage >= _COVERED)
            found += [(float(c), int(s), int(s) + length)
                      for c, s in zip(fit.change[good], batch[good], strict=True)]
    out: list[Transition] = []
    # Strongest windows first: each one names a transition, refined to its real ends.
    for _, s0, e0 in sorted(found, reverse=True):
        if taken[s0:e0].any():
            continue
        result = _refine(g, step, taken, s0, e0, longest, cfg)
        if result is None:
            continue
        s, e, kind = result
        out.append(_transition(kind, s, e, fps))
        taken[s:e] = True
    return out


def _settle(step: np.ndarray, s: int, e: int, reach: int) -> tuple[int, int]:
    """Widen [s, e) by up to `reach` frames a side while the steps just outside stay well
    above the shot's own (their median beyond the reach): the tail of an eased or
    composite transition."""
    n = len(step)
    after = step[e + 1 + reach:e + 1 + reach + _PLATEAU]
    if len(after):
        level = 2 * float(np.median(after)) + 1
        for _ in range(reach):
            if e + 1 >= n or step[e + 1] <= level:
                break
            e += 1
    before = step[max(0, s - reach - _PLATEAU):max(0, s - reach)]
    if len(before):
        level = 2 * float(np.median(before)) + 1
        for _ in range(reach):
            if s - 1 <= 0 or step[s - 1] <= level:
                break
            s -= 1
    return s, e


def _outside_change(g: np.ndarray, step: np.ndarray, taken: np.ndarray, s: int, e: int
                    ) -> float:
    """How much the picture changes just before and just after [s, e), on the window's
    scale: the larger of the two sides' change over up to the window's length (not
    across a hard cut or another transition), scaled by the square root of the lengths'
    ratio (a shot's own motion grows with time, less than linearly); infinite when
    neither side spans half the window (no evidence the shots are steady). A dissolve joins
    two shots that change little over its length compared with it; a pan, a zoom or a
    hue cycle changes as much before and after as across."""
    n, length = len(g), e - s
    sides = []
    for edge, direction in ((s - 1, -1), (e, 1)):
        span = 0
        while span < length:
            t = edge + direction * (span + 1)
            if not 0 <= t < n:
                break
            crossed = step[t] if direction > 0 else step[t + 1]  # step[t]: t - 1 -> t
            if taken[t] or crossed > _CUT_STEP:
                break
            span += 1
        if span >= _MIN_SIDE:
            other = edge + direction * span
            sides.append((span, float(np.abs(g[other] - g[edge]).mean())
                          * np.sqrt(length / span)))
    if not sides or max(span for span, _ in sides) * 2 < length:
        # Neither side shows half the window's length of its shot: nothing tells a
        # dissolve from a shot's own steady change (a zoom between two hard cuts).
        return float("inf")
    return max(change for _, change in sides)


def _outside_step(step: np.ndarray, taken: np.ndarray, s: int, e: int) -> float:
    """The larger median frame-to-frame step over up to the window's length before and
    after [s, e) (hard cuts and other transitions left out; 0 for a side too short). A
    dissolve adds its own change to every step of the shots' motion, so its steps are
    larger than the shots' either side; a steadily changing shot's are not."""
    n, length = len(step), e - s
    out = 0.0
    for lo, hi in ((max(1, s - length), s - 1), (e + 2, min(n, e + 1 + length))):
        seg = step[lo:hi][~taken[lo:hi] & (step[lo:hi] <= _CUT_STEP)]
        if len(seg) >= _MIN_SIDE:
            out = max(out, float(np.median(seg)))
    return out


def _refine(g: np.ndarray, step: np.ndarray, taken: np.ndarray, s0: int, e0: int,
            longest: int, cfg: TransitionConfig) -> tuple[int, int, str] | None:
    """The transition around a passing window [s0, e0): its ends from a ramp fit of the
    frames' projection on A -> B over the window and half its length either side, then
    the models checked again on exactly those frames."""
    n = len(g)
    margin = max(3, (e0 - s0) // 2)
    w0, w1 = max(1, s0 - margin), min(n - 1, e0 + margin)
    # Not across a hard cut or another transition.
    for t in range(s0 - 1, w0 - 1, -1):
        if taken[t] or step[t + 1] > _CUT_STEP:
            w0 = t + 1
            break
    for t in range(e0 + 1, w1):
        if taken[t] or step[t] > _CUT_STEP:
            w1 = t
            break
    if w1 - w0 < 4:
        return None
    a, b = g[max(1, s0 - 2) - 1:s0].mean(0), g[e0:e0 + 2].mean(0)
    u = b - a
    p = (g[w0:w1] - a) @ u / max(float(u @ u), 1e-6)
    s, e = _ramp_fit(p, 2, min(longest, w1 - w0 - 2))
    s, e = _ends(p, s, e)
    s, e = s + w0, e + w0
    s, e = _settle(step, s, e, max(2, (e - s) // 4))
    if s < 1 or e >= n or taken[s:e].any():
        return None
    fit = _models(g, np.array([s]), e - s)
    change = float(fit.change[0])
    if (change < cfg.min_change or step[s:e + 1].max() > _HARD_SHARE * change
            or fit.coverage[0] < _COVERED):
        return None
    if _outside_change(g, step, taken, s, e) > _STEADY_SHARE * change:
        return None  # the picture changes as much outside: motion (a pan, a zoom)
    inside = float(np.median(step[s:e + 1]))
    if _outside_step(step, taken, s, e) > inside - _STEP_GAIN * change / (e - s):
        return None  # frames move as fast outside as inside: a shot's own motion
    a, b = g[s - 1].reshape(-1, 3) @ _LUMA, g[e].reshape(-1, 3) @ _LUMA
    if np.abs(b - a).mean() < _LUMA_SHARE * change:
        return None  # colour changes, brightness stays: a hue cycle or a grade, not a cut
    if fit.blend[0] <= cfg.max_residual:
        return s, e, "dissolve"
    if fit.switch[0] <= _WIPE_SHARE * cfg.max_residual and fit.spread[0]:
        return (*_wipe_ends(g, s, e, w0, w1), "wipe")
    return None


def _wipe_ends(g: np.ndarray, s: int, e: int, w0: int, w1: int) -> tuple[int, int]:
    """A wipe's ends from its cells' switch times: each cell that changes is A's
    until the edge passes it, then B's; the wipe runs from the first cell's switch to
    the last's. A ramp fitted to the whole picture's projection misplaces the ends of
    a fast wipe, whose first and last cells are a small share of the picture."""
    a, b = _cells(g[s - 1]), _cells(g[e])
    moving = np.abs(b - a) > _COVER_SHARE * np.abs(b - a).mean()
    frames = _cells(g[w0:w1])[:, moving]  # (frames, moving cells)
    nearer_b = np.abs(frames - b[moving]) < np.abs(frames - a[moving])
    # A cell's switch: the first frame from which it stays nearer B (a moving shot's
    # cell may flicker across half-way before the edge comes).
    stays = np.flip(np.cumprod(np.flip(nearer_b, 0), 0), 0).astype(bool)
    switched = stays.any(0)  # a cell of a moving shot may never settle nearer B
    if switched.sum() < 4:
        return s, e
    switch = (w0 + stays.argmax(0)).astype(np.float64)[switched]
    moving[moving] = switched
    # Cells the same in both shots (a border, a shared background) show no switch. A
    # straight wipe's switch times are a plane over the cells: fitted on the moving
    # cells, it gives the times of all of them. A wipe of another shape (a circle, a
    # clock) keeps the observed times.
    ys, xs = np.divmod(np.arange(GRID[0] * GRID[1]), GRID[0])
    design = np.c_[np.ones_like(xs), xs, ys].astype(np.float64)
    rows = design[moving]
    coef, *_ = np.linalg.lstsq(rows, switch, rcond=None)
    # Once more without the outliers (a cell whose own motion moved its switch).
    keep = np.abs(rows @ coef - switch) <= max(_PLANE_RMS, 2 * float(
        np.median(np.abs(rows @ coef - switch))))
    coef, *_ = np.linalg.lstsq(rows[keep], switch[keep], rcond=None)
    if keep.mean() >= _PLANE_KEPT and np.sqrt(
            np.mean((rows[keep] @ coef - switch[keep]) ** 2)) <= _PLANE_RMS:
        plane = design @ coef
        first, last = round(float(plane.min())), round(float(plane.max()))
    else:
        first, last = int(switch.min()), int(switch.max())
    return int(min(first, e - 1)), int(max(last + 1, s + 1))
