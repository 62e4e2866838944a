import dataclasses

import pytest

from tests.support.media import frame_at, same_frame
from vidcurate.pipeline.options import MediaConfig
from vidcurate.schemas.records import Source, Span
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.cut_clips import (
    clip_id_for,
    cut_one,
    keyframe_at_or_before,
    keyframe_positions,
    plan_clips,
)
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.media.limits import MediaError
from vidcurate.transforms.media.probing import media_duration
from vidcurate.transforms.probe import probe_source


def test_clip_id_is_deterministic_and_depends_on_span_and_params():
    span = Span(10, 100, 0.4, 4.0)
    a = clip_id_for("vid", span, "p1")
    assert a == clip_id_for("vid", span, "p1")
    assert len({a, clip_id_for("vid", span, "p2"), clip_id_for("vid2", span, "p1"),
                clip_id_for("vid", Span(11, 100, 0.44, 4.0), "p1")}) == 4


def test_keyframe_positions_spread_from_5_to_95_percent():
    span = Span(0, 250, 0.0, 10.0)
    assert keyframe_positions(span, 3) == [0.5, 5.0, 9.5]
    assert keyframe_positions(span, 1) == [5.0]
    assert keyframe_positions(span, 0) == []
    assert keyframe_positions(span, 5) == pytest.approx([0.5, 2.75, 5.0, 7.25, 9.5])


def test_keyframe_at_or_before():
    kf = [0.0, 2.0, 4.0]
    assert keyframe_at_or_before(kf, 3.0) == 2.0
    assert keyframe_at_or_before(kf, 4.0) == 4.0
    assert keyframe_at_or_before(kf, 3.9999) == 4.0  # within a millisecond: same frame
    assert keyframe_at_or_before([], 3.0) == 0.0


@pytest.fixture(scope="module")
def cuts_split(videos):
    from vidcurate.pipeline.options import SplitConfig

    cfg = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
    video = probe_source(Source(uri=str(videos.cuts), video_id="cutsvideo"))
    return apply_rules(detect_scenes(video, cfg), cfg)


def _media(tmp_path, mode, keyframes=3):
    return MediaConfig(output=str(tmp_path / "out"), clip_media=mode, keyframes=keyframes,
                       keyframe_width=160, ffmpeg_threads=1)


def test_plan_knows_where_stream_copy_starts(cuts_split, tmp_path):
    tasks = plan_clips(cuts_split, _media(tmp_path, "copy"), "h")
    # Spans start at the cuts 0, 3, 7, 10, 13 s; keyframes are every 2 s.
    assert [t.span.start_s for t in tasks] == [0.0, 3.0, 7.0, 10.0, 13.0]
    assert [t.keyframe_before_start_s for t in tasks] == [0.0, 2.0, 6.0, 10.0, 12.0]
    exact = plan_clips(cuts_split, _media(tmp_path, "exact"), "h")
    assert [t.keyframe_before_start_s for t in exact] == [None] * 5
    assert [t.clip_id for t in exact] == [t.clip_id for t in tasks]


def test_exact_clip_matches_its_span_within_one_frame(cuts_split, tmp_path):
    task = plan_clips(cuts_split, _media(tmp_path, "exact"), "h")[1]  # 3.0 - 7.0 s
    rec = cut_one(task, _media(tmp_path, "exact"), "h", "run1")
    path = rec.media_uri
    assert path.startswith(str(tmp_path / "out" / "media" / task.video_id))
    assert abs(media_duration(path) - task.span.duration_s) <= 1 / 25 + 1e-6
    assert rec.media_start_s == 3.0 and abs(rec.media_end_s - 7.0) <= 1 / 25 + 1e-6
    assert len(rec.keyframe_uris) == 3
    for uri in rec.keyframe_uris:
        with open(uri, "rb") as f:
            assert f.read(2) == b"\xff\xd8"  # JPEG


def test_copy_clip_starts_at_keyframe_within_the_gap(cuts_split, tmp_path):
    task = plan_clips(cuts_split, _media(tmp_path, "copy"), "h")[1]  # 3.0 - 7.0 s
    rec = cut_one(task, _media(tmp_path, "copy", keyframes=0), "h", "run1")
    gap = 2.0
    assert task.span.start_s - gap <= rec.media_start_s <= task.span.start_s
    # The file opens on the keyframe at 2.0 s (previous shot), not on the span start.
    first = frame_at(rec.media_uri)
    assert same_frame(first, frame_at(task.local_path, rec.media_start_s))
    assert not same_frame(first, frame_at(task.local_path, task.span.start_s))
    assert abs(rec.media_end_s - task.span.end_s) <= 2 / 25
    assert rec.keyframe_uris == ()


def test_keyframes_show_their_shot(cuts_split, tmp_path):
    """Keyframes are read by seeking: each must come from its own shot, not a neighbour."""
    import numpy as np
    from PIL import Image

    tasks = plan_clips(cuts_split, _media(tmp_path, "none"), "h")
    recs = [cut_one(t, _media(tmp_path, "none", keyframes=2), "h", "r") for t in tasks[:3]]
    assert all(r.media_uri is None for r in recs)
    means = [np.asarray(Image.open(r.keyframe_uris[0])).mean(axis=(0, 1)) for r in recs]
    # testsrc2, mandelbrot and gradients differ a lot in colour.
    assert min(np.abs(means[i] - means[j]).sum() for i, j in [(0, 1), (1, 2), (0, 2)]) > 20
    assert Image.open(recs[0].keyframe_uris[0]).size == (160, 90)


