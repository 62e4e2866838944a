"""Captioning and ScoreCaptions in a TestPipeline with the structured teacher and a real
loopback chat server: each clip gets its struct whole or not at all, the structured
`short` joins the candidates, overruled VLM claims are counted per clip and in the
stage's metrics, and an invalid answer is an error row."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.support.chatserver import ChatServer
from tests.support.helpers import run_config
from vidcurate.schemas.records import ClipRecord, Fetched, OcrLine, Source, Span
from vidcurate.transforms.captioning import STRUCTS, Captioning
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.score_captions import ScoreCaptions

SOURCE = Source(uri="/v.mp4", video_id="v", title="Buses on the main street at dusk")


def _clip(clip_id: str, camera: str | None, **kw) -> ClipRecord:
    c = ClipRecord(clip_id=clip_id, video_id="v", source_uri="/v.mp4", clip_index=0,
                   span=Span(0, 75, 0, 3), split_params_hash="h", media_mode="none",
                   media_uri=None, media_start_s=None, media_end_s=None, keyframe_uris=(),
                   keyframe_times_s=(), run_id="r", motion_score=0.05, brightness=0.5,
                   contrast=0.2, **kw)
    if camera is None:
        return c
    if "camera_motion" in {f.name for f in dataclasses.fields(ClipRecord)}:
        return dataclasses.replace(c, camera_motion=camera)
    object.__setattr__(c, "camera_motion", camera)  # until camera motion is a column
    return c


CLIPS = [_clip("measured", "pan_left",
               ocr_lines=(OcrLine("Main Street", 0.9, (0.0,) * 8, 0),)),
         _clip("unmeasured", None)]  # no camera motion, OCR did not run: nothing to contradict


def _counter(result, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace("captioning")
                                   .with_name(name))["counters"]
    return sum(c.committed for c in found)


def _run(server: ChatServer | None, model: str | None = None):
    vlm = ["--vlm-url", server.url, "--vlm-model", model, "--vlm-timeout", "2",
           "--vlm-retries", "0", "--vlm-max-images", "0"] if model else []
    cfg = run_config("--teachers", "metadata,structured", *vlm)
    p = TestPipeline()
    taught = ({"clips": p | "Clips" >> beam.Create(CLIPS),
               "fetched": p | "Fetched" >> beam.Create([Fetched(SOURCE, "/v.mp4", 1, "x",
                                                                False)])}
              | Captioning(cfg.teachers, cfg.clip_model, "r"))
    scored = ({"clips": p | "Again" >> beam.Create(CLIPS), "candidates": taught["candidates"],
               "structs": taught[STRUCTS]}
              | ScoreCaptions(cfg.clip_model, cfg.teachers.priority, "r"))
    return p, taught, scored


@pytest.fixture(scope="module")
def server():
    with ChatServer() as s:
        yield s


def test_contradictions_are_overruled_and_counted_per_clip_and_in_the_metrics(server):
    p, taught, scored = _run(server, "struct-contradict")
    assert_that(taught["candidates"] | beam.Map(lambda c: (c.clip_id, c.teacher)),
                equal_to([("measured", "metadata"), ("measured", "structured"),
                          ("unmeasured", "metadata"), ("unmeasured", "structured")]),
                label="candidates")
    assert_that(taught[ERRORS], equal_to([]), label="errors")
    assert_that(scored["clips"] | beam.Map(lambda c: (
        c.clip_id, c.caption_struct.camera, c.to_row()["caption_conflicts"],
        c.caption_struct.setting, c.best_teacher)),
        equal_to([("measured", "pan_left", 5, "a test studio", "metadata"),
                  ("unmeasured", None, 0, "a test studio", "metadata")]), label="clips")
    result = p.run()
    result.wait_until_finish()
    assert _counter(result, "caption_conflicts") == 5
    assert _counter(result, "structured_candidates") == 2


def test_an_invalid_answer_is_an_error_row_and_the_clip_gets_no_struct(server):
    p, taught, scored = _run(server, "struct-invalid")
    assert_that(taught[STRUCTS], equal_to([]), label="structs")
    assert_that(taught["candidates"] | beam.Map(lambda c: c.teacher),
                equal_to(["metadata", "metadata"]), label="candidates")
    assert_that(taught[ERRORS] | beam.Map(lambda e: (e.clip_id, e.stage, e.error_type)),
                equal_to([("measured", "captioning", "structured:invalid_answer"),
                          ("unmeasured", "captioning", "structured:invalid_answer")]),
                label="errors")
    assert_that(scored["clips"] | beam.Map(lambda c: (
        c.clip_id, c.caption_struct, c.to_row()["caption_struct"],
        c.to_row()["caption_conflicts"])),
        equal_to([("measured", None, None, None), ("unmeasured", None, None, None)]),
        label="clips")
    result = p.run()
    result.wait_until_finish()
    assert _counter(result, "failed") == 2


def test_without_a_vlm_every_clip_gets_a_composed_struct():
    p, taught, scored = _run(None)
    assert_that(scored["clips"] | beam.Map(lambda c: (
        c.clip_id, c.caption_struct.short, c.caption_struct.setting,
        c.to_row()["caption_struct"]["sources"]["setting"])),
        equal_to([("measured", "Buses on the main street at dusk (camera pans left, "
                   "moderate motion).", None, "vlm (not configured)"),
                  ("unmeasured", "Buses on the main street at dusk (moderate motion).", None,
                   "vlm (not configured)")]), label="clips")
    assert_that(scored["captions"] | beam.Map(lambda r: (r.candidate.clip_id,
                                                        r.candidate.teacher, r.rank)),
                equal_to([("measured", "metadata", 1), ("measured", "structured", 2),
                          ("unmeasured", "metadata", 1), ("unmeasured", "structured", 2)]),
                label="captions")
    p.run().wait_until_finish()
