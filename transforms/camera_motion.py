"""Camera motion: a global camera model fitted to the motion flow, and a label per clip.

The picture-signals observer (transforms/frame_signals.py) already computes DIS optical
flow between samples ~0.12 s apart on a 128 px wide frame. fit_camera fits a similarity
transform (translation, uniform scale, rotation) to a grid of those flow vectors inside
the lit area with RANSAC (OpenCV's estimateAffinePartial2D), so people walking through
a fixed shot are outliers, not camera motion; what the model leaves unexplained is the
subject motion. Per sample pair the observer keeps four floats (FrameSignals.camera_*
and subject_motion); clip_camera summarises them over a clip's span.

Units and signs (cinematography: the camera's move, not the picture's):
  camera_pan   frame widths per second (of the lit picture), > 0 the camera turns right
               (the content moves left)
  camera_tilt  frame heights per second, > 0 the camera tilts up (the content moves down)
  camera_zoom  relative scale change per second (natural log of the scale per second),
               > 0 zooming in (the content grows)
  subject_motion  the flow the camera model does not explain: mean residual length over
               the lit area, frame diagonals per second (motion_score's unit)

The label (CAMERA_LABELS) is read from the pairs: a pair moves when one of its rates
reaches its threshold (CameraConfig) and is then labelled by its largest rate relative
to the thresholds. A directional label needs the pairs of that label to be at least
`dominant_share` of the clip and its axis' net rate to keep `steadiness` of its path
(jitter that happens to lean one way does not pan); failing that, a clip with at least
`dominant_share` still pairs is static; moving pairs whose net displacement is small
against their path and that often reverse are shaky; anything else is mixed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

CAMERA_LABELS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in",
                 "zoom_out", "shaky", "mixed")
# Pair labels by 2 * axis + (rate > 0), axes pan, tilt, zoom.
_DIRECTIONAL = ("pan_left", "pan_right", "tilt_down", "tilt_up", "zoom_out", "zoom_in")
GRID_STEP = 8  # flow pixels between fitted vectors: 16 across the 128 px flow frame
MIN_VECTORS = 12  # fewer grid vectors in the lit area: no fit
INLIER_PX = 0.25  # RANSAC: a vector this close (flow pixels) to the model agrees; wider
# lets people walking slowly through a fixed shot pull the fit (vtest.avi: a false zoom)


@dataclass(frozen=True)
class CameraConfig:
    """Label thresholds (docs/quality/signals.md#camera-motion)."""

    pan: float = 0.02  # frame widths per second: a pan that crosses the frame in 50 s
    tilt: float = 0.02  # frame heights per second
    zoom: float = 0.02  # relative scale change per second (2 % a second)
    dominant_share: float = 0.6  # of the pairs: one label below this is mixed
    steadiness: float = 0.5  # net displacement / path length of a steady move
    reversals: float = 0.25  # share of consecutive moving pairs turning back: shaky


@functools.lru_cache(maxsize=8)
def _grid(bw: int, bh: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column indices of the fitted vectors in a bw x bh box, and their
    coordinates about the box centre (so that the translation is the centre's)."""
    ys = np.arange(GRID_STEP // 2, bh, GRID_STEP)
    xs = np.arange(GRID_STEP // 2, bw, GRID_STEP)
    gx, gy = (g.ravel() for g in np.meshgrid(xs, ys))
    src = np.stack([gx - (bw - 1) / 2, gy - (bh - 1) / 2], 1).astype(np.float32)
    return gy, gx, src


def fit_camera(flow: np.ndarray, box: tuple[int, int, int, int], seconds: float
               ) -> tuple[float, float, float, float]:
    """(camera_pan, camera_tilt, camera_zoom, subject_motion) of one sample pair (module
    docstring's units) from its flow field (h, w, 2; flow pixels), inside box [x0, y0, x1,
    y1) of flow pixels, `seconds` apart; NaNs when the box holds too few vectors or no
    model fits. The subject motion is the mean residual over the grid's vectors."""
    nan = (math.nan,) * 4
    x0, y0, x1, y1 = box
    gy, gx, src = _grid(x1 - x0, y1 - y0)
    if len(src) < MIN_VECTORS or seconds <= 0:
        return nan
    dst = src + flow[y0:y1, x0:x1][gy, gx]
    # RANSAC only picks the inliers (its model comes from two vectors): the least-squares
    # similarity over them below is ~5x cheaper than OpenCV's iterative refinement.
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                             ransacReprojThreshold=INLIER_PX, maxIters=200,
                                             refineIters=0)
    if m is None:
        return nan
    # Vectors as complex numbers: the similarity is q = z p + t (z = scale * e^(i angle)).
    pz, qz = src.view(np.complex64).ravel(), dst.view(np.complex64).ravel()
    keep = inliers.ravel().view(bool)
    p, q = pz[keep], qz[keep]
    if len(p) < 3:
        return nan
    pm, qm = p.mean(), q.mean()
    pc = p - pm
    spread = float(np.vdot(pc, pc).real)
    if not spread > 0:
        return nan
    z = complex(np.vdot(pc, q - qm)) / spread
    t = complex(qm) - z * complex(pm)
    if not abs(z) > 0:
        return nan
    # What the model leaves unexplained, over all the vectors (people included).
    residual = float(np.abs(qz - (z * pz + t)).mean())
    tx, ty, scale = t.real, t.imag, abs(z)
    h, w = flow.shape[:2]
    return (-tx / (x1 - x0) / seconds, ty / (y1 - y0) / seconds,
            math.log(scale) / seconds, residual / math.hypot(w, h) / seconds)


def _mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def label_camera(pan: np.ndarray, tilt: np.ndarray, zoom: np.ndarray,
                 cfg: CameraConfig = CameraConfig()) -> str | None:
    """A clip's label (CAMERA_LABELS) from its sample pairs' rates, in time order (module
    docstring); None without a fitted pair."""
    u = np.stack([pan / cfg.pan, tilt / cfg.tilt, zoom / cfg.zoom], 1).astype(np.float64)
    u = u[np.isfinite(u).all(1)]
    n = len(u)
    if not n:
        return None
    size = np.abs(u)
    axis = size.argmax(1)
    moving = size.max(1) >= 1
    codes = np.where(moving, 1 + 2 * axis + (u[np.arange(n), axis] > 0), 0)
    counts = np.bincount(codes, minlength=7)
    top = 1 + int(counts[1:].argmax())
    k, positive = divmod(top - 1, 2)
    net, path = float(u[:, k].mean()), float(np.abs(u[:, k]).mean())
    if (counts[top] >= cfg.dominant_share * n and (net > 0) == bool(positive)
            and abs(net) >= cfg.steadiness * path):
        return _DIRECTIONAL[top - 1]
    if counts[0] >= cfg.dominant_share * n:
        return "static"
    # Moving, with no one steady direction: jitter goes back and forth and gets nowhere.
    moved = u[moving]
    net_size = float(np.linalg.norm(moved.mean(0)))
    path_size = float(np.linalg.norm(moved, axis=1).mean())
    both = moving[1:] & moving[:-1]
    turns = (np.einsum("ij,ij->i", u[1:], u[:-1]) < 0) & both
    reversal_share = turns.sum() / both.sum() if both.any() else 0.0
    if net_size < cfg.steadiness * path_size and reversal_share >= cfg.reversals:
        return "shaky"
    return "mixed"


def clip_camera(pan: np.ndarray, tilt: np.ndarray, zoom: np.ndarray, subject: np.ndarray,
                cfg: CameraConfig = CameraConfig()) -> dict[str, float | str | None]:
    """A clip's camera columns from its sample pairs: the label, the mean (net) rates and
    the mean subject motion."""
    return {"camera_motion": label_camera(pan, tilt, zoom, cfg),
            "camera_pan": _mean(pan), "camera_tilt": _mean(tilt),
            "camera_zoom": _mean(zoom), "subject_motion": _mean(subject)}
