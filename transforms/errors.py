"""Per-stage metrics and the conversion of failures into error records.

Every stage counts what it processed, skipped and failed in the Beam metrics
namespace of its name, and records its per-element latency; `pipeline.run` reads
them back for the `runs` table and the end-of-run summary. `guarded` runs one
element's step with all of that: its outputs, or its error row.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from vidcurate.schemas.records import ErrorRecord
from vidcurate.transforms import progress
from vidcurate.transforms.core import StageError

ERRORS = "errors"  # the tag of every stage's error output
SKIPPED = "skipped"

E = TypeVar("E")  # the element a step takes
T = TypeVar("T")  # what it outputs


class _Counter:
    """A Beam counter that also feeds the live progress display (transforms.progress)."""

    def __init__(self, stage: str, name: str) -> None:
        self.stage, self.name = stage, name
        self.counter = Metrics.counter(stage, name)

    def inc(self, n: int = 1) -> None:
        self.counter.inc(n)
        progress.add(self.stage, self.name, n)


class StageMetrics:
    """Counters and a latency distribution under one namespace (the stage name)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.processed = _Counter(stage, "processed")
        self.skipped = _Counter(stage, "skipped")
        self.failed = _Counter(stage, "failed")
        self.latency_ms = Metrics.distribution(stage, "latency_ms")

    def failure(self, exc: BaseException, *, source_uri: str, run_id: str,
                video_id: str | None = None, clip_id: str | None = None
                ) -> beam.pvalue.TaggedOutput:
        """Count a failed element and make its error row for the 'errors' output."""
        self.failed.inc()
        return beam.pvalue.TaggedOutput(ERRORS, error_record(
            exc, stage=self.stage, source_uri=source_uri, run_id=run_id, video_id=video_id,
            clip_id=clip_id))

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latency_ms.update(int((time.perf_counter() - start) * 1000))


def guarded(metrics: StageMetrics, step: Callable[[E], Iterable[T]], element: E, *,
            source_uri: str, run_id: str, video_id: str | None = None,
            clip_id: str | None = None, timed: bool = True,
            ) -> Iterator[T | beam.pvalue.TaggedOutput]:
    """One element through a stage's step, all or nothing: the step's outputs, counted
    'processed', or, when it raises, only its error row, counted 'failed'; timed into the
    stage's latency unless `timed` is False.

    The outputs are collected before the first goes out, so a step that fails partway
    emits none of them (a stage that streams its outputs keeps its own try)."""
    with metrics.timed() if timed else nullcontext():
        try:
            outputs = list(step(element))
        except Exception as e:  # any failure is this element's error row, never a crash
            yield metrics.failure(e, source_uri=source_uri, run_id=run_id, video_id=video_id,
                                  clip_id=clip_id)
            return
    metrics.processed.inc()
    yield from outputs


@dataclass
class _Running:
    future: Future[tuple[list[Any] | None, Exception | None, int]]
    place: WindowedValue  # the input's window and timestamp, which its outputs keep
    error_fields: dict[str, str | None]


def _run_step(step: Callable[[E], Iterable[T]], element: E
              ) -> tuple[list[T] | None, Exception | None, int]:
    start = time.perf_counter()
    try:
        outputs, error = list(step(element)), None
    except Exception as e:  # this element's error row, made in the bundle's thread
        outputs, error = None, e
    return outputs, error, int((time.perf_counter() - start) * 1000)


class ConcurrentSteps:
    """guarded() for up to `limit` elements at a time, each step in a thread of its own:
    for steps that mostly wait on a subprocess (ffmpeg decoding a video), so that a
    runner that hands a stage its whole input as one bundle in one thread (the in-memory
    DirectRunner) keeps several videos' ffmpeg busy. What guarded() does with a step's
    outcome (metrics, the error row) happens in the bundle's own thread, where Beam
    counts metrics; outputs leave in input order, each with its input's window. At most
    `limit` elements are in flight, so memory stays bounded.

    A DoFn calls start() in start_bundle, submit() in process() (yielding what it gives:
    the outputs of elements that have finished), and finish() in finish_bundle. `then`
    maps each output in the bundle's thread (to count what a step reported)."""

    def __init__(self, metrics: StageMetrics, limit: int,
                 then: Callable[[Any], Iterable[Any]] | None = None) -> None:
        self.metrics, self.limit = metrics, max(1, limit)
        self.then = then or (lambda output: (output,))
        self.pool: ThreadPoolExecutor | None = None
        self.running: deque[_Running] = deque()

    def start(self) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.limit, thread_name_prefix=self.metrics.stage)
        self.running.clear()

    def submit(self, step: Callable[[E], Iterable[T]], element: E, place: WindowedValue, *,
               source_uri: str, run_id: str, video_id: str | None = None,
               clip_id: str | None = None) -> Iterator[Any]:
        assert self.pool is not None, "ConcurrentSteps.start() was not called"
        self.running.append(_Running(
            self.pool.submit(_run_step, step, element), place,
            {"source_uri": source_uri, "run_id": run_id, "video_id": video_id,
             "clip_id": clip_id}))
        # Full: wait for the oldest. Otherwise pass on whatever has finished, in order.
        while self.running and (len(self.running) >= self.limit
                                or self.running[0].future.done()):
            yield from self._emit(self.running.popleft())

    def finish(self) -> Iterator[Any]:
        while self.running:
            yield from self._emit(self.running.popleft())

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def _emit(self, job: _Running) -> Iterator[Any]:
        outputs, error, ms = job.future.result()
        self.metrics.latency_ms.update(ms)
        if error is not None:
            failed = self.metrics.failure(error, **job.error_fields)
            yield beam.pvalue.TaggedOutput(failed.tag, job.place.with_value(failed.value))
            return
        self.metrics.processed.inc()
        for output in outputs or ():
            for out in self.then(output):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(out.tag, job.place.with_value(out.value))
                else:
                    yield job.place.with_value(out)


def error_record(
    exc: BaseException,
    *,
    stage: str,
    source_uri: str,
    run_id: str,
    video_id: str | None = None,
    clip_id: str | None = None,
) -> ErrorRecord:
    """An error row for a failure: a StageError's own type and message; unexpected
    exceptions keep their type and last frame."""
    if isinstance(exc, StageError):
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
