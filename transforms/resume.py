"""SkipDone: on a rerun over the same output, leave videos that are already done.

A video is done when the latest complete earlier run with the same outputs hash (see
RunConfig.outputs_hash) gave it status ok or skipped (or failed, with
--no-retry-failed). Its rows stay visible through the query views (latest complete run
per video wins); it gets no new row. The earlier rows are read by the pipeline itself,
so this scales with the output, not with the launcher's memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import Source

STAGE = "resume"


def done_statuses(retry_failed: bool) -> frozenset[str]:
    return frozenset({"ok", "skipped"} if retry_failed else {"ok", "skipped", "failed"})


def latest_status(rows: Iterable[tuple[int, str]]) -> str:
    """The status from the most recent run (highest order) among a video's rows."""
    return max(rows)[1]


def _keep_undone(item: tuple[str, dict[str, Iterable]], statuses: frozenset[str]
                 ) -> Iterator[Source]:
    _, parts = item
    previous = list(parts["previous"])
    done = bool(previous) and latest_status(previous) in statuses
    for source in parts["sources"]:
        if done:
            Metrics.counter(STAGE, "skipped").inc()
        else:
            Metrics.counter(STAGE, "processed").inc()
            yield source


class SkipDone(beam.PTransform):
    """Sources -> the sources that earlier complete runs did not finish."""

    def __init__(self, output: str, previous_runs: list[str], retry_failed: bool,
                 only: frozenset[str] | None = None) -> None:
        """only: the video ids of the sources, when the caller knows them (a batch the
        launcher listed); earlier rows of other videos are dropped as they are read."""
        super().__init__()
        self.output = output
        self.order = {run_id: i for i, run_id in enumerate(previous_runs)}
        self.statuses = done_statuses(retry_failed)
        self.only = only

    def expand(self, sources: beam.PCollection) -> beam.PCollection:
        order, only = self.order, self.only
        previous = (
            sources.pipeline
            | "EarlierRows" >> beam.io.ReadFromParquet(
                f"{self.output}/videos/*.parquet", columns=["video_id", "status", "run_id"])
            | "Committed" >> beam.Filter(
                lambda r: r["run_id"] in order and (only is None or r["video_id"] in only))
            | "ByVideo" >> beam.Map(lambda r: (r["video_id"], (order[r["run_id"]], r["status"])))
        )
        return (
            {"sources": sources | "KeySources" >> beam.Map(lambda s: (s.video_id, s)),
             "previous": previous}
            | "Join" >> beam.CoGroupByKey()
            | "Undone" >> beam.FlatMap(_keep_undone, self.statuses)
        )
