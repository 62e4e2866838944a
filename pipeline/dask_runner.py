"""Beam's DaskRunner with its translation fixed where our DAG needs it (`--runner DaskRunner`
runs this one).

Beam 2.77 translates a pipeline to dask.bag with faults that matter to us (docs/scale.md,
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
  - A ParDo with several outputs delivered them all to its main output (tagged outputs
    as raw windowed values). Here a ParDo's bag holds (tag, value) pairs, and each
    output PCollection reads its own tag from it.
  - Only the graph's last transform (and what feeds it) ran. Here every leaf runs: every
    bag that no transform reads, so each table write runs without a final joining step.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import dask.bag as db
from apache_beam import DoFn, ParDo, pvalue
from apache_beam.internal import pickler
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner
from apache_beam.runners.dask import overrides as dask_overrides
from apache_beam.runners.dask import transform_evaluator as evaluator
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.sideinputs import SideInputMap

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


# Set-up DoFn instances of this worker process that no bundle is using, by step. Beam
# lets a runner reuse an instance for many bundles (setup once, teardown when the worker
# goes): a RunInference step then keeps its model across partitions instead of loading
# it again for each one. An instance serves one bundle at a time (worker threads).
# The steps of the latest runs only: a long-lived cluster runs many pipelines, and the
# DoFns of finished ones are torn down (and their models released) as newer ones come.
_IDLE: collections.OrderedDict[tuple[str, bytes], list[Any]] = collections.OrderedDict()
_IDLE_LOCK = threading.Lock()
MAX_IDLE_STEPS = 256


def _take_fn(label: str, fn_bytes: bytes) -> tuple[Any, bool]:
    """An idle instance of this step's DoFn, or a new one; and whether it is new."""
    key = (label, hashlib.sha256(fn_bytes).digest())
    with _IDLE_LOCK:
        idle = _IDLE.get(key)
        if idle:
            _IDLE.move_to_end(key)
            return idle.pop(), False
    return pickler.loads(fn_bytes), True


def _give_back(label: str, fn_bytes: bytes, fn: Any) -> None:
    evicted: list[Any] = []
    with _IDLE_LOCK:
        key = (label, hashlib.sha256(fn_bytes).digest())
        _IDLE.setdefault(key, []).append(fn)
        _IDLE.move_to_end(key)
        while len(_IDLE) > MAX_IDLE_STEPS:
            evicted.extend(_IDLE.popitem(last=False)[1])
    for old in evicted:
        with contextlib.suppress(Exception):  # teardown is best effort, as in Beam
            old.teardown()


def _run_bundle(items: Any, fn_bytes: bytes, window_fn: Any, label: str, side_inputs: Any,
                args: Any, kwargs: Any) -> list[Any]:
    """One partition as one bundle, with its own output receivers, on a DoFn instance
    no other bundle is using (set up once, reused by later bundles of the step)."""
    fn, new = _take_fn(label, fn_bytes)
    receivers = evaluator.OneReceiver()
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn),
        _OutputHandler(window_fn=window_fn, main_receivers=receivers[None],
                       tagged_receivers=receivers, per_element_output_counter=None,
                       output_batch_converter=None, process_yields_batches=False,
                       process_batch_yields_elements=False),
        context=DoFnContext(label, state=None), side_inputs=side_inputs, input_args=args,
        input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    if new:
        invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    # A bundle that raised fails its task; its instance is not reused (Dask retries the
    # task with a fresh one).
    _give_back(label, fn_bytes, fn)
    # (tag, element): None for the main output; each output PCollection picks its own.
    return [(v.tag, v.value.value) if isinstance(v, pvalue.TaggedOutput) else (None, v.value)
            for v in receivers.values]


def _only_tag(partition: list[tuple[Any, Any]], tag: str | None) -> list[Any]:
    return [element for t, element in partition if t == tag]


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


@dataclasses.dataclass
class _Visitor(PipelineVisitor):
    """Beam's DaskBagVisitor (dask_runner.to_dask_bag_visitor), with a bag per output:
    `bags` holds each transform's main output (as Beam's), `tagged` a ParDo's other
    outputs, and `read` what some transform consumes (the rest are the graph's leaves)."""

    bag_kwargs: dict[str, Any]
    bags: dict[AppliedPTransform, db.Bag] = dataclasses.field(
        default_factory=collections.OrderedDict)
    tagged: dict[tuple[AppliedPTransform, str], db.Bag] = dataclasses.field(
        default_factory=dict)
    read: set[int] = dataclasses.field(default_factory=set)

    def _bag_of(self, value: Any) -> db.Bag | None:
        producer, tag = value.producer, getattr(value, "tag", None)
        bag = self.tagged.get((producer, tag)) if tag is not None else None
        if bag is None:
            bag = self.bags.get(producer)
        if bag is not None:
            self.read.add(id(bag))
        return bag

    def visit_transform(self, node: AppliedPTransform) -> None:
        op_class = evaluator.TRANSLATIONS.get(node.transform.__class__, evaluator.NoOp)
        op = op_class(node, bag_kwargs=self.bag_kwargs)
        op_kws: dict[str, Any] = {"input_bag": None, "side_inputs": None}
        inputs = list(node.inputs)
        if inputs:
            bag_inputs = []
            for value in inputs:
                if isinstance(value, pvalue.PBegin):
                    bag_inputs.append(None)
                bag = self._bag_of(value)
                if bag is not None:
                    bag_inputs.append(bag)
            # Flatten always takes a list, even of one input.
            one = len(bag_inputs) == 1 and not isinstance(op, evaluator.Flatten)
            op_kws["input_bag"] = bag_inputs[0] if one else bag_inputs
        if node.side_inputs:
            op_kws["side_inputs"] = [
                SideInputMap(type(si), si._view_options(),
                             evaluator.DaskBagWindowedIterator(
                                 self._bag_of(si.pvalue), si._window_mapping_fn))
                for si in node.side_inputs]
        bag = op.apply(**op_kws)
        if isinstance(op, _ParDo):
            for tag in node.outputs:
                if tag is not None:
                    self.tagged[(node, tag)] = bag.map_partitions(_only_tag, tag)
            bag = bag.map_partitions(_only_tag, None)
        self.bags[node] = bag

    def leaves(self) -> list[db.Bag]:
        """The bags no transform reads: computing them runs the whole graph."""
        return [b for b in [*self.bags.values(), *self.tagged.values()]
                if id(b) not in self.read]


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
        # Every leaf, where Beam's runner computes only the last bag.
        return _Result(client, client.compute(dask.optimize(*visitor.leaves())))

    @staticmethod
    def to_dask_bag_visitor(bag_kwargs: dict[str, Any] | None = None) -> _Visitor:
        return _Visitor(bag_kwargs or {})


class _Result(dask_runner.DaskRunnerResult):
    """Closes the runner's client once the run ends: left open, it outlives the cluster
    and spends 30 s trying to reconnect."""

    def wait_until_finish(self, duration: int | None = None) -> str:
        if self._state in TERMINAL:  # waited for already (and the client is closed)
            return self._state
        try:
            return super().wait_until_finish(duration)
        finally:
            if self._state in TERMINAL:
                self.client.close()
