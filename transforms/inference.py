"""Model inference that gives the same results on every runner we support.

Everywhere but Dask this is Beam's RunInference with its dead-letter output. That output
makes RunInference a ParDo with several outputs, which Beam 2.77's DaskRunner delivers
all as one (our runner, pipeline/dask_runner.py, fixes its other faults, not this one).
On Dask, batches are therefore formed by a GroupByKey on a key the stage chooses (a
video, a clip), and a single-output step runs the same ModelHandler on them, with
failures carried as tagged elements (errors.split_outputs). Batch composition differs
from RunInference's, never what each element gets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from vidcurate.transforms.errors import split_outputs

RESULTS, FAILED = "results", "failed"
log = logging.getLogger("vidcurate")

# Models loaded by the grouped path, for the life of the worker process: the DaskRunner
# sets a DoFn up and tears it down again for every partition.
_LOADED: dict[str, Any] = {}


def groups_batches(runner: object) -> bool:
    """Whether `runner` needs the grouped path (see the module docstring)."""
    return any(cls.__name__ == "DaskRunner" for cls in type(runner).__mro__)


class Infer(beam.PTransform):
    """requests -> {'results': what handler.run_inference yields,
                    'failed': (batch, exception) for each batch that raised}.

    group_key picks which requests may share a batch on the grouped path; `grouped`
    forces a path (None: chosen from the pipeline's runner)."""

    def __init__(self, handler: ModelHandler, model_identifier: str,
                 group_key: Callable[[Any], Hashable], grouped: bool | None = None) -> None:
        super().__init__()
        self.handler, self.model_identifier = handler, model_identifier
        self.group_key, self.grouped = group_key, grouped

    def expand(self, requests: beam.PCollection) -> dict[str, beam.PCollection]:
        grouped = self.grouped
        if grouped is None:
            grouped = groups_batches(requests.pipeline.runner)
        if not grouped:
            results, dead = requests | "RunInference" >> RunInference(
                self.handler, model_identifier=self.model_identifier,
            ).with_exception_handling()
            failed = dead.failed_inferences | "AsException" >> beam.Map(as_exception)
            return {RESULTS: results, FAILED: failed}
        max_size = int(self.handler.batch_elements_kwargs().get("max_batch_size", 1))
        batches = (requests
                   | "KeyForBatch" >> beam.Map(_keyed, self.group_key)
                   | "Group" >> beam.GroupByKey()
                   | "Batches" >> beam.FlatMap(lambda kv: chunks(kv[1], max_size)))
        return split_outputs(batches, "RunBatches",
                             _RunBatches(self.handler, self.model_identifier), FAILED,
                             main=RESULTS)


def as_exception(failure: tuple[Any, Any]) -> tuple[Any, BaseException]:
    """A RunInference dead letter -> (batch, exception), as the grouped path gives it.

    Beam's dead-letter output carries (type, repr, formatted traceback), not the
    exception its docstring promises, and stages that took it for an exception failed
    the run (ASR) or wrote the tuple into error messages (CLIP). The exception is rebuilt
    with its type and the message str() gave; its traceback goes to the worker's log."""
    batch, error = failure
    if isinstance(error, BaseException):
        return batch, error
    exc_type, text, lines = error
    log.warning("model batch failed:\n%s", "".join(lines))
    name = exc_type.__qualname__
    if exc_type.__module__ not in ("builtins", "__main__"):
        name = f"{exc_type.__module__}.{name}"
    # The traceback's own "Type: message" line (notes may follow it).
    line = next((x.rstrip("\n") for x in reversed(lines)
                 if x.rstrip("\n") == name or x.startswith(f"{name}: ")), None)
    message = text if line is None else line[len(name) + 2:]
    try:
        rebuilt = exc_type(message)
    except Exception:  # a constructor that wants more than a message
        rebuilt = RuntimeError(f"{exc_type.__name__}: {message}")
    return batch, rebuilt


def _keyed(request: Any, group_key: Callable[[Any], Hashable]) -> tuple[Hashable, Any]:
    return group_key(request), request


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most `size` items (at least one item each)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= max(1, size):
            yield batch
            batch = []
    if batch:
        yield batch


class _RunBatches(beam.DoFn):
    """One batch through handler.run_inference; a batch that raises goes to 'failed' as
    (batch, exception), as RunInference's dead-letter output has it. Counts under the
    handler's metrics namespace with RunInference's names."""

    def __init__(self, handler: ModelHandler, model_identifier: str) -> None:
        self.handler, self.model_identifier = handler, model_identifier

    def setup(self) -> None:
        namespace = self.handler.get_metrics_namespace()
        self.inferences = Metrics.counter(namespace, "num_inferences")
        self.failed_batches = Metrics.counter(namespace, "failed_batches_counter")
        self.latency_us = Metrics.distribution(namespace, "inference_batch_latency_micro_secs")
        if self.model_identifier not in _LOADED:
            start = time.perf_counter()
            _LOADED[self.model_identifier] = self.handler.load_model()
            Metrics.distribution(namespace, "load_model_latency_milli_secs").update(
                int((time.perf_counter() - start) * 1000))
        self.model = _LOADED[self.model_identifier]

    def process(self, batch: list[Any]) -> Iterator[Any]:
        start = time.perf_counter()
        try:
            results = list(self.handler.run_inference(batch, self.model))
        except Exception as e:  # the batch's requests become error rows downstream
            self.failed_batches.inc()
            yield beam.pvalue.TaggedOutput(FAILED, (batch, e))
            return
        self.inferences.inc(len(batch))
        self.latency_us.update(int((time.perf_counter() - start) * 1e6))
        yield from results
