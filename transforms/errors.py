"""Per-stage metrics and the conversion of failures into error records.

Every stage counts what it processed, skipped and failed in the Beam metrics
namespace of its name, and records its per-element latency; `pipeline.run` reads
them back for the `runs` table and the end-of-run summary.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.metrics import Metrics

from schemas.records import ErrorRecord
from transforms.media import MediaError

ERRORS = "errors"  # the tag of every stage's error output
SKIPPED = "skipped"


class StageMetrics:
    """Counters and a latency distribution under one namespace (the stage name)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.processed = Metrics.counter(stage, "processed")
        self.skipped = Metrics.counter(stage, "skipped")
        self.failed = Metrics.counter(stage, "failed")
        self.latency_ms = Metrics.distribution(stage, "latency_ms")

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latency_ms.update(int((time.perf_counter() - start) * 1000))


def error_record(
    exc: BaseException,
    *,
    stage: str,
    source_uri: str,
    run_id: str,
    video_id: str | None = None,
    clip_id: str | None = None,
) -> ErrorRecord:
    """An error row for a failure; unexpected exceptions keep their type and last frame."""
    if isinstance(exc, MediaError):
        error_type, message = exc.error_type, str(exc)
    else:
        frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno})" if frame else ""
        error_type = f"internal:{type(exc).__name__}"
        message = f"{type(exc).__name__}: {exc}{where}"
    return ErrorRecord(
        stage=stage,
        source_uri=source_uri,
        error_type=error_type,
        message=message,
        run_id=run_id,
        video_id=video_id,
        clip_id=clip_id,
    )
