"""The frame sample: one decode per video yields the cut detector's frames and the
keyframe-size frames that stitching and the keyframes use (issue 18)."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import numpy as np
import pytest

from vidcurate.pipeline.options import MediaConfig, SplitConfig, StitchConfig
from vidcurate.schemas.records import FrameSample, Source, Span
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.cut_clips import cut_one, plan_clips
from vidcurate.transforms.detect_scenes import FrameSampleConfig, detect_scenes
from vidcurate.transforms.media.decoding import (
    KEYFRAME_SAMPLE_INTERVAL_S,
    MAX_SAMPLE_FRAMES,
    SAMPLE_INTERVAL_S,
    SampleRequest,
    decode_frames_downscaled,
    frames_by_number,
    nearest_sample,
    sample_folder,
    sample_stride,
)
from vidcurate.transforms.probe import probe_source

CFG = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
STITCH = StitchConfig(model_id="test", start_position=0.05, end_position=0.95,
                      transition_distance=1.0, merge_distance=0.6, still_distance=0.15,
                      redundant_distance=0.3, scale=1.0)
STITCHED = dataclasses.replace(CFG, stitch=STITCH)


def _sample(stride: int, count: int, fps: float = 25.0) -> FrameSample:
    return FrameSample(folder="/nowhere", stride=stride, count=count, fps=fps, width=1280)


# ---------------------------------------------------------------- planning, no Beam
@pytest.mark.parametrize("fps", [10.0, 23.976, 25.0, 30.0, 60.0])
def test_stride_keeps_a_frame_every_quarter_second_and_two_in_every_shot(fps):
    stride = sample_stride(fps, duration_s=60.0, min_scene_len=15)
    assert stride >= 1
    assert stride / fps <= SAMPLE_INTERVAL_S + 1e-9
    # Any 15 consecutive frames (the shortest shot the detector reports) hold two
    # sampled frames, wherever the shot starts.
    for start in range(3 * stride):
        held = [f for f in range(start, start + 15) if f % stride == 0]
        assert len(held) >= 2, (fps, stride, start)


@pytest.mark.parametrize("fps", [10.0, 23.976, 25.0, 30.0, 60.0])
@pytest.mark.parametrize("min_clip_s", [0.0, 0.5, 2.5, 8.0])
def test_keyframes_only_stride_keeps_four_frames_in_every_clip(fps, min_clip_s):
    """Without stitching only keyframes read the sample: a frame every half second at
    most, and four in any clip the rules keep (or any shot, when clips may be shorter)."""
    stride = sample_stride(fps, 60.0, 15, keyframes_only_min_clip_s=min_clip_s)
    assert stride >= 1 and stride / fps <= KEYFRAME_SAMPLE_INTERVAL_S + 1e-9
    shortest = max(int(fps * min_clip_s), 15)
    for start in range(3 * stride):
        held = [f for f in range(start, start + shortest) if f % stride == 0]
        assert len(held) >= 4, (fps, stride, start)
    # The point of it: Panda's 2.5 s clips at 25 fps need half the images stitching does.
    if (fps, min_clip_s) == (25.0, 2.5):
        assert stride == 2 * sample_stride(fps, 60.0, 15) == 12


def test_stride_bounds_the_images_of_a_long_video():
    fps, hours = 30.0, 3.0
    stride = sample_stride(fps, duration_s=hours * 3600, min_scene_len=15)
    frames = int(hours * 3600 * fps) + 1
    assert -(-frames // stride) <= MAX_SAMPLE_FRAMES
    assert sample_stride(fps, 60.0, 15) < stride  # a minute is sampled densely


def test_nearest_sample_stays_inside_the_span():
    sample = _sample(stride=7, count=100)
    assert nearest_sample(sample, 50, 0, 700) == 7  # 49 is nearer than 56
    assert nearest_sample(sample, 53, 0, 700) == 8  # round half up: 56 over 49
    # Frame 29 is nearest to 28, but 28 is before the span: the first one inside it.
    assert nearest_sample(sample, 29, 29, 60) == 5
    # Nearest to 60 is 63, past the span's end (exclusive): the last one inside.
    assert nearest_sample(sample, 60, 29, 63) == 8
    assert nearest_sample(sample, 31, 29, 35) is None  # no sampled frame in 29..34
    assert nearest_sample(sample, 10_000, 0, 10_000) == 99  # past the last image written


def test_sample_config_follows_the_keyframes_and_stitching():
    assert FrameSampleConfig.for_run("/w", 3, 1280, True) == FrameSampleConfig("/w", 1280)
    assert FrameSampleConfig.for_run("/w", 3, 0, False) == FrameSampleConfig("/w", 0)
    # Stitching never reads narrower frames than it did by decoding.
    assert FrameSampleConfig.for_run("/w", 3, 64, True).width == 448
    assert FrameSampleConfig.for_run("/w", 0, 1280, True).width == 448
    assert FrameSampleConfig.for_run("/w", 0, 1280, False) is None
    # Workers after a shuffle could neither read nor remove it on another's disk.
    assert FrameSampleConfig.for_run("gs://bucket/work", 3, 1280, True) is None


def test_sample_folder_is_ours_whatever_the_video_id():
    folder = sample_folder("/work/run-1", "../../etc")
    assert os.path.dirname(os.path.dirname(folder)) == "/work/run-1"
    assert ".." not in folder


# ---------------------------------------------------------------- the one decode
@pytest.fixture(scope="module")
def sampled(videos, tmp_path_factory):
    root = tmp_path_factory.mktemp("work")
    video = probe_source(Source(uri=str(videos.cuts), video_id="cutsvideo"))
    scened = detect_scenes(video, STITCHED, sample_cfg=FrameSampleConfig(str(root), 320))
    return root, scened


@pytest.fixture(scope="module")
def keyframes_sampled(videos, tmp_path_factory):
    """No stitching: the sample serves only the keyframes."""
    root = tmp_path_factory.mktemp("work")
    video = probe_source(Source(uri=str(videos.cuts), video_id="cutsvideo"))
    return root, detect_scenes(video, CFG, sample_cfg=FrameSampleConfig(str(root), 320))


def _count_ffmpeg(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = subprocess.Popen

    def counting(args, *a, **kw):
        if args and os.path.basename(str(args[0])) == "ffmpeg":
            calls.append([str(x) for x in args])
        return real(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", counting)
    return calls


def test_split_stitch_frames_and_keyframes_decode_the_video_once(videos, tmp_path,
                                                                    monkeypatch):
    """Cut detection, stitching's boundary frames and every clip's keyframes: one
    decoding ffmpeg process per video; the only other ffmpeg processes cut clip files
    (stream copy, no decode)."""
    from vidcurate.transforms.stitch import boundary_frames_of

    calls = _count_ffmpeg(monkeypatch)
    video = probe_source(Source(uri=str(videos.cuts), video_id="cutsvideo"))
    media = MediaConfig(str(tmp_path / "out"), "copy", 3, 320, 1)
    sample_cfg = FrameSampleConfig.for_run(str(tmp_path / "work"), media.keyframes,
                                           media.keyframe_width, True)
    scened = detect_scenes(video, STITCHED, sample_cfg=sample_cfg)
    frames = list(boundary_frames_of(scened, STITCH))
    assert len(frames) == 2 * len(scened.shots)
    split = apply_rules(scened, CFG)
    records = [cut_one(t, media, "h", "r") for t in plan_clips(split, media, "h")]
    assert len(records) == 5 and all(len(r.keyframe_uris) == 3 for r in records)
    decoding = [c for c in calls if "copy" not in c]
    assert len(decoding) == 1, [" ".join(c[-8:]) for c in decoding]


def test_sample_is_written_by_the_detect_process_and_bounded(videos, tmp_path):
    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    folder = tmp_path / "100% s"  # a '%' in the work dir is not part of the pattern
    folder.mkdir()
    request = SampleRequest(str(folder), stride=10, width=160, max_frames=4)
    with decode_frames_downscaled(str(videos.cuts), video.info, 64,
                                  sample=request) as frames:
        n = sum(1 for _ in frames)
    assert n == 400  # the detection stream is whole
    assert sorted(os.listdir(folder)) == [f"{k:08d}.jpg" for k in range(4)]


def test_sampled_images_are_the_frames_they_are_numbered(sampled):
    from PIL import Image

    _, scened = sampled
    sample = scened.sample
    assert sample is not None and sample.stride == 6  # 25 fps, min_scene_len 15
    assert sample.count == -(-scened.decoded_frames // sample.stride)
    wanted = [sample.frame(k) for k in (0, 17, 33, sample.count - 1)]
    truth = dict(frames_by_number(scened.video.local_path, scened.video.info, wanted, 320))
    for k, number in zip((0, 17, 33, sample.count - 1), wanted, strict=True):
        with Image.open(sample.path(k)) as im:
            image = np.asarray(im.convert("RGB"), dtype=float)
        assert image.shape == truth[number].shape == (180, 320, 3)
        assert _psnr(image, truth[number]) > JPEG_PSNR, number


# A q:v 3 JPEG of the sharp, saturated test patterns against the decoded frame (the
# seeking path's keyframes score the same: ~27 dB on testsrc2, ~40 dB on mandelbrot).
JPEG_PSNR = 25.0
# Two frames this alike are the same picture (the still colour bars).
STILL_PSNR = 45.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("which", ["sampled", "keyframes_sampled"])
def test_keyframes_are_the_source_frames_at_their_recorded_times(which, request, tmp_path,
                                                                  monkeypatch):
    """Each keyframe is the sampled frame nearest its 5/50/95% position, inside the
    clip; keyframe_times_s records the time of the frame it shows. With or without
    stitching (a sample twice as sparse), no keyframe is read by decoding again."""
    from PIL import Image

    _, scened = request.getfixturevalue(which)
    sample = scened.sample
    assert sample is not None and sample.stride == (6 if which == "sampled" else 12)
    monkeypatch.setattr("vidcurate.transforms.cut_clips.extract_frames", _no_seeking)
    media = MediaConfig(str(tmp_path / "out"), "none", 3, 320, 1)
    split = apply_rules(scened, CFG)
    info = scened.video.info
    for task in plan_clips(split, media, "h"):
        rec = cut_one(task, media, "h", "r")
        numbers = [t * info.fps for t in rec.keyframe_times_s]
        assert numbers == pytest.approx([round(n) for n in numbers], abs=1e-4)
        numbers = [round(n) for n in numbers]
        for wanted, number in zip((0.05, 0.5, 0.95), numbers, strict=True):
            assert task.span.start_frame <= number < task.span.end_frame
            position = (task.span.start_s + wanted * task.span.duration_s) * info.fps
            inside = [sample.frame(k) for k in range(sample.count)
                      if task.span.start_frame <= sample.frame(k) < task.span.end_frame]
            # The nearest sampled frame inside the clip: within half a stride of its
            # place, or a stride where the nearer one lies across the clip's edge.
            assert abs(number - position) <= min(abs(f - position) for f in inside) + 0.5
            assert abs(number - position) <= sample.stride + 0.5
        around = sorted({m for n in numbers for m in (n - 1, n, n + 1)
                         if task.span.start_frame <= m < task.span.end_frame})
        truth = dict(frames_by_number(task.local_path, info, around, 320))
        for uri, number in zip(rec.keyframe_uris, numbers, strict=True):
            with Image.open(uri) as im:
                image = np.asarray(im.convert("RGB"))
            assert _psnr(image, truth[number]) > JPEG_PSNR, (uri, number)
            # Where the footage moves (not the still bars), the recorded time is the
            # frame shown, not merely near it: its neighbours match worse.
            for m in (number - 1, number + 1):
                if m in truth and _psnr(truth[m], truth[number]) < STILL_PSNR:
                    assert _psnr(image, truth[number]) > _psnr(image, truth[m]), (uri, m)


def _no_seeking(*_args, **_kwargs):
    raise AssertionError("a keyframe was read from the video, not from the sample")


def test_keyframes_are_the_sample_bytes(sampled, tmp_path):
    _, scened = sampled
    sample = scened.sample
    media = MediaConfig(str(tmp_path / "out"), "none", 3, 320, 1)
    task = plan_clips(apply_rules(scened, CFG), media, "h")[2]
    rec = cut_one(task, media, "h", "r")
    for uri, t in zip(rec.keyframe_uris, rec.keyframe_times_s, strict=True):
        k = round(t * sample.fps) // sample.stride
        with open(uri, "rb") as a, open(sample.path(k), "rb") as b:
            assert a.read() == b.read()  # copied, not decoded and re-encoded


def test_stitching_frames_come_from_the_shot_they_stand_for(sampled, monkeypatch):
    from vidcurate.transforms import stitch as stitch_module

    _, scened = sampled
    monkeypatch.setattr(stitch_module, "frames_by_number", None)  # must not be used
    monkeypatch.setattr(stitch_module, "read_frames", None)
    got = {(i, pos): image for i, pos, image in stitch_module.boundary_frames_of(scened,
                                                                                  STITCH)}
    assert set(got) == {(i, pos) for i in range(len(scened.shots)) for pos in (0, 1)}
    info = scened.video.info
    for (i, pos), image in got.items():
        shot = scened.shots[i]
        wanted = stitch_module.boundary_frames(shot, 0.05, 0.95)[pos]
        k = nearest_sample(scened.sample, wanted, shot.start_frame, shot.end_frame)
        number = scened.sample.frame(k)
        assert shot.start_frame <= number < shot.end_frame
        truth = dict(frames_by_number(scened.video.local_path, info, [number], 320))[number]
        assert image.shape == truth.shape
        assert _psnr(image, truth) > JPEG_PSNR, (i, pos)


def test_a_shot_without_a_sampled_frame_is_read_from_the_video(sampled):
    from vidcurate.transforms.stitch import boundary_frames_of

    _, scened = sampled
    # Four frames between two sampled ones (stride 6): the sample cannot serve it.
    tiny = Span(1, 5, 1 / 25, 5 / 25)
    short = dataclasses.replace(scened, shots=(tiny, *scened.shots[1:]))
    got = {(i, pos) for i, pos, _ in boundary_frames_of(short, STITCH)}
    assert (0, 0) in got and (0, 1) in got


def test_remove_downloads_empties_only_our_sample(sampled, tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline

    from vidcurate.schemas.records import VideoRow
    from vidcurate.transforms.fetch import RemoveDownloads

    root = tmp_path / "work"
    folder = sample_folder(str(root), "vid")
    os.makedirs(folder)
    for k in range(3):
        open(os.path.join(folder, f"{k:08d}.jpg"), "wb").close()
    (root / "frames" / "other.txt").write_text("not ours")
    stranger = os.path.join(folder, "notes.txt")
    open(stranger, "w").close()
    row = VideoRow(Source(uri="/x.mp4", video_id="vid"), "ok", None, "r")
    with TestPipeline() as p:
        _ = p | beam.Create([row]) | RemoveDownloads(remove_downloads=False,
                                                     sample_root=str(root))
    assert os.listdir(folder) == ["notes.txt"]  # a file we did not write stays
    assert (root / "frames" / "other.txt").exists()
    os.remove(stranger)
    with TestPipeline() as p:
        _ = p | beam.Create([row]) | RemoveDownloads(remove_downloads=False,
                                                     sample_root=str(root))
    assert not os.path.exists(folder)


def test_a_failed_decode_leaves_no_sample(videos, tmp_path):
    from vidcurate.transforms.media.limits import MediaError

    video = probe_source(Source(uri=str(videos.cuts), video_id="broken"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video any more")
    video = dataclasses.replace(video, local_path=str(broken))
    root = tmp_path / "work"
    with pytest.raises(MediaError):
        detect_scenes(video, CFG, sample_cfg=FrameSampleConfig(str(root), 320))
    assert not os.path.exists(sample_folder(str(root), "broken"))


def test_a_sample_that_cannot_be_written_does_not_cut_detection_short(videos, tmp_path,
                                                                       monkeypatch):
    """ffmpeg stops every output when one fails (a full disk): the video is detected
    again without a sample, whole, and the write errors are not picture damage."""
    from vidcurate.transforms import detect_scenes as scenes_module

    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    plain = detect_scenes(video, CFG)
    unwritable = str(tmp_path / "no such folder")
    monkeypatch.setattr(scenes_module, "SampleRequest",
                        lambda folder, stride, width: SampleRequest(unwritable, stride, width))
    got = detect_scenes(video, CFG, sample_cfg=FrameSampleConfig(str(tmp_path / "w"), 320))
    assert got.sample is None
    assert got.decoded_frames == plain.decoded_frames == 400
    assert got.shots == plain.shots
    assert got.decode_log is not None and got.decode_log.total == 0
    assert got.detect_note is None


def test_keyframes_of_a_sample_this_worker_cannot_see_are_read_from_the_video(sampled,
                                                                               tmp_path):
    from vidcurate.transforms.cut_clips import keyframe_positions

    _, scened = sampled
    media = MediaConfig(str(tmp_path / "out"), "none", 3, 320, 1)
    task = plan_clips(apply_rules(scened, CFG), media, "h")[1]
    elsewhere = dataclasses.replace(task.sample, folder=str(tmp_path / "other worker"))
    rec = cut_one(dataclasses.replace(task, sample=elsewhere), media, "h", "r")
    assert list(rec.keyframe_times_s) == keyframe_positions(task.span, 3)
    for uri in rec.keyframe_uris:
        with open(uri, "rb") as f:
            assert f.read(2) == b"\xff\xd8"
