"""CLIP embeddings inside a stage's graph: requests keyed by their owner (a video or a
clip) go through RunInference and come back joined to that owner.

The handler is imported when the graph is built (expand), not with this module: Beam's
ML package imports torch (see models/handlers.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from vidcurate.transforms.inference import FAILED, RESULTS, Infer
from vidcurate.transforms.models.clip import ClipModelConfig, EmbedRequest


def request_owner(request: EmbedRequest) -> Any:
    """The first part of a request's key: the video or clip it belongs to."""
    return request.key[0]


def failed_owners(failure: tuple[Sequence[EmbedRequest], Exception]
                  ) -> Iterator[tuple[Any, str]]:
    """A failed batch (the dead-letter output) -> (owner, reason) once per owner in it."""
    batch, exc = failure
    for owner in sorted({request_owner(r) for r in batch}):
        yield owner, f"{type(exc).__name__}: {exc}"


def _by_owner(result: tuple[tuple[Any, ...], np.ndarray]) -> tuple[Any, tuple[Any, Any]]:
    key, embedding = result
    return key[0], (key[1:], embedding)


class EmbedByOwner(beam.PTransform):
    """EmbedRequests keyed (owner, *rest) -> {'features': (owner, (rest, embedding)),
    'failed': (owner, reason) once per owner of each batch that failed}: what the
    stitching, clip-embedding and caption-scoring stages join back to their owners."""

    def __init__(self, cfg: ClipModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, requests: beam.PCollection) -> dict[str, beam.PCollection]:
        from vidcurate.transforms.models.handlers import ClipModelHandler

        embedded = requests | "Infer" >> Infer(
            ClipModelHandler(self.cfg), model_identifier=f"clip:{self.cfg.model_id}")
        return {"features": embedded[RESULTS] | "ByOwner" >> beam.Map(_by_owner),
                "failed": embedded[FAILED] | "FailedByOwner" >> beam.FlatMap(failed_owners)}
