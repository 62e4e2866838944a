"""Model inference: Beam's RunInference with its dead-letter output, on every runner.

(Our DaskRunner, pipeline/dask_runner.py, runs RunInference's multi-output ParDo and
BatchElements' finish_bundle correctly and keeps a step's DoFn, so its model, across
partitions; before it did, Dask needed a second path here.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import apache_beam as beam

if TYPE_CHECKING:  # Beam's ML package imports torch: only a graph with a model loads it
    from apache_beam.ml.inference.base import ModelHandler

RESULTS, FAILED = "results", "failed"
log = logging.getLogger("vidcurate")


class Infer(beam.PTransform):
    """requests -> {'results': what handler.run_inference yields,
                    'failed': (batch, exception) for each batch that raised}."""

    def __init__(self, handler: ModelHandler, model_identifier: str) -> None:
        super().__init__()
        self.handler, self.model_identifier = handler, model_identifier

    def expand(self, requests: beam.PCollection) -> dict[str, beam.PCollection]:
        from apache_beam.ml.inference.base import RunInference

        results, dead = requests | "RunInference" >> RunInference(
            self.handler, model_identifier=self.model_identifier,
        ).with_exception_handling()
        failed = dead.failed_inferences | "AsException" >> beam.Map(as_exception)
        return {RESULTS: results, FAILED: failed}


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
