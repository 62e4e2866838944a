"""JudgeClips in a TestPipeline: subtitle bands, aesthetic scores through RunInference
(a random head in the real checkpoint format) and flags on the main output; embeddings
the head cannot read on the error output, their clips judged without a score."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import numpy as np
import torch
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.support.judging import write_aesthetic_head
from vidcurate.pipeline.options import AestheticConfig, QualityConfig
from vidcurate.schemas.records import ClipRecord, OcrLine, Span
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.judge_clips import FLAGS, JudgeClips, subtitle_box
from vidcurate.transforms.models.aesthetic import build_head, score_embeddings

DIM = 16
SUBS = tuple(OcrLine(t, 0.9, (0.2, 0.86, 0.8, 0.86, 0.8, 0.92, 0.2, 0.92), i)
             for i, t in enumerate(("I never said that", "Then who did", "Ask your brother")))


def _clip(clip_id: str, **kw) -> ClipRecord:
    return ClipRecord(clip_id=clip_id, video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 75, 0, 3), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=(), keyframe_times_s=(), run_id="r",
                      frame_size=(1280, 720), **kw)


def _frames(seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, dim)).astype(np.float32)


def _head(tmp_path):
    path = write_aesthetic_head(tmp_path / "head.pth", DIM)
    cfg = AestheticConfig(model=str(path), batch_size=4, checkpoint_path=str(path),
                          input_dim=DIM)
    return cfg, build_head(torch.load(path, weights_only=True))


def test_judge_stage_outputs(tmp_path):
    cfg, head = _head(tmp_path)
    clips = [
        _clip("subs", keyframe_embeddings=_frames(0), ocr_lines=SUBS, ocr_coverage_mean=0.02),
        _clip("other", keyframe_embeddings=_frames(1), ocr_lines=()),
        # CLIP did not run: no score, but judged all the same.
        _clip("no_clip", ocr_lines=SUBS),
        # Embeddings of another CLIP: an error row, and the clip goes on unscored.
        _clip("wrong_dim", keyframe_embeddings=_frames(2, DIM * 2), ocr_lines=()),
        # Only the mean embedding (the keyframe embeddings were dropped): scored from it.
        _clip("mean_only", clip_embedding=_frames(3).mean(axis=0)),
    ]
    # The score of a clip is the mean of its keyframes' scores.
    expected = {c.clip_id: round(float(score_embeddings(head, c.keyframe_embeddings).mean()), 4)
                for c in clips[:2]}
    expected["mean_only"] = round(float(score_embeddings(head, _frames(3).mean(axis=0)[None])
                                        [0]), 4)
    assert len(set(expected.values())) == 3  # the head tells clips apart
    # A random head scores anything: the threshold between the two lowest scores flags
    # exactly the lowest-scoring clip.
    low, second = sorted(expected.values())[:2]
    quality = QualityConfig(low_aesthetic_score=(low + second) / 2)
    band = subtitle_box(SUBS, (1280, 720))
    assert band is not None

    def flags(clip_id: str, *others: str) -> tuple[str, ...]:
        return tuple(f for f in FLAGS if f in others
                     or (f == "low_aesthetic" and expected.get(clip_id) == low))

    p = TestPipeline()
    judged = p | beam.Create(clips) | JudgeClips(quality, cfg, "r")
    assert_that(judged["clips"] | beam.Map(lambda c: (c.clip_id, c.aesthetic_score,
                                                      c.subtitle_box, c.quality_flags)),
                equal_to([("subs", expected["subs"], band, flags("subs", "subtitles")),
                          ("other", expected["other"], None, flags("other")),
                          ("no_clip", None, band, ("subtitles",)),
                          ("wrong_dim", None, None, ()),
                          ("mean_only", expected["mean_only"], None, flags("mean_only"))]),
                label="main")
    assert_that(judged[ERRORS] | beam.Map(lambda e: (e.stage, e.clip_id, "32-d" in e.message)),
                equal_to([("judge_clips", "wrong_dim", True)]), label="errors")
    p.run().wait_until_finish()


def test_a_failing_head_batch_is_an_error_row_and_the_clip_goes_on(tmp_path):
    cfg, _ = _head(tmp_path)
    # A config that did not learn the head's size lets the bad embeddings reach the
    # model: the batch fails in RunInference and comes back through its dead letters.
    blind = dataclasses.replace(cfg, input_dim=None)
    p = TestPipeline()
    judged = (p | beam.Create([_clip("wrong_dim", keyframe_embeddings=_frames(2, DIM * 2))])
              | JudgeClips(QualityConfig(), blind, "r"))
    assert_that(judged["clips"] | beam.Map(lambda c: (c.clip_id, c.aesthetic_score,
                                                      c.quality_flags)),
                equal_to([("wrong_dim", None, ())]), label="main")
    assert_that(judged[ERRORS] | beam.Map(lambda e: (e.clip_id, "aesthetic head" in e.message)),
                equal_to([("wrong_dim", True)]), label="errors")
    p.run().wait_until_finish()


def test_without_a_head_only_the_judging_runs(tmp_path):
    off = AestheticConfig(model=None, batch_size=4)
    p = TestPipeline()
    judged = (p | beam.Create([_clip("subs", keyframe_embeddings=_frames(0), ocr_lines=SUBS,
                                     brightness=0.02)])
              | JudgeClips(QualityConfig(), off, "r"))
    assert_that(judged["clips"] | beam.Map(lambda c: (c.aesthetic_score, c.quality_flags)),
                equal_to([(None, ("dark", "subtitles"))]), label="main")
    assert_that(judged[ERRORS], equal_to([]), label="errors")
    p.run().wait_until_finish()
