"""ContentDedup: the same bytes under several uris are processed once.

Runs right after Fetch, whose rows carry each file's sha256: the first copy in
manifest order goes on, every other one becomes a `skipped` video naming the copy that
was kept (and its download is removed at once, unless --keep-downloads).

A run made in batches (--batch-videos) keeps that rule across its batches: a batch
also meets the content hashes its run's earlier, committed batches recorded in
`videos`, and a copy of one of those is a skipped duplicate of it. (`videos` records a
hash once the file was probed: a first copy that failed its probe leaves none, and a
copy in a later batch is then processed, and fails the same way.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import Fetched, Skip
from vidcurate.transforms.errors import SKIPPED
from vidcurate.transforms.fetch import remove_download

STAGE = "content_dedup"


def _order(fetched: Fetched) -> tuple[str, str]:
    from vidcurate.transforms.manifest import _origin_order

    base, row = _origin_order(fetched.source)
    return base, f"{row:012d}{fetched.source.uri}"


def _duplicate_of(dup: Fetched, sha256: str, uri: str, video_id: str) -> Skip:
    return Skip(dup.source.video_id, STAGE, f"same content (sha256 {sha256[:12]}…) as {uri} "
                f"(video {video_id})")


def _kept_earlier(row: dict[str, Any]) -> bool:
    """An earlier batch's videos row of the copy that batch kept (not one of its skipped
    duplicates), with the hash its probe recorded."""
    return bool(row["content_sha256"]) and not (row["reason"] or "").startswith(f"{STAGE}:")


class _FirstByContent(beam.DoFn):
    """Same bytes under several uris: the first (manifest order) goes on, the others
    are recorded as skipped duplicates of it."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.duplicates = Metrics.counter(STAGE, "duplicates")

    def process(self, item: tuple[str, dict[str, Iterable]]
                ) -> Iterator[Fetched | beam.pvalue.TaggedOutput]:
        sha256, parts = item
        group = sorted(parts["fetched"], key=_order)  # empty: only an earlier batch had it
        earlier = min(parts["earlier"], key=lambda r: r["run_id"], default=None)
        if earlier is not None:  # an earlier batch of the run kept this content
            others = group
            kept = (earlier["source_uri"], earlier["video_id"])
        elif group:
            first, *others = group
            kept = (first.source.uri, first.source.video_id)
            yield first
        else:
            others = []
        for dup in others:
            self.duplicates.inc()
            if not self.keep:
                remove_download(dup)
            yield beam.pvalue.TaggedOutput(SKIPPED, _duplicate_of(dup, sha256, *kept))


class ContentDedup(beam.PTransform):
    """Fetched -> the first Fetched of each content (main), Skip for the others
    ('skipped')."""

    def __init__(self, keep_downloads: bool, output: str | None = None,
                 earlier_batches: tuple[str, ...] = ()) -> None:
        """earlier_batches: the run ids of the run's committed batches before this one,
        whose `videos` rows in output are read for the hashes they kept."""
        super().__init__()
        self.keep_downloads = keep_downloads
        self.output = output
        self.earlier_batches = frozenset(earlier_batches)

    def expand(self, fetched: beam.PCollection) -> dict[str, beam.PCollection]:
        by_sha = fetched | "BySha" >> beam.Map(lambda f: (f.sha256, f))
        earlier_batches = self.earlier_batches
        if earlier_batches:
            earlier = (
                fetched.pipeline
                | "EarlierRows" >> beam.io.ReadFromParquet(
                    f"{self.output}/videos/*.parquet",
                    columns=["run_id", "video_id", "source_uri", "content_sha256", "reason"])
                | "OfEarlierBatches" >> beam.Filter(
                    lambda r: r["run_id"] in earlier_batches and _kept_earlier(r))
                | "ByEarlierSha" >> beam.Map(lambda r: (r["content_sha256"], r)))
        else:
            earlier = fetched.pipeline | "NoEarlierBatches" >> beam.Create([])
        return (
            {"fetched": by_sha, "earlier": earlier}
            | "SameContent" >> beam.CoGroupByKey()
            | "FirstCopy" >> beam.ParDo(_FirstByContent(self.keep_downloads))
            .with_outputs(SKIPPED, main="unique"))
