"""Our DaskRunner's translations, checked on the dask graph itself (no cluster, dask's
synchronous scheduler): every element once, finish_bundle's outputs kept, Flatten,
GroupByKey and Reshuffle within the partition bound."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.runners.dask.transform_evaluator import defenestrate

from vidcurate.pipeline.dask_runner import DaskRunner, _our_translations


def _bags(bounded: bool) -> dict[str, object]:
    p = beam.Pipeline(runner=DaskRunner())
    src = p | "Src" >> beam.Create(range(40))
    parts = [src | f"Part{i}" >> beam.Map(lambda x, i=i: (x % 5, x * 10 + i)) for i in range(6)]
    _ = (parts | "Flat" >> beam.Flatten() | "Group" >> beam.GroupByKey()
         | "Sorted" >> beam.MapTuple(lambda k, vs: (k, sorted(vs))))
    _ = src | "Spread" >> beam.Reshuffle() | "AfterSpread" >> beam.Map(lambda x: x)
    # BatchElements emits its last, partial batch from finish_bundle.
    _ = src | "Batch" >> beam.BatchElements(min_batch_size=7, max_batch_size=7)
    p.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor({"npartitions": 2, "max_partitions": 3})
    if bounded:
        with _our_translations():
            p.visit(visitor)
    else:
        p.visit(visitor)
    return {node.full_label: bag for node, bag in visitor.bags.items()}


def _values(bag) -> list:
    return [defenestrate(v) for v in bag.compute(scheduler="sync")]


def test_partitions_stay_bounded_and_every_element_arrives():
    unbounded = _bags(bounded=False)
    assert unbounded["Flat"].npartitions == 12  # Beam's own translation: 6 x 2 partitions
    bags = _bags(bounded=True)
    assert max(bag.npartitions for bag in bags.values()) <= 3
    grouped = dict(_values(bags["Sorted"]))
    assert grouped == {k: sorted(x * 10 + i for x in range(40) if x % 5 == k for i in range(6))
                       for k in range(5)}


def test_reshuffle_spreads_elements_over_the_partitions():
    bag = _bags(bounded=True)["AfterSpread"]
    assert bag.npartitions == 3
    per_partition = bag.map_partitions(lambda part: [len(list(part))]).compute(
        scheduler="sync")
    assert sum(per_partition) == 40 and min(per_partition) >= 10
    assert sorted(_values(bag)) == list(range(40))


def test_beams_translations_are_restored_after_building():
    from apache_beam.runners.dask import transform_evaluator

    before = dict(transform_evaluator.TRANSLATIONS)
    with pytest.raises(RuntimeError), _our_translations():
        raise RuntimeError("graph building failed")
    assert before == transform_evaluator.TRANSLATIONS
    assert issubclass(DaskRunner, beam_dask.DaskRunner)


def test_every_partition_returns_its_own_outputs_and_finish_bundle_ones():
    bags = _bags(bounded=True)
    assert sorted(_values(bags["Part0"])) == sorted((x % 5, x * 10) for x in range(40))
    batches = _values([bag for label, bag in bags.items() if label.startswith("Batch/")][-1])
    assert sorted(x for batch in batches for x in batch) == list(range(40))
    assert all(len(batch) <= 7 for batch in batches)


class _ByRemainder(beam.DoFn):
    def process(self, x: int):  # noqa: ANN201 - no hints: Beam would check them
        if x % 3 == 0:
            yield beam.pvalue.TaggedOutput("three", x)
        elif x % 3 == 1:
            yield beam.pvalue.TaggedOutput("one", x * 10)
        else:
            yield x


def test_each_output_of_a_pardo_reaches_its_own_consumers_and_every_leaf_runs():
    p = beam.Pipeline(runner=DaskRunner())
    out = (p | "Src" >> beam.Create(range(30))
           | "Split" >> beam.ParDo(_ByRemainder()).with_outputs("three", "one", main="rest"))
    _ = out["rest"] | "Rest" >> beam.Map(lambda x: x)
    _ = out["three"] | "Three" >> beam.Map(lambda x: x)
    _ = out["one"] | "One" >> beam.Map(lambda x: x)
    _ = (out["three"], out["rest"]) | "Both" >> beam.Flatten()
    p.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor({"npartitions": 2, "max_partitions": 3})
    with _our_translations():
        p.visit(visitor)
    bags = {node.full_label: bag for node, bag in visitor.bags.items()}
    assert sorted(_values(bags["Rest"])) == [x for x in range(30) if x % 3 == 2]
    assert sorted(_values(bags["Three"])) == [x for x in range(30) if x % 3 == 0]
    assert sorted(_values(bags["One"])) == [x * 10 for x in range(30) if x % 3 == 1]
    assert sorted(_values(bags["Both"])) == [x for x in range(30) if x % 3 != 1]
    # The run computes every bag nothing reads: all four branches, not the last alone.
    leaves = {id(b) for b in visitor.leaves()}
    assert {label for label, bag in bags.items() if id(bag) in leaves} == {
        "Rest", "Three", "One", "Both"}
