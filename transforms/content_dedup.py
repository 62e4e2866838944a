"""ContentDedup: the same bytes under several uris are processed once.

Runs right after Fetch, whose rows carry each file's sha256: the first copy in
manifest order goes on, every other one becomes a `skipped` video naming the copy that
was kept (and its download is removed at once, unless --keep-downloads).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


class _FirstByContent(beam.DoFn):
    """Same bytes under several uris: the first (manifest order) goes on, the others
    are recorded as skipped duplicates of it."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.duplicates = Metrics.counter(STAGE, "duplicates")

    def process(self, item: tuple[str, Iterable[Fetched]]
                ) -> Iterator[Fetched | beam.pvalue.TaggedOutput]:
        _, group = item
        first, *others = sorted(group, key=_order)
        yield first
        for dup in others:
            self.duplicates.inc()
            if not self.keep:
                remove_download(dup)
            yield beam.pvalue.TaggedOutput(SKIPPED, Skip(
                dup.source.video_id, STAGE,
                f"same content (sha256 {first.sha256[:12]}…) as {first.source.uri} "
                f"(video {first.source.video_id})"))


class ContentDedup(beam.PTransform):
    """Fetched -> the first Fetched of each content (main), Skip for the others
    ('skipped')."""

    def __init__(self, keep_downloads: bool) -> None:
        super().__init__()
        self.keep_downloads = keep_downloads

    def expand(self, fetched: beam.PCollection) -> dict[str, beam.PCollection]:
        return (
            fetched
            | "BySha" >> beam.Map(lambda f: (f.sha256, f))
            | "SameContent" >> beam.GroupByKey()
            | "FirstCopy" >> beam.ParDo(_FirstByContent(self.keep_downloads))
            .with_outputs(SKIPPED, main="unique"))
