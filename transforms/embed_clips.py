"""EmbedClips: a CLIP embedding per clip, from its keyframes.

Every keyframe is embedded (L2-normalised) and the clip embedding is their mean, so a
clip is described by what it shows across its length. The keyframe embeddings travel on
with the clip for caption scoring (per-keyframe best score) and are not written.
A clip whose keyframes cannot be read keeps null CLIP columns and gets an error row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import apache_beam as beam
import numpy as np

from vidcurate.schemas.records import ClipRecord
from vidcurate.transforms.errors import ERRORS, StageMetrics
from vidcurate.transforms.media.decoding import read_frame
from vidcurate.transforms.models.clip import (
    ClipModelConfig,
    EmbedRequest,
)
from vidcurate.transforms.models.clip_embedding import EmbedByOwner

STAGE = "embed_clips"


def keyframe_requests(clip: ClipRecord) -> list[EmbedRequest]:
    return [EmbedRequest(key=(clip.clip_id, i), image=read_frame(uri))
            for i, uri in enumerate(clip.keyframe_uris)]


def pool(clip: ClipRecord, features: dict[int, np.ndarray], model_id: str) -> ClipRecord:
    """The clip with its keyframe embeddings (in keyframe order) and their mean."""
    frames = np.stack([features[i] for i in sorted(features)]).astype(np.float32)
    return dataclasses.replace(clip, keyframe_embeddings=frames,
                               clip_embedding=frames.mean(axis=0), clip_model=model_id)


class _RequestsFn(beam.DoFn):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, clip: ClipRecord) -> Iterator[EmbedRequest | beam.pvalue.TaggedOutput]:
        yield beam.pvalue.TaggedOutput("clips", (clip.clip_id, clip))
        if not clip.keyframe_uris:
            self.metrics.skipped.inc()
            return
        try:
            requests = keyframe_requests(clip)
        except Exception as e:
            yield self.metrics.failure(e, source_uri=clip.source_uri, run_id=self.run_id,
                                       video_id=clip.video_id, clip_id=clip.clip_id)
            return
        yield from requests


class _PoolFn(beam.DoFn):
    def __init__(self, model_id: str, run_id: str) -> None:
        self.model_id, self.run_id = model_id, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, joined: tuple[str, dict[str, list]]
                ) -> Iterator[ClipRecord | beam.pvalue.TaggedOutput]:
        _, parts = joined
        for clip in parts["clips"]:
            features = {rest[0]: f for rest, f in parts["features"]}  # by keyframe
            if parts["failed"]:
                yield self.metrics.failure(
                    RuntimeError(f"CLIP could not embed the keyframes: {parts['failed'][0]}"),
                    source_uri=clip.source_uri, run_id=self.run_id, video_id=clip.video_id,
                    clip_id=clip.clip_id)
                yield clip
            elif len(features) == len(clip.keyframe_uris) and features:
                self.metrics.processed.inc()
                yield pool(clip, features, self.model_id)
            else:
                yield clip  # no keyframes, or unreadable ones (already an error row)


class EmbedClips(beam.PTransform):
    """ClipRecord -> ClipRecord with clip_embedding (main) and ErrorRecord ('errors')."""

    def __init__(self, cfg: ClipModelConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.run_id = cfg, run_id

    def expand(self, clips: beam.PCollection) -> dict[str, beam.PCollection]:
        requests = (
            clips
            | "KeyframeRequests" >> beam.ParDo(_RequestsFn(self.run_id))
            .with_outputs(ERRORS, "clips", main="requests"))
        embedded = requests["requests"] | "Embed" >> EmbedByOwner(self.cfg)
        pooled = (
            {"clips": requests["clips"], **embedded}
            | "Join" >> beam.CoGroupByKey()
            | "Pool" >> beam.ParDo(_PoolFn(self.cfg.model_id, self.run_id))
            .with_outputs(ERRORS, main="clips"))
        errors = (requests[ERRORS], pooled[ERRORS]) | "Errors" >> beam.Flatten()
        return {"clips": pooled["clips"], ERRORS: errors}
