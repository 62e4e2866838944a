"""A model step that raises gives exactly one `errors` row per clip or video it failed,
and leaves every other element as it would have been: stitching, clip embeddings,
caption scoring and ASR, through RunInference's dead-letter output, on the DirectRunner
and on our DaskRunner (an in-process cluster, so that the patched handlers apply).

The handlers raise for whole batches holding a chosen owner's requests; with batches of
one, an owner with several requests fails several batches, and must still get one row."""

from __future__ import annotations

import dataclasses
import random
import traceback
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

import vidcurate.transforms.inference as inference
from tests.support.shapes_video import scene_video
from tests.support.tiny_clip import jpeg, render
from vidcurate.pipeline.options import RunConfig
from vidcurate.schemas.records import (
    Boundary,
    CaptionCandidate,
    ClipRecord,
    ScenedVideo,
    Source,
    Span,
)
from vidcurate.transforms.asr import Transcribe
from vidcurate.transforms.embed_clips import EmbedClips
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.models.clip import resolve_clip
from vidcurate.transforms.models.clip_embedding import request_owner
from vidcurate.transforms.models.handlers import ClipModelHandler, WhisperModelHandler
from vidcurate.transforms.models.whisper import resolve_model
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.score_captions import ScoreCaptions
from vidcurate.transforms.stitch import Stitch


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(params=["direct", "dask"])
def pipeline(request: pytest.FixtureRequest) -> Callable[[], TestPipeline]:
    """A TestPipeline on the DirectRunner, or on our DaskRunner."""
    if request.param == "direct":
        return TestPipeline
    from vidcurate.pipeline.dask_runner import DaskRunner

    address = request.getfixturevalue("dask_address")
    return lambda: TestPipeline(runner=DaskRunner(), options=PipelineOptions(
        ["--dask_client_address", address]))


@pytest.fixture(scope="module")
def cfg(clip_args: list[str], whisper_tiny_en: Path) -> RunConfig:
    """The run's config as the CLI builds it, the tiny CLIP resolved; batches of one, so
    a failing batch holds one owner's request only (RunInference mixes owners)."""
    cfg = RunConfig.from_options(PipelineOptions([
        "--input", "i", "--output", "o", *clip_args, "--clip-batch-size", "1",
        "--asr-model", str(whisper_tiny_en)]))
    cfg = cfg.with_clip_model(resolve_clip(cfg.clip_model))
    return dataclasses.replace(cfg, asr=dataclasses.replace(resolve_model(cfg.asr),
                                                            batch_size=1))


def _raise_for(monkeypatch: pytest.MonkeyPatch, handler: type, owner: Callable[[Any], Hashable],
               bad: set[Hashable]) -> Counter:
    """Make handler.run_inference raise for any batch holding a request of a bad owner;
    returns the count of failed batches per owner (the pipeline runs in this process)."""
    real = handler.run_inference
    failed: Counter = Counter()

    def run_inference(self: Any, batch: Any, model: Any,
                      inference_args: dict[str, Any] | None = None) -> Any:
        hit = {owner(r) for r in batch} & bad
        if hit:
            failed.update(hit)
            raise RuntimeError(f"model exploded on {sorted(hit)}")
        return real(self, batch, model, inference_args)

    monkeypatch.setattr(handler, "run_inference", run_inference)
    return failed


def _errors(errors: beam.PCollection, stage: str, expected: list[tuple[str, str | None]],
            owner: str) -> None:
    """Exactly these (video_id, clip_id) rows, all of this stage, naming the exception as
    str() gives it (on both paths: RunInference's dead letters carry a tuple)."""
    cause = f"RuntimeError: model exploded on [{owner!r}]"
    assert_that(errors | "ErrorKeys" >> beam.Map(
        lambda e: (e.stage, e.video_id, e.clip_id, e.error_type,
                   cause in e.message and "Traceback" not in e.message)),
        equal_to([(stage, v, c, "internal:RuntimeError", True) for v, c in expected]),
        label="Errors")


def _keyed(expected: dict[str, Any]) -> Callable[[list[tuple[str, Any]]], None]:
    """A matcher for (id, value) pairs: each id once, with its expected value."""
    def match(pairs: list[tuple[str, Any]]) -> None:
        ids = [k for k, _ in pairs]
        if sorted(ids) != sorted(expected) or dict(pairs) != expected:
            raise BeamAssertException(f"got {sorted(pairs)}, expected {sorted(expected.items())}")
    return match


def test_stitching_failure_is_one_row_per_video(cfg, pipeline, monkeypatch, tmp_path):
    scenes = [("circle", "red", "white", [1.0, 0.0, 0.5, 0.5]),
              ("square", "blue", "black", [1.0, 0.5, 0.5, 0.5])]
    videos = []
    for vid in ("vbad", "v1", "v2"):
        probed = probe_source(Source(uri=str(scene_video(tmp_path / f"{vid}.mp4", scenes,
                                                          seconds=1.5)), video_id=vid))
        videos.append(ScenedVideo(video=probed, boundaries=(Boundary(15, 1.5, "detected"),),
                                  shots=(Span(0, 15, 0.0, 1.5), Span(15, 30, 1.5, 3.0)),
                                  decoded_frames=30))
    failed = _raise_for(monkeypatch, ClipModelHandler, request_owner, {"vbad"})
    with pipeline() as p:
        out = p | beam.Create(videos) | Stitch(cfg.clip_model, cfg.split, "r")
        _errors(out[ERRORS], "stitch", [("vbad", None)], "vbad")
        # The others are stitched: both cut-scenes embedded and judged.
        assert_that(out["scened"] | beam.Map(
            lambda s: (s.video.video_id, s.events is not None
                       and len(s.events) + len(s.stitch_dropped) >= 1)),
            _keyed({"v1": True, "v2": True}), label="Stitched")
    assert failed == {"vbad": 4}  # two frames per cut-scene, a batch each