def test_cut_of_missing_source_raises_media_error(cuts_split, tmp_path):
    task = plan_clips(cuts_split, _media(tmp_path, "exact"), "h")[0]
    gone = dataclasses.replace(task, local_path=str(tmp_path / "gone.mp4"))
    with pytest.raises(MediaError) as e:
        cut_one(gone, _media(tmp_path, "exact"), "h", "r")
    assert e.value.error_type == "cut_failed"
    scratch = tmp_path / "out" / ".tmp"
    assert not scratch.exists() or not any(scratch.iterdir())  # scratch is cleaned up


def test_seeks_account_for_a_video_stream_that_starts_late(videos, tmp_path):
    """Audio at 0 s, video from 0.5 s: -ss counts from the container start, our spans
    from the first video frame; clips and keyframes must still show the same frames."""
    import numpy as np
    from PIL import Image

    from tests.support.media import ffmpeg
    from vidcurate.pipeline.options import SplitConfig

    delayed = tmp_path / "delayed.mp4"
    ffmpeg("-itsoffset", "0.5", "-i", str(videos.cuts), "-i", str(videos.cuts), "-map", "0:v",
           "-map", "1:a", "-c", "copy", str(delayed))
    cfg = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)

    def keyframes(path, name):
        video = probe_source(Source(uri=str(path), video_id=name))
        split = apply_rules(detect_scenes(video, cfg), cfg)
        media = MediaConfig(str(tmp_path / name), "exact", 3, 160, 1)
        recs = [cut_one(t, media, "h", "r") for t in plan_clips(split, media, "h")]
        return video, recs

    plain_video, plain = keyframes(videos.cuts, "plain")
    late_video, late = keyframes(delayed, "late")
    assert late_video.info.seek_offset_s == pytest.approx(0.5, abs=0.01)
    assert [r.span for r in late] == [r.span for r in plain]
    for a, b in zip(plain, late, strict=True):
        for ka, kb in zip(a.keyframe_uris, b.keyframe_uris, strict=True):
            diff = np.abs(np.asarray(Image.open(ka), float) - np.asarray(Image.open(kb), float))
            assert diff.mean() < 8, (ka, kb)  # same frame up to JPEG noise
        assert abs(media_duration(b.media_uri) - b.span.duration_s) <= 1 / 25 + 1e-6


def _packets(order: list[tuple[int, str]], fps: int = 25):
    """Packets in decode order from (frame number, 'K' for a keyframe or '')."""
    from vidcurate.transforms.media.probing import VideoPacket

    return [VideoPacket(f / fps, None, 1 / fps, kind == "K") for f, kind in order]


def test_stream_copy_plan_ends_on_the_last_frame_its_packets_decode():
    from vidcurate.transforms.media.cutting import plan_copy

    # x264's order with 3 B-frames (pyramid): each P-frame before the B-frames it anchors.
    order = [(0, "K"), (4, ""), (2, ""), (1, ""), (3, ""), (8, ""), (6, ""), (5, ""),
             (7, ""), (9, "K"), (13, ""), (11, ""), (10, ""), (12, "")]
    packets = _packets(order)
    # Frames 1-8 wanted: from keyframe 0, every packet up to frame 7 (9 is past the end).
    plan = plan_copy(packets, 1 / 25, 9 / 25)
    assert (plan.start_s, plan.packets) == (0.0, 9) and plan.end_s == pytest.approx(9 / 25)
    # Frames 1-7 wanted: 5, 6 and 7 need P-frame 8, which would show a frame past the
    # end; the copy ends on frame 4, and the row says so.
    plan = plan_copy(packets, 1 / 25, 8 / 25)
    assert plan.packets == 5 and plan.end_s == pytest.approx(5 / 25)
    # From the keyframe at 9 on; the last frame of the video lasts its packet.
    plan = plan_copy(packets, 10 / 25, 20 / 25)
    assert (plan.start_s, plan.packets) == (pytest.approx(9 / 25), 5)
    assert plan.end_s == pytest.approx(14 / 25)


def test_stream_copy_plan_never_leaves_a_gap():
    from vidcurate.transforms.media.cutting import plan_copy

    # Non-reference B-frames sent after the next P-frame: cut after P-frame 8, frames 1
    # and 3 (sent later) would be missing from the middle of the clip.
    packets = _packets([(0, "K"), (4, ""), (2, ""), (8, ""), (1, ""), (3, ""), (6, ""),
                        (5, ""), (7, "")])
    plan = plan_copy(packets, 0.0, 7 / 25)
    assert plan.packets == 1 and plan.end_s == pytest.approx(1 / 25)


def test_stream_copy_plan_counts_but_does_not_show_open_gop_leading_frames():
    from vidcurate.transforms.media.cutting import plan_copy

    # An open GOP: frames 2 and 3 follow keyframe 4 but show before it.
    packets = _packets([(0, "K"), (1, ""), (4, "K"), (2, ""), (3, ""), (5, ""), (6, "")])
    plan = plan_copy(packets, 4 / 25, 7 / 25)
    assert plan.start_s == pytest.approx(4 / 25) and plan.packets == 5
    assert plan.end_s == pytest.approx(7 / 25)


def test_stream_copy_plan_needs_timestamps():
    from vidcurate.transforms.media.cutting import plan_copy
    from vidcurate.transforms.media.probing import VideoPacket

    packets = [VideoPacket(None, i / 25, 1 / 25, i == 0) for i in range(10)]
    assert plan_copy(packets, 0.0, 0.2) is None  # cut by time instead
    # A span before the first keyframe starts at the first keyframe inside it.
    late = _packets([(3, ""), (5, "K"), (6, ""), (7, "")])
    plan = plan_copy(late, 0.0, 10 / 25)
    assert plan.start_s == pytest.approx(5 / 25) and plan.packets == 3
