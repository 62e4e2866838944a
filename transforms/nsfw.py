"""ScoreNsfw: ``nsfw_score`` per clip, the highest Open-NSFW probability over its keyframes.

The highest, not the mean: one explicit keyframe is enough to make a clip unsafe to
publish. Each keyframe is read and preprocessed here (models/nsfw.py reproduces the
model's Caffe preprocessing), scored through RunInference in batches, and the clip
gets the maximum. A clip whose keyframes cannot be read, or whose batch fails, keeps a
null score and gets an error row; nothing is dropped (JudgeClips flags `nsfw`, curation
decides).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from vidcurate.schemas.records import ClipRecord
from vidcurate.transforms.errors import ERRORS, StageMetrics
from vidcurate.transforms.inference import FAILED, RESULTS, Infer
from vidcurate.transforms.media.decoding import read_frame
from vidcurate.transforms.models.nsfw import NsfwConfig, preprocess

STAGE = "nsfw"


def keyframe_inputs(clip: ClipRecord) -> list[tuple[tuple[str, int], np.ndarray]]:
    """((clip_id, keyframe index), the preprocessed keyframe) for each keyframe."""
    return [((clip.clip_id, i), preprocess(read_frame(uri)))
            for i, uri in enumerate(clip.keyframe_uris)]


def clip_score(scores: Sequence[float]) -> float | None:
    """The clip's score: its most explicit keyframe's, rounded; None without scores."""
    return round(float(max(scores)), 6) if scores else None


class _RequestsFn(beam.DoFn):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, clip: ClipRecord) -> Iterator[Any]:
        yield beam.pvalue.TaggedOutput("clips", (clip.clip_id, clip))
        if not clip.keyframe_uris:
            self.metrics.skipped.inc()
            return
        try:
            requests = keyframe_inputs(clip)
        except Exception as e:  # an unreadable keyframe: the clip goes on unscored
            yield self.metrics.failure(e, source_uri=clip.source_uri, run_id=self.run_id,
                                       video_id=clip.video_id, clip_id=clip.clip_id)
            return
        yield from requests


def _failed_keys(failure: tuple[Sequence[tuple[tuple[str, int], Any]], BaseException]
                 ) -> Iterator[tuple[str, str]]:
    batch, exc = failure
    for clip_id in sorted({key[0] for key, _ in batch}):
        yield clip_id, f"{type(exc).__name__}: {exc}"


class _PoolFn(beam.DoFn):
    """(clip_id, {'clips', 'scores', 'failed'}) -> the clip with its nsfw_score; a clip
    with a failed batch keeps a null score (a partial maximum could hide the one
    explicit keyframe) and gets an error row."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterator[Any]:
        _, parts = joined
        for clip in parts["clips"]:
            if parts["failed"]:
                yield self.metrics.failure(
                    RuntimeError(f"Open-NSFW could not score the keyframes: "
                                 f"{parts['failed'][0]}"),
                    source_uri=clip.source_uri, run_id=self.run_id, video_id=clip.video_id,
                    clip_id=clip.clip_id)
                yield clip
                continue
            scores = {key[1]: s for key, s in parts["scores"]}
            if clip.keyframe_uris and len(scores) == len(clip.keyframe_uris):
                self.metrics.processed.inc()
                yield dataclasses.replace(clip, nsfw_score=clip_score(list(scores.values())))
            else:
                yield clip  # no keyframes, or unreadable ones (already an error row)


class ScoreNsfw(beam.PTransform):
    """ClipRecord -> ClipRecord with nsfw_score (main) and ErrorRecord ('errors')."""

    def __init__(self, cfg: NsfwConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.run_id = cfg, run_id

    def expand(self, clips: beam.PCollection) -> dict[str, beam.PCollection]:
        from vidcurate.transforms.models.handlers import NsfwModelHandler

        requests = (clips | "KeyframeRequests" >> beam.ParDo(_RequestsFn(self.run_id))
                    .with_outputs("clips", ERRORS, main="requests"))
        scored = requests["requests"] | "OpenNsfw" >> Infer(
            NsfwModelHandler(self.cfg), model_identifier=self.cfg.model_id)
        pooled = (
            {"clips": requests["clips"],
             "scores": scored[RESULTS] | "ByClip" >> beam.Map(lambda r: (r[0][0], r)),
             "failed": scored[FAILED] | "FailedByClip" >> beam.FlatMap(_failed_keys)}
            | "Join" >> beam.CoGroupByKey()
            | "Pool" >> beam.ParDo(_PoolFn(self.run_id)).with_outputs(ERRORS, main="clips"))
        errors = (requests[ERRORS], pooled[ERRORS]) | "Errors" >> beam.Flatten()
        return {"clips": pooled["clips"], ERRORS: errors}