def _keyframes(folder: Path, clip_id: str, rng: random.Random) -> tuple[str, ...]:
    paths = []
    for k in range(3):
        path = folder / f"{clip_id}-{k}.jpg"
        jpeg(render("star", "blue", "black", rng)).save(path)
        paths.append(str(path))
    return tuple(paths)


def _clip(clip_id: str, keyframes: tuple[str, ...] = (),
          embedding: np.ndarray | None = None) -> ClipRecord:
    return ClipRecord(clip_id=clip_id, video_id=f"v-{clip_id}", source_uri=f"/{clip_id}.mp4",
                      clip_index=0, span=Span(0, 75, 0, 3), split_params_hash="h",
                      media_mode="none", media_uri=None, media_start_s=None,
                      media_end_s=None, keyframe_uris=keyframes,
                      keyframe_times_s=(0.5, 1.5, 2.5)[:len(keyframes)], run_id="r",
                      clip_embedding=embedding)


def test_embedding_failure_is_one_row_per_clip(cfg, pipeline, monkeypatch, tmp_path):
    rng = random.Random(1)
    clips = [_clip(c, _keyframes(tmp_path, c, rng)) for c in ("cbad", "c1", "c2")]
    failed = _raise_for(monkeypatch, ClipModelHandler, request_owner, {"cbad"})
    with pipeline() as p:
        out = p | beam.Create(clips) | EmbedClips(cfg.clip_model, "r")
        _errors(out[ERRORS], "embed_clips", [("v-cbad", "cbad")], "cbad")
        # Every clip goes on; only the failed one lacks its embedding.
        assert_that(out["clips"] | beam.Map(lambda c: (c.clip_id, c.clip_embedding is None)),
                    _keyed({"cbad": True, "c1": False, "c2": False}), label="Clips")
    assert failed == {"cbad": 3}  # one batch per keyframe


def test_scoring_failure_is_one_row_per_clip(cfg, pipeline, monkeypatch):
    rng = np.random.default_rng(2)
    clips, candidates = [], []
    for c in ("cbad", "c1", "c2"):
        emb = rng.standard_normal(cfg.clip_model.embed_dim).astype(np.float32)
        clips.append(_clip(c, embedding=emb / np.linalg.norm(emb)))
        candidates += [CaptionCandidate(c, f"v-{c}", teacher, None, None, f"{teacher} says {c}")
                       for teacher in ("metadata", "speech", "ocr")]
    failed = _raise_for(monkeypatch, ClipModelHandler, request_owner, {"cbad"})
    with pipeline() as p:
        out = {"clips": p | "Clips" >> beam.Create(clips),
               "candidates": p | "Candidates" >> beam.Create(candidates)} | ScoreCaptions(
            cfg.clip_model, cfg.teachers.priority, "r")
        _errors(out[ERRORS], "score_captions", [("v-cbad", "cbad")], "cbad")
        # The failed clip is still captioned, by teacher priority; the others by CLIP.
        assert_that(out["clips"] | beam.Map(lambda c: (c.clip_id, c.selection_method)),
                    _keyed({"cbad": "priority", "c1": "clip", "c2": "clip"}), label="Clips")
        assert_that(out["captions"] | beam.Map(
            lambda r: (r.candidate.clip_id, r.candidate.teacher, r.clip_score is None)),
            equal_to([(c.clip_id, c.teacher, c.clip_id == "cbad") for c in candidates]),
            label="Captions")
    assert failed == {"cbad": 3}  # one batch per candidate text


def test_asr_failure_is_one_row_per_video(cfg, pipeline, monkeypatch, sounds):
    videos = [probe_source(Source(uri=str(sounds / f"{n}.mp4"), video_id=n))
              for n in ("tone", "silence", "noise")]
    failed = _raise_for(monkeypatch, WhisperModelHandler, lambda t: t.video_id, {"tone"})
    with pipeline() as p:
        out = p | beam.Create(videos) | Transcribe(cfg.asr, "r")
        _errors(out[ERRORS], "asr", [("tone", None)], "tone")
        assert_that(out["results"] | beam.Map(lambda r: (r.video_id, r.note)),
                    _keyed({"silence": None, "noise": None}), label="Results")
    assert failed == {"tone": 1}



class _TwoArgs(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")


@pytest.mark.parametrize("exc", [RuntimeError("bad\nframe: 3"), ValueError(), _TwoArgs("k", "d")],
                         ids=["multiline", "empty", "two-args"])
def test_a_runinference_dead_letter_becomes_its_exception(exc: Exception):
    """Beam's dead letters hold (type, repr, formatted traceback): the batch comes back
    with an exception of the same type and message where the constructor allows."""
    exc.add_note("a note after the message")
    try:
        raise exc
    except Exception as raised:
        letter = ([1, 2], (type(raised), repr(raised), traceback.format_exception(raised)))
    batch, rebuilt = inference.as_exception(letter)
    assert batch == [1, 2]
    if isinstance(exc, _TwoArgs):
        assert type(rebuilt) is RuntimeError
        assert str(rebuilt) == f"_TwoArgs: {exc}"
    else:
        assert type(rebuilt) is type(exc) and str(rebuilt) == str(exc)
    assert inference.as_exception(([1], exc)) == ([1], exc)  # already an exception
