"""Judging clips: subtitle bands from OCR lines (constructed and read by RapidOCR from
generated footage), quality flags and their thresholds, the aesthetic head's format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import run_config
from tests.support.judging import SUBTITLES, make_subtitled_video, write_aesthetic_head
from vidcurate.pipeline.options import ConfigError, MediaConfig, OcrConfig, SplitConfig
from vidcurate.schemas.records import ClipRecord, OcrLine, Source, Span
from vidcurate.transforms.cut_clips import cut_one, plan_clips
from vidcurate.transforms.judge_clips import (
    FLAGS,
    QualityConfig,
    judge_clip,
    quality_flags,
    subtitle_box,
)
from vidcurate.transforms.ocr import same_text

W, H = 1280, 720


def _line(text: str, x0: float, y0: float, x1: float, y1: float, frame: int) -> OcrLine:
    return OcrLine(text, 0.95, (x0, y0, x1, y0, x1, y1, x0, y1), frame)


def _subs(texts, y0=0.86, y1=0.92, jitter=None):
    """One line per keyframe at the given height (moved by jitter), 60% of the width."""
    jitter = jitter or (0.0,) * len(texts)
    return [_line(t, 0.2, y0 + j, 0.8, y1 + j, i)
            for i, (t, j) in enumerate(zip(texts, jitter, strict=True))]


SPOKEN = ("I never said that", "Then who did", "Ask your brother")


def test_changing_text_at_one_height_in_the_bottom_band_is_a_subtitle_band():
    box = subtitle_box(_subs(SPOKEN), (W, H))
    assert box is not None
    x0, y0, x1, y1 = box
    # Full width (a longer caption later is as wide as the frame), and the lines' rows
    # inside it with a margin; pixels of the source frame.
    assert (x0, x1) == (0, W)
    assert y0 < 0.86 * H and y1 > 0.92 * H
    assert y0 > 0.75 * H and y1 <= H


def test_the_same_text_in_every_keyframe_is_not_a_subtitle():
    # A lower third or a logo: in the band, at one height, but it never changes.
    assert subtitle_box(_subs(["Breaking News at Nine"] * 3), (W, H)) is None


def test_subtitles_beside_a_logo_leave_the_logo_out_of_the_band():
    logo = [_line("CH 7", 0.02, 0.77, 0.1, 0.8, i) for i in range(3)]
    box = subtitle_box(_subs(SPOKEN) + logo, (W, H))
    assert box is not None and box[1] > 0.8 * H  # starts below the logo
    # The logo alone is no subtitle.
    assert subtitle_box(logo, (W, H)) is None


def test_text_that_moves_or_sits_mid_frame_is_not_a_subtitle():
    # Changing words whose baseline jumps between keyframes: captions of a scene (signs,
    # screens), not a subtitle track.
    assert subtitle_box(_subs(SPOKEN, jitter=(0.0, -0.06, 0.0)), (W, H)) is None
    assert subtitle_box(_subs(SPOKEN, y0=0.45, y1=0.5), (W, H)) is None
    # Small jitter (OCR boxes vary with descenders) still counts.
    assert subtitle_box(_subs(SPOKEN, jitter=(0.0, 0.01, -0.01)), (W, H)) is not None


def test_top_subtitles_and_the_minimum_number_of_keyframes():
    top = subtitle_box(_subs(SPOKEN, y0=0.05, y1=0.1), (W, H))
    assert top is not None and top[3] < 0.25 * H
    # One keyframe with text cannot show the text changing.
    assert subtitle_box(_subs(SPOKEN[:1]), (W, H)) is None
    assert subtitle_box(_subs(SPOKEN[:2]), (W, H)) is not None
    assert subtitle_box(_subs(SPOKEN[:2]), (W, H), min_frames=3) is None
    # A narrower band leaves text at 86-92% of the height outside it.
    assert subtitle_box(_subs(SPOKEN), (W, H), band=0.1) is None


def _clip(**kw) -> ClipRecord:
    base = ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 50, 0.0, 2.0), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=(), keyframe_times_s=(), run_id="r")
    return dataclasses.replace(base, **kw)


GOOD = dict(motion_score=0.05, motion_patch_min=0.01, brightness=0.5, contrast=0.2,
            sharpness=500.0, content_box=(0, 0, W, H), frame_size=(W, H),
            decode_error_count=0, ocr_coverage_mean=0.01, aesthetic_score=6.0)

# Each flag, the signal that raises it, a value that raises it with the default
# thresholds, and the option that moves its threshold past that value.
CASES = {
    "static": ({"motion_score": 0.001}, "static_motion", 0.0005),
    "dark": ({"brightness": 0.05}, "dark_brightness", 0.04),
    "overexposed": ({"brightness": 0.95}, "overexposed_brightness", 0.96),
    "blurry": ({"sharpness": 20.0}, "blurry_sharpness", 10.0),
    "letterboxed": ({"content_box": (0, 90, W, H - 90)}, "letterbox_bars", 0.3),
    "damaged": ({"decode_error_count": 3}, "damaged_errors", 4),
    "text_heavy": ({"ocr_coverage_mean": 0.3}, "text_heavy_coverage", 0.4),
    "low_resolution": ({"frame_size": (320, 180), "content_box": (0, 0, 320, 180)},
                       "low_resolution_px", 160),
    "low_aesthetic": ({"aesthetic_score": 3.9}, "low_aesthetic_score", 3.5),
}


def test_a_clip_whose_signals_all_pass_has_no_flags():
    assert quality_flags(_clip(**GOOD), QualityConfig()) == ()


@pytest.mark.parametrize("flag", sorted(CASES))
def test_each_flag_follows_its_signal_and_threshold(flag):
    signal, option, moved = CASES[flag]
    clip = _clip(**{**GOOD, **signal})
    assert quality_flags(clip, QualityConfig()) == (flag,)
    # The threshold is the option's: moved past the value, the flag goes.
    assert quality_flags(clip, dataclasses.replace(QualityConfig(), **{option: moved})) == ()


def test_pillarbox_counts_as_letterbox_and_low_resolution_reads_the_content():
    pillar = _clip(**{**GOOD, "content_box": (160, 0, W - 160, H)})
    assert quality_flags(pillar, QualityConfig()) == ("letterboxed",)
    # A 4:3 picture 300 px tall inside a 1280x720 frame is low resolution.
    small = _clip(**{**GOOD, "content_box": (440, 210, 840, 510)})
    assert set(quality_flags(small, QualityConfig())) == {"letterboxed", "low_resolution"}


def test_unmeasured_signals_raise_no_flag_and_flags_keep_vocabulary_order():
    assert quality_flags(_clip(), QualityConfig()) == ()
    worst = _clip(motion_score=0.0, brightness=0.01, sharpness=1.0, frame_size=(320, 180),
                  content_box=(0, 40, 320, 140), subtitle_box=(0, 150, 320, 175),
                  decode_error_count=9, ocr_coverage_mean=0.5, aesthetic_score=1.0,
                  nsfw_score=0.99, personal_data=("email",))
    flags = quality_flags(worst, QualityConfig())
    assert list(flags) == [f for f in FLAGS if f in flags]
    assert set(flags) == set(FLAGS) - {"overexposed"}


def test_judge_fills_subtitle_band_and_the_subtitles_flag():
    clip = _clip(**GOOD, ocr_lines=tuple(_subs(SPOKEN)))
    judged = judge_clip(clip, QualityConfig(), aesthetic_score=5.12345)
    assert judged.subtitle_box is not None and judged.quality_flags == ("subtitles",)
    assert judged.aesthetic_score == pytest.approx(5.1234, abs=1e-4)
    # Without OCR there is nothing to judge subtitles from: no band, no flag.
    bare = judge_clip(_clip(**GOOD), QualityConfig())
    assert bare.subtitle_box is None and bare.quality_flags == ()


@pytest.mark.parametrize("args, message", [
    (("--flag-dark-brightness", "0.9"), "--flag-overexposed-brightness"),
    (("--flag-letterbox-bars", "1.5"), "--flag-letterbox-bars"),
    (("--subtitle-min-frames", "1"), "--subtitle-min-frames"),
    (("--subtitle-band", "0.7"), "--subtitle-band"),
    (("--flag-damaged-errors", "0"), "--flag-damaged-errors"),
    (("--flag-nsfw-score", "1.5"), "--flag-nsfw-score"),
    (("--aesthetic-model", "head.pth"), "--no-clip"),
])
def test_thresholds_are_validated_before_the_graph(args, message):
    with pytest.raises(ConfigError, match=message):
        run_config(*args)


def test_options_reach_the_config():
    cfg = run_config("--flag-static-motion", "0.02", "--subtitle-band", "0.3")
    assert cfg.quality.static_motion == 0.02 and cfg.quality.subtitle_band == 0.3
    assert not cfg.aesthetic.enabled  # off unless asked
    assert cfg.outputs_hash != run_config().outputs_hash  # the flags are written columns


# Real OCR on generated footage: RapidOCR reads the keyframes, then the band is judged.

OCR = OcrConfig(enabled=True, min_confidence=0.5, det_side=960, angle_cls=False)


def _read_clip(video: Path, tmp_path: Path) -> ClipRecord:
    from vidcurate.transforms.clip_rules import apply_rules
    from vidcurate.transforms.detect_scenes import detect_scenes
    from vidcurate.transforms.models.ocr import load_engine
    from vidcurate.transforms.ocr import ocr_clip
    from vidcurate.transforms.probe import probe_source

    split_cfg = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
    media = MediaConfig(str(tmp_path / "out"), "none", 3, 1280, 1)
    split = apply_rules(detect_scenes(probe_source(Source(uri=str(video), video_id="t")),
                                      split_cfg), split_cfg)
    (task,) = plan_clips(split, media, "h")
    clip, failures = ocr_clip(cut_one(task, media, "h", "r"), load_engine(OCR), OCR)
    assert not failures
    return clip


@pytest.fixture(scope="module")
def subtitled(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("subs")
    return {"bottom": make_subtitled_video(d / "bottom.mp4", logo="CH 7 NEWS"),
            "top": make_subtitled_video(d / "top.mp4", top=True),
            "static": make_subtitled_video(d / "static.mp4", lines=(SUBTITLES[0],) * 4)}


def test_rapidocr_subtitles_give_the_band_they_were_drawn_in(subtitled, tmp_path):
    clip = _read_clip(subtitled["bottom"], tmp_path)
    assert clip.frame_size == (960, 540)
    # The keyframes (5%, 50%, 95% of 6 s) show the first, third and fourth line (OCR
    # may garble a word of one).
    read = [ln.text for ln in clip.ocr_lines]
    assert sum(any(same_text(want, got) for got in read)
               for want in (SUBTITLES[0], SUBTITLES[2], SUBTITLES[3])) >= 2, read
    judged = judge_clip(clip, QualityConfig())
    assert "subtitles" in judged.quality_flags
    x0, y0, x1, y1 = judged.subtitle_box
    # Drawn from 45 px above the bottom edge up (38 px glyphs): the band holds those rows
    # and about a line of margin, across the whole width.
    assert (x0, x1) == (0, 960)
    assert 540 - 45 - 38 - 45 < y0 < 540 - 45 - 38 and 540 - 45 < y1 <= 540
    # The corner logo was read in every keyframe and is no part of the subtitles.
    assert sum("NEWS" in text for text in read) == 3


def test_rapidocr_top_subtitles_and_an_unchanging_line(subtitled, tmp_path):
    top = judge_clip(_read_clip(subtitled["top"], tmp_path / "t"), QualityConfig())
    assert top.subtitle_box is not None and top.subtitle_box[3] < 540 // 4
    # The same line held for 6 s reads like a subtitle but never changes: a title card.
    static = judge_clip(_read_clip(subtitled["static"], tmp_path / "s"), QualityConfig())
    assert static.ocr_text and static.subtitle_box is None
    assert "subtitles" not in static.quality_flags


def test_lower_third_in_real_text_footage_is_not_a_subtitle(text_video, tmp_path):
    # tests/support/helpers.TEXT_SHOTS: "Breaking News at Nine" boxed near the bottom of
    # the first shot for its whole length.
    from vidcurate.transforms.clip_rules import apply_rules
    from vidcurate.transforms.detect_scenes import detect_scenes
    from vidcurate.transforms.models.ocr import load_engine
    from vidcurate.transforms.ocr import ocr_clip
    from vidcurate.transforms.probe import probe_source

    split_cfg = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
    media = MediaConfig(str(tmp_path / "out"), "none", 3, 1280, 1)
    split = apply_rules(detect_scenes(probe_source(Source(uri=str(text_video),
                                                          video_id="t")), split_cfg), split_cfg)
    first = plan_clips(split, media, "h")[0]
    clip, _ = ocr_clip(cut_one(first, media, "h", "r"), load_engine(OCR), OCR)
    assert "Breaking News at Nine" in clip.ocr_text
    assert judge_clip(clip, QualityConfig()).subtitle_box is None


def test_aesthetic_head_files_are_in_the_real_format(tmp_path):
    import torch

    from vidcurate.transforms.models.aesthetic import build_head, head_input_dim, score_embeddings

    state = torch.load(write_aesthetic_head(tmp_path / "h.pth", 32), weights_only=True)
    assert sorted(state) == sorted(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7)
                                   for p in ("weight", "bias"))
    assert head_input_dim(state) == 32
    head = build_head(state)
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(4, 32)).astype(np.float32)
    first = score_embeddings(head, frames)
    assert np.array_equal(first, score_embeddings(head, frames))  # eval: no dropout
    assert len(set(np.round(first, 6))) == 4  # clips differ
    # The head reads L2-normalised embeddings: the scale of its input does not matter.
    np.testing.assert_allclose(score_embeddings(head, 3 * frames), first, rtol=1e-5)
    with pytest.raises(ValueError, match="32-d"):
        score_embeddings(head, frames[:, :16])
    with pytest.raises(ValueError, match="improved-aesthetic-predictor"):
        head_input_dim({k: v for k, v in state.items() if k != "layers.7.bias"})
