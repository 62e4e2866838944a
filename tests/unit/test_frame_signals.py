"""Picture signals and decoder errors: pure functions on synthetic frames, then real and
generated footage with known answers (orderings and flags, not magic numbers)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.media import (
    Clip,
    damage_at,
    make_cuts_video,
    make_picture_video,
)
from vidcurate.pipeline.options import MediaConfig
from vidcurate.schemas.records import ClipSignals, DecodeLog, Source, Span
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.cut_clips import plan_clips
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.frame_signals import (
    MAX_KEPT_ERRORS,
    DecodeErrorCollector,
    FrameSignalsObserver,
    clip_signals,
    count_errors,
    decode_note,
    error_windows,
    lit_box,
    sample_stride,
)
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.video_rows import video_outcome

W, H = 256, 144
FPS = 25.0


def _texture(seed: int = 0, size: tuple[int, int] = (H, 2 * W)) -> np.ndarray:
    """A smooth random grey texture (optical flow needs texture at several scales)."""
    rng = np.random.default_rng(seed)
    big = np.zeros(size, np.float32)
    for scale in (2, 4, 8):  # detail at several scales, as in a photo
        noise = rng.random((size[0] // scale, size[1] // scale)).astype(np.float32)
        big += cv2.resize(noise, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 1.0)
    big = (big - big.min()) / (big.max() - big.min())
    return (40 + big * 200).astype(np.uint8)


def _bgr(grey: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _observe(frames: list[np.ndarray], fps: float = FPS,
             source: tuple[int, int] = (W * 5, H * 5)):
    obs = FrameSignalsObserver(fps, source)
    for f in frames:
        obs.observe(f)
    return obs.result()


def _whole(signals, n: int, fps: float = FPS) -> ClipSignals:
    return clip_signals(Span(0, n, 0.0, n / fps), signals, None)


def _pan(px_per_frame: float, n: int = 50, seed: int = 0) -> list[np.ndarray]:
    tex = _texture(seed)
    frames = []
    for i in range(n):
        shift = np.float32([[1, 0, -px_per_frame * i], [0, 1, 0]])
        frames.append(_bgr(cv2.warpAffine(tex, shift, (W, H), flags=cv2.INTER_LINEAR)))
    return frames


# --- pure functions -------------------------------------------------------------------


def test_stride_is_about_eight_samples_a_second():
    assert [sample_stride(f) for f in (8, 23.976, 25, 30, 50, 60, 120)] == [1, 3, 3, 4, 6, 8, 15]


def test_lit_box_finds_bars_and_black_frames():
    frame = np.zeros((H, W), np.uint8)
    frame[18:126, 32:224] = _texture()[18:126, 32:224]
    assert lit_box(frame) == (32, 18, 224, 126)
    # A few stray bright pixels in a bar (compression noise) are not picture.
    frame[3, 100] = 255
    frame[140, 10] = 200
    assert lit_box(frame) == (32, 18, 224, 126)
    assert lit_box(np.full((H, W), 10, np.uint8)) == (0, 0, 0, 0)


def test_still_picture_has_no_motion_and_grain_stays_small_against_a_slow_pan():
    tex = _bgr(_texture()[:, :W])
    rng = np.random.default_rng(1)
    still = _whole(_observe([tex] * 50), 50)
    noisy_frames = [np.clip(tex + rng.normal(0, 8, tex.shape), 0, 255).astype(np.uint8)
                    for _ in range(50)]
    noisy = _whole(_observe(noisy_frames), 50)
    # 0.25 px a frame at 256 px: 0.25 * 25 / hypot(256, 144) diagonals a second.
    pan = _whole(_observe(_pan(0.25)), 50)
    expected = 0.25 * FPS / math.hypot(W, H)
    assert still.motion_score == pytest.approx(0, abs=1e-4)
    assert pan.motion_score == pytest.approx(expected, rel=0.2)
    assert pan.motion_patch_min == pytest.approx(expected, rel=0.3)
    assert noisy.motion_score < pan.motion_score / 5


def test_patch_min_tells_a_moving_subject_on_a_frozen_background_from_a_pan():
    background = _texture(3)[:, :W]
    subject = _texture(4, (48, 256))
    frames = []
    for i in range(50):  # a patch in the middle moves 2 px a frame, the rest is frozen
        f = background.copy()
        f[48:96, 96:160] = subject[:, i * 2:i * 2 + 64]
        frames.append(_bgr(f))
    talking = _whole(_observe(frames), 50)
    busy = _whole(_observe(_pan(1.0)), 50)
    assert talking.motion_score > 0.01
    assert talking.motion_patch_min < talking.motion_score / 10
    assert busy.motion_patch_min > busy.motion_score / 2
    assert busy.motion_patch_min > 10 * talking.motion_patch_min


def test_brightness_contrast_sharpness_order():
    tex = _texture()[:, :W]
    base = _whole(_observe([_bgr(tex)] * 10), 10)
    dark = _whole(_observe([_bgr((tex * 0.4).astype(np.uint8))] * 10), 10)
    blurred = _whole(_observe([_bgr(cv2.GaussianBlur(tex, (0, 0), 2))] * 10), 10)
    assert 0 < dark.brightness < base.brightness < 1
    assert dark.contrast < base.contrast
    assert blurred.sharpness < base.sharpness / 2


def test_sharpness_does_not_depend_on_the_detect_width():
    tex = _texture(size=(288, 512))[:, :512]
    wide = _whole(_observe([_bgr(tex)] * 5), 5)
    # The same picture decoded at 512 px and at 256 px measures the same.
    narrow = _whole(_observe([_bgr(cv2.resize(tex, (256, 144),
                                              interpolation=cv2.INTER_AREA))] * 5), 5)
    assert wide.sharpness == pytest.approx(narrow.sharpness, rel=0.05)


def test_clip_aggregation_keeps_to_its_span_and_scales_the_box():
    tex = _texture()[:, :W]
    bars = np.zeros_like(tex)
    bars[18:126] = tex[18:126]
    # 2 s letterboxed still, then a hard cut to 2 s of a pan: frame 50 starts shot 2.
    frames = [_bgr(bars)] * 50 + _pan(1.0, 50, seed=5)
    signals = _observe(frames, source=(1280, 720))
    assert signals.stride == 3 and signals.samples == 34
    first = clip_signals(Span(0, 50, 0, 2), signals, None)
    second = clip_signals(Span(50, 100, 2, 4), signals, None)
    # The pair across the cut belongs to neither clip: the still stays still.
    assert first.motion_score == pytest.approx(0, abs=1e-4)
    assert second.motion_score > 0.05
    # Rows 18..126 of 144 are 90..630 of 720 (rounded outwards, within one detect pixel).
    x0, y0, x1, y1 = first.content_box
    assert (x0, x1) == (0, 1280)
    assert abs(y0 - 90) <= 5 and abs(y1 - 630) <= 5
    assert second.content_box == (0, 0, 1280, 720)
    # A span shorter than the stride can hold no sample: nothing measured.
    assert clip_signals(Span(1, 2, 0.04, 0.08), signals, None) == ClipSignals()


def test_black_clip_has_no_content_box():
    signals = _observe([np.zeros((H, W, 3), np.uint8)] * 10)
    clip = _whole(signals, 10)
    assert clip.content_box is None and clip.brightness == pytest.approx(0)


def test_signals_stay_a_few_bytes_per_sample():
    signals = _observe(_pan(0.5, 120))
    arrays = (signals.brightness, signals.contrast, signals.sharpness, signals.motion,
              signals.motion_patch_min, signals.boxes)
    per_sample = sum(a.nbytes for a in arrays) / signals.samples
    assert per_sample <= 28
    # An hour at 30 fps: 108k frames, 27k samples.
    assert per_sample * 108_000 / sample_stride(30) < 1 << 20


def test_decode_error_collector_places_counts_and_caps():
    errors = DecodeErrorCollector(25.0, lag_frames=10, keep=3)
    errors("[h264 @ 0x55d1c2] error while decoding MB 0 12, bytestream 1849", 100)
    errors("Error while decoding stream #0:0: Invalid data found", 101)
    # ffmpeg folds repeats: they belong to the line before, not to where they arrive.
    errors("    Last message repeated 4 times", 400)
    errors("[h264 @ 0x55d1c2] concealing 12 DC errors", 250)
    errors("[h264 @ 0x55d1c2] another", 251)
    log = errors.result()
    assert log.total == 8
    assert log.frames.tolist() == [100, 101, 250, 251]
    assert log.counts.tolist() == [1, 5, 1, 1]
    assert [e.message for e in log.kept] == [
        "[h264] error while decoding MB 0 12, bytestream 1849",
        "Error while decoding stream #0:0: Invalid data found",
        "[h264] concealing 12 DC errors"]
    assert log.kept[0].time_s == 4.0


def _log(frames: list[int], counts: list[int], lag: int = 10) -> DecodeLog:
    return DecodeLog(fps=25.0, lag_frames=lag, frames=np.array(frames, np.int32),
                     counts=np.array(counts, np.int32), total=sum(counts))


def test_error_windows_reach_the_next_keyframe():
    log = _log([100, 400], [3, 1])
    # Without keyframes: the reported frame to the decoder's look-ahead.
    assert error_windows(log) == [(100, 111, 3), (400, 411, 1)]
    # With them: until the first keyframe past the look-ahead (the decoder recovers).
    assert error_windows(log, [0, 105, 150, 300]) == [(100, 150, 3), (400, 2**31 - 1, 1)]
    assert count_errors(log, Span(0, 100, 0, 4)) == 0
    assert count_errors(log, Span(100, 200, 4, 8)) == 3
    assert count_errors(log, Span(110, 200, 4.4, 8), [0, 150]) == 3
    assert count_errors(log, Span(150, 300, 6, 12), [0, 150, 300]) == 0
    assert count_errors(log, Span(450, 500, 18, 20), [0, 150, 300]) == 1


def test_decode_note_says_how_many_and_where():
    assert decode_note(None) is None
    assert decode_note(_log([], [])) is None
    note = decode_note(_log([100, 104, 400], [3, 2, 1], lag=5))
    assert note.startswith("decoder reported 6 error(s) (damaged data) near 4.0-4.4 s, "
                           "16.0-16.2 s")
    assert "decode_error_count" in note


# --- real and generated footage ---------------------------------------------------------


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, sample_footage) -> dict[str, Path]:
    """A real picture (a Big Buck Bunny frame) held still, with grain, panned slowly,
    darkened, blurred, letterboxed and pillarboxed (640x360, 3 s)."""
    d = tmp_path_factory.mktemp("pictures")
    picture = d / "bunny.png"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", "2.5", "-i",
                    str(sample_footage / "bigbuckbunny.mp4"), "-frames:v", "1", str(picture)],
                   check=True)
    versions = {
        "still": "",
        "grain": "noise=alls=20:allf=t",
        "dark": "eq=brightness=-0.25",
        "blurred": "gblur=sigma=3",
        # 2.37:1 in 16:9 (bars of 45 px at the top and bottom) and 4:3 in 16:9 (80 px).
        "letterboxed": "scale=640:270,pad=640:360:0:45",
        "pillarboxed": "scale=480:360,pad=640:360:80:0",
    }
    out = {name: make_picture_video(d / f"{name}.mp4", picture, seconds=3, filters=f)
           for name, f in versions.items()}
    out["pan"] = make_picture_video(d / "pan.mp4", picture, seconds=3, pan_px_s=32)
    return out


def _clips(path: Path, split_cfg, min_clip_s: float = 1.0) -> list[ClipSignals]:
    import dataclasses

    cfg = dataclasses.replace(split_cfg, min_clip_s=min_clip_s)
    scened = detect_scenes(probe_source(Source(uri=str(path), video_id="v")), cfg)
    split = apply_rules(scened, cfg)
    media = MediaConfig(output="/nonexistent", clip_media="none", keyframes=0,
                        keyframe_width=0, ffmpeg_threads=0)
    return [t.signals for t in plan_clips(split, media, "hash")]


def _one(path: Path, split_cfg) -> ClipSignals:
    (clip,) = _clips(path, split_cfg)
    return clip


def test_still_grain_pan_and_walking_footage_order(pictures, sample_footage, split_cfg):
    still, grain, pan = (_one(pictures[n], split_cfg) for n in ("still", "grain", "pan"))
    bikes = _clips(sample_footage / "bikes.mp4", split_cfg)
    talking = _clips(sample_footage / "carphone_pristine.mp4", split_cfg)
    # 32 px/s across 640x360: 0.0436 diagonals a second.
    assert pan.motion_score == pytest.approx(32 / math.hypot(640, 360), rel=0.15)
    assert still.motion_score < 1e-3 and grain.motion_score < pan.motion_score / 8
    assert grain.motion_patch_min < pan.motion_patch_min / 8
    # Real street footage (people walking, cyclists, traffic): every shot moves far more
    # than grain, and more than the slow pan on the whole; a talking head in a car keeps
    # a still patch, the street mostly does not.
    assert len(bikes) == 5 and min(c.motion_score for c in bikes) > 5 * grain.motion_score
    assert np.mean([c.motion_score for c in bikes]) > pan.motion_score
    assert np.mean([c.motion_patch_min for c in bikes]) > 3 * max(
        c.motion_patch_min for c in talking)


def test_dark_blurred_and_barred_versions(pictures, split_cfg):
    clips = {name: _one(path, split_cfg) for name, path in pictures.items()}
    still = clips["still"]
    assert clips["dark"].brightness < still.brightness - 0.1
    assert clips["blurred"].sharpness < still.sharpness / 3
    assert still.content_box == (0, 0, 640, 360)
    # Bars are excluded to within one detect pixel (640 / 256 = 2.5 source pixels).
    x0, y0, x1, y1 = clips["letterboxed"].content_box
    assert (x0, x1) == (0, 640) and abs(y0 - 45) <= 3 and abs(y1 - 315) <= 3
    x0, y0, x1, y1 = clips["pillarboxed"].content_box
    assert (y0, y1) == (0, 360) and abs(x0 - 80) <= 3 and abs(x1 - 560) <= 3
    # Measured inside the picture: bars do not darken or flatten the clip.
    for barred in ("letterboxed", "pillarboxed"):
        assert clips[barred].brightness == pytest.approx(still.brightness, abs=0.03)
        assert clips[barred].contrast == pytest.approx(still.contrast, abs=0.03)


def test_rotated_video_box_is_in_display_pixels(videos, split_cfg):
    # 320x180 coded, displayed rotated by 90 degrees: 180 wide, 320 tall.
    clips = _clips(videos.rotated, split_cfg)
    assert clips and all(c.content_box == (0, 0, 180, 320) for c in clips)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, Path]:
    """Five 3 s shots with a keyframe at each cut (75 frames), and a copy with 16 KB
    overwritten at 7.5 s, in the middle of the third shot."""
    d = tmp_path_factory.mktemp("damaged")
    shots = [Clip(s, 3) for s in ("testsrc2", "smpte", "mandelbrot", "cellauto", "gradients")]
    clean = make_cuts_video(d / "clean.mp4", shots, size=(640, 360), audio=False, gop=75,
                            preset="veryfast")
    return clean, damage_at(clean, d / "damaged.mp4", 7.5, length=16384)


def test_damaged_middle_flags_only_the_clips_it_touches(damaged, split_cfg):
    clean, broken = damaged
    video = probe_source(Source(uri=str(broken), video_id="broken"))
    scened = detect_scenes(video, split_cfg)
    log = scened.decode_log
    assert log.total >= 3 and log.kept
    split = apply_rules(scened, split_cfg)
    media = MediaConfig(output="/nonexistent", clip_media="none", keyframes=0,
                        keyframe_width=0, ffmpeg_threads=0)
    tasks = plan_clips(split, media, "hash")
    counts = [t.signals.decode_error_count for t in tasks]
    assert len(tasks) == 5, [(t.span.start_s, t.span.end_s) for t in tasks]
    # The damage lies in the third shot; the shots around it are clean.
    assert counts[2] > 0 and counts[:2] == [0, 0] and counts[3:] == [0, 0]
    damaged_at = [e.time_s for e in log.kept]
    assert all(6.0 - 0.5 <= t < 9.0 for t in damaged_at), damaged_at
    # The videos row: still ok, with the errors and a note.
    row = video_outcome(video.source, "run", probed=video, split=split, clip_count=5)
    assert row.status == "ok"
    assert row.decode_errors == log.kept
    assert "decoder reported" in row.reason and "damaged data" in row.reason
    # The clean file: no errors, every clip 0, no note.
    ok = _clips(clean, split_cfg, min_clip_s=2.5)
    assert [c.decode_error_count for c in ok] == [0] * 5
    clean_video = probe_source(Source(uri=str(clean), video_id="clean"))
    clean_split = apply_rules(detect_scenes(clean_video, split_cfg), split_cfg)
    assert video_outcome(clean_video.source, "run", probed=clean_video, split=clean_split,
                         clip_count=5).reason is None


def test_many_errors_are_bounded_on_the_row(damaged, tmp_path, split_cfg):
    clean, _ = damaged
    # Damage in many places: every error counted, only the first texts kept.
    data = bytearray(clean.read_bytes())
    rng = np.random.default_rng(0)
    for at in range(len(data) // 10, len(data) - 4096, len(data) // 40):
        data[at:at + 2048] = rng.integers(0, 256, 2048, np.uint8).tobytes()
    path = tmp_path / "shredded.mp4"
    path.write_bytes(bytes(data))
    scened = detect_scenes(probe_source(Source(uri=str(path), video_id="s")), split_cfg)
    log = scened.decode_log
    assert log.total > len(log.kept)
    assert len(log.kept) == MAX_KEPT_ERRORS
    assert int(log.counts.sum()) == log.total


def test_a_damaged_audio_track_is_not_picture_damage():
    """ffmpeg decodes a few audio frames while opening a file even with -an: the audio
    decoder's complaints (and their repeats) are not counted; the video's are."""
    from vidcurate.transforms.frame_signals import DecodeErrorCollector

    collector = DecodeErrorCollector(25.0, 10, audio_codec="aac")
    collector("[aac @ 0x55761d679ec0] Reserved bit set.", 0)
    collector("    Last message repeated 3 times", 0)
    collector("[h264 @ 0x55d1] error while decoding MB 12 3, bytestream -5", 40)
    collector("    Last message repeated 2 times", 40)
    log = collector.result()
    assert log.total == 3 and log.frames.tolist() == [40]
    assert [e.message for e in log.kept] == ["[h264] error while decoding MB 12 3, "
                                             "bytestream -5"]
    mp3 = DecodeErrorCollector(25.0, 10, audio_codec="mp3")
    mp3("[mp3float @ 0x1] Header missing", 0)
    assert mp3.result().total == 0
