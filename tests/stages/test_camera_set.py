"""Camera motion on the camera-motion test set (tests/support/camera_set.py): real
pictures and real footage moved by known cameras, each labelled through the detect
decode and plan_clips as a run does. The confusion table is in
docs/quality/signals.md (benchmarks/camera_motion_bench.py prints it)."""

from __future__ import annotations

import pytest

from tests.support.camera_set import CASES, clip_of, confusion, make_camera_set, moves


@pytest.fixture(scope="module")
def measured(tmp_path_factory, sample_footage, opencv_media):
    cases = make_camera_set(tmp_path_factory.mktemp("camera_set"), sample_footage,
                            opencv_media)
    return {name: (truth, clip_of(path)) for name, (path, truth) in cases.items()}


def test_every_label_is_right(measured):
    got = [(truth, clip.camera_motion) for truth, clip in measured.values()]
    wrong = {name: (truth, clip.camera_motion) for name, (truth, clip) in measured.items()
             if clip.camera_motion != truth}
    assert not wrong, f"{wrong}\n{confusion(got)}"
    # Every label of the vocabulary is in the set, at least twice.
    assert {t for t, _ in got} == {c.label for c in CASES}
    assert min(sum(t == label for t, _ in got) for label, _ in got) >= 2


def test_no_static_or_shaky_shot_gets_a_direction(measured):
    for name, (truth, clip) in measured.items():
        if truth in ("static", "shaky"):
            assert not moves(clip.camera_motion or "static"), name


def test_rates_have_the_camera_signs_and_speeds(measured):
    def clip(name):
        return measured[name][1]

    # Window speeds in frame widths (heights) a second; DIS measures pans within 15 %.
    assert clip("bikes_pan_left_slow").camera_pan == pytest.approx(-0.04, rel=0.15)
    assert clip("bikes_pan_right_fast").camera_pan == pytest.approx(0.24, rel=0.15)
    assert clip("hall_tilt_up_fast").camera_tilt == pytest.approx(0.2, rel=0.15)
    assert clip("bikes_tilt_down_fast").camera_tilt == pytest.approx(-0.2, rel=0.15)
    # Zooms of exp(0.25 t): DIS on 128 px frames sees about two thirds of the scale
    # change (docs/quality/signals.md), the sign always.
    assert 0.12 < clip("hall_zoom_in_fast").camera_zoom < 0.3
    assert -0.3 < clip("bikes_zoom_out_fast").camera_zoom < -0.12
    # A fixed camera on people walking: little camera, much subject motion; a pan over
    # a held picture: the reverse.
    fixed, pan = clip("vtest_fixed_0s"), clip("bikes_pan_right_fast")
    assert fixed.subject_motion > 0.5 * fixed.motion_score
    assert abs(fixed.camera_pan) < 0.01 and abs(fixed.camera_zoom) < 0.01
    assert pan.subject_motion < 0.05 * pan.motion_score
    # People walking under a pan stay subject motion.
    assert clip("vtest_pan_right").subject_motion > 2 * clip("bikes_pan_right_fast").subject_motion
