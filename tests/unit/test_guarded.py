"""guarded(): one element through a stage's step, its outputs or its error row, counted
and timed under the stage's metrics namespace, as the stages read them back."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from vidcurate.transforms.core import StageError
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded


def _step(n: int) -> Iterator[str]:
    """Two outputs per element; 3 fails halfway (after its first output), 4 raises a
    stage error, 5 an unexpected exception."""
    yield f"{n}a"
    if n == 3:
        raise StageError("half_done", "failed after one output")
    if n == 4:
        raise StageError("bad_input", f"element {n} is unusable")
    if n == 5:
        raise KeyError(n)
    yield f"{n}b"


class _GuardedFn(beam.DoFn):
    def __init__(self, stage: str, timed: bool) -> None:
        self.timed = timed
        self.metrics = StageMetrics(stage)

    def process(self, n: int) -> Iterator[str | beam.pvalue.TaggedOutput]:
        yield from guarded(self.metrics, _step, n, source_uri=f"/v/{n}.mp4", run_id="r",
                           video_id=f"v{n}", clip_id=f"c{n}", timed=self.timed)


def _run(stage: str, elements: list[int], outputs: list[str], errors: list[tuple],
         timed: bool = True) -> dict[str, int]:
    """Run the elements through the step; check outputs and error rows; return the
    stage's counters and, as 'timings', how many latencies it recorded."""
    p = TestPipeline()
    out = (p | beam.Create(elements)
           | beam.ParDo(_GuardedFn(stage, timed)).with_outputs(ERRORS, main="main"))
    assert_that(out["main"], equal_to(outputs), label="outputs")
    assert_that(out[ERRORS] | beam.Map(lambda e: (
        e.stage, e.error_type, e.message.split(" (at ")[0], e.source_uri, e.run_id,
        e.video_id, e.clip_id)), equal_to(errors), label="errors")
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(stage))
    counters = {c.key.metric.name: c.committed for c in found["counters"]}
    counters["timings"] = sum(d.committed.count for d in found["distributions"])
    return counters


def test_a_passing_step_yields_its_outputs_and_counts_processed():
    counters = _run("guarded_pass", [1, 2], ["1a", "1b", "2a", "2b"], [])
    assert counters == {"processed": 2, "timings": 2}


def test_a_failing_step_gives_exactly_its_error_row_and_counts_failed():
    counters = _run("guarded_fail", [1, 3, 4, 5], ["1a", "1b"], [
        ("guarded_fail", "half_done", "failed after one output", "/v/3.mp4", "r", "v3", "c3"),
        ("guarded_fail", "bad_input", "element 4 is unusable", "/v/4.mp4", "r", "v4", "c4"),
        ("guarded_fail", "internal:KeyError", "KeyError: 5", "/v/5.mp4", "r", "v5", "c5"),
    ])
    # A step that fails partway emits none of its outputs; every element is timed.
    assert counters == {"processed": 1, "failed": 3, "timings": 4}


def test_an_untimed_step_records_no_latency():
    counters = _run("guarded_untimed", [2, 4], ["2a", "2b"], [
        ("guarded_untimed", "bad_input", "element 4 is unusable", "/v/4.mp4", "r", "v4",
         "c4")], timed=False)
    assert counters == {"processed": 1, "failed": 1, "timings": 0}
