"""Camera model fit and clip labels on synthetic flow fields and rate series (pure
numpy: no decode). The real-footage test set is tests/stages/test_camera_set.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidcurate.transforms.camera_motion import (
    CAMERA_LABELS,
    CameraConfig,
    clip_camera,
    fit_camera,
    label_camera,
)

H, W = 72, 128  # the observer's flow frame
DT = 0.12  # seconds between the samples of a pair
BOX = (0, 0, W, H)


def _field(dx: float = 0.0, dy: float = 0.0, scale: float = 1.0, angle: float = 0.0,
           box: tuple[int, int, int, int] = BOX) -> np.ndarray:
    """The flow of the content moving by (dx, dy) px at the box centre, scaled and
    rotated about it."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    cx, cy = x0 + (x1 - x0 - 1) / 2, y0 + (y1 - y0 - 1) / 2
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    u, v = xs - cx, ys - cy
    flow = np.stack([a * u - b * v + dx - u, b * u + a * v + dy - v], -1)
    return flow.astype(np.float32)


def test_translation_is_pan_and_tilt_with_the_camera_signs():
    # Content moving left (dx < 0) is the camera panning right; content moving down
    # (dy > 0) is the camera tilting up.
    pan, tilt, zoom, subject = fit_camera(_field(dx=-1.5, dy=0.9), BOX, DT)
    assert pan == pytest.approx(1.5 / W / DT, rel=1e-3)
    assert tilt == pytest.approx(0.9 / H / DT, rel=1e-3)
    assert zoom == pytest.approx(0, abs=1e-4)
    assert subject == pytest.approx(0, abs=1e-4)


def test_scale_is_zoom_and_rotation_is_not_pan():
    pan, tilt, zoom, _ = fit_camera(_field(scale=1.01), BOX, DT)
    assert zoom == pytest.approx(math.log(1.01) / DT, rel=1e-3)
    assert abs(pan) < 1e-4 and abs(tilt) < 1e-4
    pan, tilt, zoom, subject = fit_camera(_field(angle=0.01, scale=0.99), BOX, DT)
    assert zoom == pytest.approx(math.log(0.99) / DT, rel=1e-3)
    assert abs(pan) < 1e-4 and abs(tilt) < 1e-4 and subject < 1e-4


def test_people_moving_through_the_frame_are_subject_motion_not_camera():
    flow = _field()  # a fixed camera
    rng = np.random.default_rng(0)
    # Three "people" (a fifth of the frame together) walking 2 px a pair.
    for x in (8, 56, 96):
        flow[20:60, x:x + 16] = (2.0 + rng.normal(0, 0.1, (40, 16, 1))) * [1, 0.2]
    pan, tilt, zoom, subject = fit_camera(flow, BOX, DT)
    assert abs(pan) < 1e-3 and abs(tilt) < 1e-3 and abs(zoom) < 1e-3
    moved = 3 * 40 * 16 / (W * H) * 2.04  # their share times their flow length
    assert subject == pytest.approx(moved / math.hypot(W, H) / DT, rel=0.05)
    # The same people on a pan: the pan is measured, and they still are the subject.
    pan_flow = flow + _field(dx=-1.0)
    pan, _, _, subject_on_pan = fit_camera(pan_flow, BOX, DT)
    assert pan == pytest.approx(1.0 / W / DT, rel=1e-2)
    assert subject_on_pan == pytest.approx(subject, rel=0.1)


def test_the_box_limits_the_fit_and_too_small_a_box_gives_nothing():
    box = (0, 12, W, 60)  # letterbox bars above and below hold no motion
    flow = np.zeros((H, W, 2), np.float32)
    flow[12:60] = _field(dx=2.0, box=box)[12:60]
    pan, *_ = fit_camera(flow, box, DT)
    assert pan == pytest.approx(-2.0 / W / DT, rel=1e-3)
    assert all(math.isnan(v) for v in fit_camera(flow, (0, 0, 16, 16), DT))


