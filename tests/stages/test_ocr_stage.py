"""The OCR stage in a TestPipeline: main and error outputs, one engine per process."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from vidcurate.pipeline.options import MediaConfig, OcrConfig, SplitConfig
from vidcurate.schemas.records import Source
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.cut_clips import cut_one, plan_clips
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.ocr import OCR
from vidcurate.transforms.probe import probe_source

CFG = OcrConfig(enabled=True, min_confidence=0.5, det_side=960, angle_cls=False)


def _clips(video, tmp_path):
    split_cfg = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
    media = MediaConfig(str(tmp_path / "out"), "none", 2, 1280, 1)
    split = apply_rules(detect_scenes(probe_source(Source(uri=str(video), video_id="t")),
                                      split_cfg), split_cfg)
    return [cut_one(t, media, "h", "run1") for t in plan_clips(split, media, "h")]


def test_ocr_stage_outputs_and_unreadable_frames(text_video, tmp_path, monkeypatch):
    import vidcurate.transforms.models.ocr as ocr_models
    import vidcurate.transforms.ocr as ocr_stage
    from vidcurate.transforms.models.loading import ProcessCache

    loads = []
    real_load = ocr_models.load_engine
    monkeypatch.setattr(ocr_models, "load_engine", lambda cfg: loads.append(cfg) or real_load(cfg))
    # A fresh process's cache: earlier tests in this process loaded the same engine.
    monkeypatch.setattr(ocr_stage, "_ENGINES", ProcessCache())

    headline, text_free = _clips(text_video, tmp_path)[:2]
    # One keyframe of the headline clip is corrupt, one is missing: its other frames
    # still count, and both failures are error rows with the clip id.
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    broken = dataclasses.replace(
        headline, clip_id="broken",
        keyframe_uris=(str(corrupt), str(tmp_path / "gone.jpg"), headline.keyframe_uris[1]))
    no_frames = dataclasses.replace(text_free, clip_id="noframes", keyframe_uris=())

    p = TestPipeline()
    clips = p | beam.Create([headline, text_free, broken, no_frames])
    first = clips | "OCR1" >> OCR(CFG, "run1")
    # A second OCR transform in the same process shares the loaded engine.
    _ = clips | "OCR2" >> OCR(CFG, "run1")
    assert_that(first["clips"] | beam.Map(lambda c: (c.clip_id == headline.clip_id, c.clip_id,
                                                  c.ocr_text)),
                equal_to([(True, headline.clip_id, "Breaking News at Nine"),
                          (False, text_free.clip_id, ""),
                          (False, "broken", "Breaking News at Nine"),
                          (False, "noframes", None)]), label="main")
    assert_that(first[ERRORS] | beam.Map(lambda e: (e.stage, e.error_type, e.clip_id)),
                equal_to([("ocr", "unreadable_frame", "broken")] * 2), label="errors")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace("ocr"))["counters"]
        if c.key.step.startswith("OCR1/")}
    assert counters["processed"] == 2 and counters["failed"] == 1 and counters["skipped"] == 1
    # Both headline keyframes, and the one readable keyframe of the broken clip.
    assert counters["frames_with_text"] == 3
    assert len(loads) == 1
