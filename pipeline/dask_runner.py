"""Beam's DaskRunner with its translation fixed where our DAG needs it (`--runner DaskRunner`
runs this one).

Beam 2.77 translates a pipeline to dask.bag with faults that matter to us (README,
"Running at scale", lists the others and how the DAG avoids them):
  - ParDo: every partition shares one list of outputs, collected before finish_bundle.
    Partitions run in one process returned their predecessors' outputs again, and what
    finish_bundle emits (BatchElements' last batch) was lost. Here each partition is a
    bundle with its own DoFn instance and outputs, collected after finish_bundle.
  - Partitions multiply: Flatten is bag.concat (its inputs' partitions added up),
    GroupByKey keeps its input's count, and Reshuffle does nothing. Through the flattens
    of our DAG a one-video run reached 625 partitions and 65,596 tasks (a minute of
    scheduling for a 4-second video), while the videos of a manifest sat in one
    partition, on one worker, until the first GroupByKey. Here Flatten, GroupByKey and
    Reshuffle give `--dask_npartitions` partitions at most (default: twice the cluster's
    worker threads), and Reshuffle spreads its elements over them, so a long video's
    clips are shared out across workers.
  - A ParDo with several outputs delivers them all as its main output; that one is
    left as it is, and our DAG avoids such ParDos (transforms/errors.split_outputs,
    transforms/inference.py).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import dask.bag as db
from apache_beam import DoFn, ParDo
from apache_beam.internal import pickler
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner
from apache_beam.runners.dask import overrides as dask_overrides
from apache_beam.runners.dask import transform_evaluator as evaluator
from apache_beam.runners.runner import PipelineState

from vidcurate.pipeline.options import ConfigError

TERMINAL = (PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED)

# Partitions per worker thread: a little slack so one slow partition does not idle the rest.
PARTITIONS_PER_THREAD = 2
WORKER_WAIT_S = 60


def _limit(op: evaluator.DaskBagOp) -> int:
    return int(op.bag_kwargs["max_partitions"])


class _Flatten(evaluator.Flatten):
    def apply(self, input_bag: Any, side_inputs: Any = None) -> db.Bag:
        bag = super().apply(input_bag, side_inputs)
        # Repartitioning to fewer partitions concatenates neighbours: no shuffle.
        return bag.repartition(npartitions=_limit(self)) if bag.npartitions > _limit(self) \
            else bag


def _key(item: Any) -> Any:
    return item[0]


def _grouped_values(item: tuple[Any, list]) -> tuple[Any, list]:
    key, values = item
    return key, [evaluator.defenestrate(v[1]) for v in values]


class _GroupByKey(evaluator.GroupByKey):
    def apply(self, input_bag: db.Bag, side_inputs: Any = None) -> db.Bag:
        return input_bag.groupby(_key, npartitions=_limit(self)).map(_grouped_values)


def _spread_keys(partition: list[Any], partitions: int) -> Iterator[tuple[int, Any]]:
    """Consecutive elements to consecutive partitions, from a start that depends on the
    partition's first element, so that many small partitions do not all start at 0.
    Deterministic: a recomputed task sends every element where it went the first time."""
    items = list(partition)
    if not items:
        return
    first = repr(evaluator.defenestrate(items[0])).encode()
    start = int.from_bytes(hashlib.blake2b(first, digest_size=8).digest(), "big")
    for i, item in enumerate(items):
        yield (start + i) % partitions, item


def _spread_values(item: tuple[int, list]) -> list[Any]:
    return [value for _, value in item[1]]


class _Reshuffle(evaluator.DaskBagOp):
    def apply(self, input_bag: db.Bag, side_inputs: Any = None) -> db.Bag:
        n = _limit(self)
        return (input_bag.map_partitions(lambda part: list(_spread_keys(part, n)))
                .groupby(_key, npartitions=n)
                .map(_spread_values)
                .flatten())


def _run_bundle(items: Any, fn_bytes: bytes, window_fn: Any, label: str, side_inputs: Any,
                args: Any, kwargs: Any) -> list[Any]:
    """One partition as one bundle, with its own DoFn instance and output receivers."""
    receivers = evaluator.OneReceiver()
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(pickler.loads(fn_bytes)),
        _OutputHandler(window_fn=window_fn, main_receivers=receivers[None],
                       tagged_receivers=receivers, per_element_output_counter=None,
                       output_batch_converter=None, process_yields_batches=False,
                       process_batch_yields_elements=False),
        context=DoFnContext(label, state=None), side_inputs=side_inputs, input_args=args,
        input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return [v.value for v in receivers.values]


class _ParDo(evaluator.ParDo):
    """Beam's translation gives every partition one shared receiver list (collected
    before finish_bundle): partitions run in one process returned their predecessors'
    outputs again, and what finish_bundle emitted (BatchElements' last batch) was lost."""

    def apply(self, input_bag: db.Bag, side_inputs: Any = None) -> db.Bag:
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") \
            else None
        return input_bag.map(evaluator.get_windowed_value, window_fn).map_partitions(
            _run_bundle, pickler.dumps(transform.fn), window_fn, transform.label,
            side_inputs, list(args), kwargs)


_OURS = {
    ParDo: _ParDo,
    dask_overrides._Flatten: _Flatten,
    dask_overrides._GroupByKeyOnly: _GroupByKey,
    dask_overrides._Reshuffle: _Reshuffle,
}


@contextlib.contextmanager
def _our_translations() -> Iterator[None]:
    """Beam's runner looks its translations up in a module dict while it builds the
    graph; ours replace four of them for that time only."""
    saved = {k: evaluator.TRANSLATIONS.get(k) for k in _OURS}
    evaluator.TRANSLATIONS.update(_OURS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                evaluator.TRANSLATIONS.pop(k, None)
            else:
                evaluator.TRANSLATIONS[k] = v


class DaskRunner(dask_runner.DaskRunner):
    """Beam's DaskRunner with our ParDo, Flatten, GroupByKey and Reshuffle (see the
    module docstring)."""

    def run_pipeline(self, pipeline: Any, options: Any) -> dask_runner.DaskRunnerResult:
        import dask
        import dask.distributed as ddist

        dask_options = options.view_as(dask_runner.DaskOptions).get_all_options(
            drop_default=True, current_only=True)
        bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        if not client.nthreads():
            try:  # a cluster whose workers are still starting
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError as e:
                raise ConfigError(f"the Dask cluster at {client.scheduler.address} has no "
                                  f"workers (waited {WORKER_WAIT_S} s)") from e
        threads = sum(client.nthreads().values())
        bag_kwargs["max_partitions"] = (bag_kwargs.get("npartitions")
                                        or PARTITIONS_PER_THREAD * threads)
        pipeline.replace_all(dask_overrides.dask_overrides())
        visitor = self.to_dask_bag_visitor(bag_kwargs)
        with _our_translations():
            pipeline.visit(visitor)
        # As Beam's runner: the last bag depends on the whole graph (see pipeline/dag.py).
        graph = dask.optimize(list(visitor.bags.values())[-1])
        return _Result(client, client.compute(graph))


class _Result(dask_runner.DaskRunnerResult):
    """Closes the runner's client once the run ends: left open, it outlives the cluster
    and spends 30 s trying to reconnect."""

    def wait_until_finish(self, duration: int | None = None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            if self._state in TERMINAL:
                self.client.close()
