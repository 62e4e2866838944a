"""Probe: ffprobe each source, hash its bytes; skip files without a video stream."""

from __future__ import annotations

import os
from collections.abc import Iterator

import apache_beam as beam

from vidcurate.schemas.records import Fetched, ProbedVideo, Skip, Source
from vidcurate.transforms.errors import ERRORS, SKIPPED, StageMetrics
from vidcurate.transforms.media.limits import DEFAULT_LIMITS, MediaError, MediaLimits, NoVideoStream
from vidcurate.transforms.media.probing import parse_probe, probe, verify_info, video_packet_span
from vidcurate.transforms.media.storage import file_digest

STAGE = "probe"


def probe_fetched(fetched: Fetched, limits: MediaLimits = DEFAULT_LIMITS) -> ProbedVideo:
    """ffprobe the fetched file (allowed containers only), then check what it claims
    against the limits and against its packets; raises NoVideoStream or MediaError."""
    data = probe(fetched.local_path, limits)
    info = parse_probe(data, fetched.bytes, fetched.sha256)
    info = verify_info(info, video_packet_span(fetched.local_path, fetched.bytes, limits),
                       limits)
    return ProbedVideo(source=fetched.source, local_path=fetched.local_path, info=info)


def probe_source(source: Source, limits: MediaLimits = DEFAULT_LIMITS) -> ProbedVideo:
    """A local source straight to its probe (tests and tools; the DAG goes through Fetch)."""
    path = source.uri.removeprefix("file://")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise MediaError("not_found", f"no such non-empty file: {path}")
    size, sha256 = file_digest(path)
    return probe_fetched(Fetched(source, path, size, sha256, downloaded=False), limits)


class _ProbeFn(beam.DoFn):
    def __init__(self, run_id: str, limits: MediaLimits) -> None:
        self.run_id, self.limits = run_id, limits
        self.metrics = StageMetrics(STAGE)

    def process(self, fetched: Fetched) -> Iterator[ProbedVideo | beam.pvalue.TaggedOutput]:
        source = fetched.source
        with self.metrics.timed():
            try:
                probed = probe_fetched(fetched, self.limits)
            except NoVideoStream as e:
                self.metrics.skipped.inc()
                yield beam.pvalue.TaggedOutput(SKIPPED, Skip(source.video_id, STAGE, str(e)))
                return
            except Exception as e:
                yield self.metrics.failure(e, source_uri=source.uri, run_id=self.run_id,
                                           video_id=source.video_id)
                return
        self.metrics.processed.inc()
        yield probed


class Probe(beam.PTransform):
    """Fetched -> ProbedVideo (main), Skip ('skipped'), ErrorRecord ('errors')."""

    def __init__(self, run_id: str, limits: MediaLimits = DEFAULT_LIMITS) -> None:
        super().__init__()
        self.run_id, self.limits = run_id, limits

    def expand(self, fetched: beam.PCollection) -> dict[str, beam.PCollection]:
        return (
            fetched
            | "Ffprobe" >> beam.ParDo(_ProbeFn(self.run_id, self.limits))
            .with_outputs(ERRORS, SKIPPED, main="videos"))