def _series(pan=(), tilt=(), zoom=(), n: int | None = None):
    n = n or max(len(pan), len(tilt), len(zoom))

    def arr(values):
        return np.asarray(values, np.float32) if len(values) else np.zeros(n, np.float32)

    return arr(pan), arr(tilt), arr(zoom)


STEP = 0.1  # rates well above the 0.02 thresholds
RNG = np.random.default_rng(5)


@pytest.mark.parametrize(("axis", "sign", "label"), [
    (0, 1, "pan_right"), (0, -1, "pan_left"), (1, 1, "tilt_up"), (1, -1, "tilt_down"),
    (2, 1, "zoom_in"), (2, -1, "zoom_out")])
def test_steady_moves_get_their_direction(axis, sign, label):
    rates = [np.zeros(32, np.float32) for _ in range(3)]
    rates[axis] = sign * (STEP + RNG.normal(0, 0.02, 32)).astype(np.float32)
    assert label_camera(*rates) == label


def test_static_shaky_mixed_and_nothing():
    noise = [RNG.normal(0, 0.005, 32).astype(np.float32) for _ in range(3)]
    assert label_camera(*noise) == "static"
    # Jitter: big moves back and forth in x and y, no net direction.
    t = np.arange(32)
    jitter = _series(pan=0.15 * np.sin(2.1 * t), tilt=0.12 * np.cos(1.3 * t + 1))
    assert label_camera(*jitter) == "shaky"
    pan_then_tilt = _series(pan=[STEP] * 16 + [0] * 16, tilt=[0] * 16 + [-STEP] * 16)
    assert label_camera(*pan_then_tilt) == "mixed"
    held_then_zoom = _series(zoom=[0] * 16 + [STEP] * 16)
    assert label_camera(*held_then_zoom) == "mixed"
    # Right then left: back and forth, but once, not jitter.
    assert label_camera(*_series(pan=[STEP] * 16 + [-STEP] * 16)) == "mixed"
    nothing = np.full(4, np.nan, np.float32)
    assert label_camera(nothing, nothing, nothing) is None


def test_the_dominant_move_needs_sixty_percent():
    mostly = _series(pan=[STEP] * 20 + [0] * 12)  # 62 %
    assert label_camera(*mostly) == "pan_right"
    half = _series(pan=[STEP] * 18 + [0] * 14)  # 56 %
    assert label_camera(*half) == "mixed"
    assert label_camera(*half, cfg=CameraConfig(dominant_share=0.5)) == "pan_right"


def test_jitter_that_leans_one_way_is_never_a_pan():
    # 11 of 16 jitter steps to the right (69 %), but large and back and forth: shaky.
    steps = np.array([1, -1, 1, 1, -1, 1, 1, -1, 1, 1, -1, 1, 1, -1, 1, 1], np.float32)
    assert (steps > 0).mean() >= 0.6
    assert label_camera(*_series(pan=0.2 * steps)) == "shaky"
    # A pan whose speed wobbles is still a pan.
    assert label_camera(*_series(pan=STEP * (1 + 0.5 * np.sin(np.arange(16))))) == "pan_right"


def test_thresholds_decide_what_moves():
    slow = _series(pan=[0.015] * 32)
    assert label_camera(*slow) == "static"
    assert label_camera(*slow, cfg=CameraConfig(pan=0.01)) == "pan_right"


def test_clip_camera_gives_the_label_and_net_rates():
    pan, tilt, zoom = _series(pan=[STEP] * 10)
    subject = np.full(10, 0.03, np.float32)
    subject[0] = np.nan
    out = clip_camera(pan, tilt, zoom, subject)
    assert out["camera_motion"] == "pan_right" and out["camera_motion"] in CAMERA_LABELS
    assert out["camera_pan"] == pytest.approx(STEP) and out["camera_tilt"] == 0
    assert out["subject_motion"] == pytest.approx(0.03)
    empty = np.zeros(0, np.float32)
    assert clip_camera(empty, empty, empty, empty) == {
        "camera_motion": None, "camera_pan": None, "camera_tilt": None,
        "camera_zoom": None, "subject_motion": None}
