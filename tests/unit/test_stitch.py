"""Semantic stitching on hand-made embedding sequences (Panda-70M rules)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vidcurate.pipeline.options import SplitConfig, StitchConfig
from vidcurate.schemas.records import Boundary, ProbedVideo, ScenedVideo, Source, Span
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.stitch import boundary_frames, stitch

FPS = 10.0
DIM = 8


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIM)
    v[: len(weights)] = weights
    return (v / np.linalg.norm(v)).astype(np.float32)


# Contents: A and B are unrelated (distance sqrt 2); A2 is A seen a little differently.
A, B, C = unit(1), unit(0, 1), unit(0, 0, 1)
A2 = unit(1, 0, 0, 0.3)  # |A - A2| ~ 0.29: same scene, something moved
A3 = unit(1, 0, 0, 0, 0, 0, 0.3)
B2 = unit(0, 1, 0, 0, 0.3)

STITCH = StitchConfig(model_id="test", start_position=0.05, end_position=0.95,
                      transition_distance=1.0, merge_distance=0.6, still_distance=0.15,
                      redundant_distance=0.3, scale=1.0)
SPLIT = SplitConfig(detector="content", threshold=25, min_scene_len=15, detect_width=256,
                    max_cut_len=5, force_cut_after=7, min_clip_s=2.5, max_clip_s=60,
                    trim_fraction=0.0, stitch=STITCH)


def shots(*lengths_s: float) -> list[Span]:
    out, at = [], 0
    for length in lengths_s:
        end = at + int(length * FPS)
        out.append(Span(at, end, at / FPS, end / FPS))
        at = end
    return out


def cut_boundaries(spans: list[Span]) -> list[Boundary]:
    return [Boundary(frame=s.start_frame, time_s=s.start_s, kind="detected") for s in spans[1:]]


def run(spans, pairs, cfg=STITCH, split=SPLIT):
    starts = [p[0] if p else None for p in pairs]
    ends = [p[1] if p else None for p in pairs]
    return stitch(spans, starts, ends, cut_boundaries(spans), FPS, cfg, split)


def test_boundary_frames_follow_panda():
    # Panda: int(0.95*s + 0.05*(e-1)) and int(0.05*s + 0.95*(e-1)).
    assert boundary_frames(Span(100, 200, 10, 20), 0.05, 0.95) == (
        int(0.95 * 100 + 0.05 * 199), int(0.05 * 100 + 0.95 * 199))
    assert boundary_frames(Span(0, 1, 0, 0.1), 0.05, 0.95) == (0, 0)


def test_similar_neighbours_merge_and_dissimilar_stay_apart():
    spans = shots(4, 4, 4)
    result = run(spans, [(A, A2), (A2, A3), (B, B2)])
    assert [(e.start_frame, e.end_frame) for e in result.events] == [(0, 80), (80, 120)]
    assert result.dropped == ()
    merged = {b.frame: (b.merged, round(b.distance, 3)) for b in result.boundaries}
    assert merged[40] == (True, 0.0)  # A2 -> A2 across the cut
    assert merged[80][0] is False and merged[80][1] == pytest.approx(np.sqrt(2), abs=1e-3)


def test_merge_threshold_is_inclusive_and_scaled():
    spans = shots(4, 4)
    gap = float(np.linalg.norm(A2 - A))
    at = dataclasses.replace(STITCH, merge_distance=gap + 1e-6, redundant_distance=0)
    assert len(run(spans, [(A, A2), (A, A3)], cfg=at).events) == 1
    below = dataclasses.replace(at, merge_distance=gap * 0.99)
    assert len(run(spans, [(A, A2), (A, A3)], cfg=below).events) == 2


def test_transition_cut_scene_is_dropped_and_breaks_the_chain():
    spans = shots(4, 1, 4)
    # The middle shot fades from A to B: its own start and end are far apart.
    result = run(spans, [(A, A2), (A2, B), (B, B2)])
    assert [d.reason for d in result.dropped] == ["transition"]
    assert result.dropped[0].distance == pytest.approx(np.sqrt(2), abs=1e-3)
    # The shots around it are not adjacent any more: two events, as in Panda's code.
    assert [(e.start_frame, e.end_frame) for e in result.events] == [(0, 40), (50, 90)]


def test_unreadable_frames_drop_only_that_cut_scene():
    result = run(shots(4, 4), [(A, A2), None])
    assert [d.reason for d in result.dropped] == ["frames_unreadable"]
    assert len(result.events) == 1


def test_still_event_dropped():
    result = run(shots(4, 4), [(A, A), (B, B2)])
    assert [d.reason for d in result.dropped] == ["still"]
    assert [(e.start_frame, e.end_frame) for e in result.events] == [(40, 80)]


def test_redundant_event_dropped_against_kept_events_only():
    spans = shots(4, 4, 4)
    result = run(spans, [(A, A2), (B, B2), (A2, A)])
    assert [d.reason for d in result.dropped] == ["redundant"]
    assert [(e.start_frame, e.end_frame) for e in result.events] == [(0, 40), (40, 80)]
    # A short event is never the reference of a redundancy: it is left to the clip rules.
    short_first = run(shots(1, 4, 4), [(A, A2), (B, B2), (A2, A)])
    assert short_first.dropped == ()
    assert len(short_first.events) == 3
    off = dataclasses.replace(STITCH, redundant_distance=0.0)
    assert run(spans, [(A, A2), (B, B2), (A2, A)], cfg=off).dropped == ()


def test_everything_dropped_is_zero_clips_with_a_reason():
    spans = shots(4, 4, 4)
    result = run(spans, [(A, B), (B, C), None])
    assert result.events == ()
    info_fields = {"duration_s": 12.0, "fps": FPS}
    video = ProbedVideo(source=Source(uri="/v.mp4", video_id="v"), local_path="/v.mp4",
                        info=_info(**info_fields))
    scened = ScenedVideo(video=video, boundaries=tuple(result.boundaries),
                         shots=tuple(spans), decoded_frames=120, events=result.events,
                         stitch_dropped=result.dropped)
    split = apply_rules(scened, SPLIT)
    assert split.spans == ()
    assert split.reason == ("stitching dropped all 3 cut-scenes (1 frames unreadable, "
                            "2 transition)")


def test_events_feed_the_clip_rules():
    spans = shots(1, 2, 4)
    result = run(spans, [(A, A2), (A2, A3), (B, B2)])
    video = ProbedVideo(source=Source(uri="/v.mp4", video_id="v"), local_path="/v.mp4",
                        info=_info(duration_s=7.0, fps=FPS))
    scened = ScenedVideo(video=video, boundaries=(), shots=tuple(spans), decoded_frames=70,
                         events=result.events, stitch_dropped=result.dropped)
    # Unstitched, the 1 s and 2 s shots are both too short; merged they make a 3 s clip.
    spans_out = apply_rules(scened, SPLIT).spans
    assert [(s.start_frame, s.end_frame) for s in spans_out] == [(0, 30), (30, 70)]


def _info(duration_s: float, fps: float):
    from vidcurate.schemas.records import VideoInfo

    return VideoInfo(duration_s=duration_s, start_time_s=0.0, container_start_s=0.0, fps=fps,
                     is_vfr=False, width=64, height=64, rotation=0, video_codec="h264",
                     pix_fmt="yuv420p", audio_codec=None, has_audio=False, audio_start_s=None,
                     container="mp4", bit_rate=None, nb_frames=None, bytes=1,
                     content_sha256=None)


def test_sequential_reading_is_chosen_when_seeking_costs_more():
    from vidcurate.transforms.stitch import SEEK_COST_S, sequential_is_cheaper

    dense = [i * 2.0 for i in range(30)]  # a frame every 2 s of a 1-minute video
    assert sequential_is_cheaper(dense, keyframe_interval_s=10.0)
    assert not sequential_is_cheaper([600.0, 1200.0], keyframe_interval_s=2.0)
    assert sequential_is_cheaper([600.0, 1200.0], keyframe_interval_s=None)  # unknown GOP
    assert not sequential_is_cheaper([], keyframe_interval_s=2.0)
    # The break-even: one pass to t=N*(GOP/2+fixed cost) equals N seeks.
    edge = 4 * (1.0 + SEEK_COST_S)
    assert sequential_is_cheaper([0.0, 1.0, 2.0, edge], 2.0)
    assert not sequential_is_cheaper([0.0, 1.0, 2.0, edge + 0.1], 2.0)


@pytest.fixture(scope="module")
def scened_cuts(videos):
    from vidcurate.transforms.detect_scenes import detect_scenes
    from vidcurate.transforms.probe import probe_source

    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    return detect_scenes(video, dataclasses.replace(SPLIT, stitch=None))


def _frames_by_key(scened, cfg=STITCH):
    from vidcurate.transforms.stitch import boundary_frames_of

    out = {}
    for i, pos, image in boundary_frames_of(scened, cfg):
        assert (i, pos) not in out
        out[(i, pos)] = image
    return out


def test_boundary_frames_are_the_same_read_in_one_pass_or_by_seeking(scened_cuts, monkeypatch):
    from vidcurate.transforms import stitch as stitch_module

    keys = {(i, pos) for i in range(len(scened_cuts.shots)) for pos in (0, 1)}
    one_pass = _frames_by_key(scened_cuts)
    monkeypatch.setattr(stitch_module, "SEEK_COST_S", 0.0)
    monkeypatch.setattr(stitch_module, "mean_keyframe_interval_s", lambda path, **limits: 0.0)
    monkeypatch.setattr(stitch_module, "frames_by_number", None)  # must not be used
    sought = _frames_by_key(scened_cuts)
    assert set(one_pass) == set(sought) == keys
    for key in keys:
        assert np.abs(one_pass[key].astype(int) - sought[key].astype(int)).mean() < 6, key


def test_frames_a_failed_pass_did_not_give_are_read_by_seeking(scened_cuts, monkeypatch):
    from vidcurate.transforms import stitch as stitch_module
    from vidcurate.transforms.media.limits import MediaError

    real = stitch_module.frames_by_number

    def dies_after_two(*args, **kwargs):
        for k, item in enumerate(real(*args, **kwargs)):
            if k == 2:
                raise MediaError("decode_failed", "decoder died")
            yield item

    monkeypatch.setattr(stitch_module, "frames_by_number", dies_after_two)
    got = _frames_by_key(scened_cuts)
    assert len(got) == 2 * len(scened_cuts.shots)


def test_no_readable_frame_is_a_media_error(scened_cuts, tmp_path):
    from vidcurate.transforms.media.limits import MediaError

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video any more")
    video = dataclasses.replace(scened_cuts.video, local_path=str(broken))
    with pytest.raises(MediaError) as e:
        _frames_by_key(dataclasses.replace(scened_cuts, video=video))
    assert e.value.error_type == "frames_unreadable"
