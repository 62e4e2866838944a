"""Probe: ffprobe each source, hash its bytes; skip files without a video stream."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam

from schemas.records import ProbedVideo, Source
from transforms.errors import ERRORS, SKIPPED, StageMetrics, error_record
from transforms.manifest import is_local
from transforms.media import MediaError, NoVideoStream, file_digest, parse_probe, probe

STAGE = "probe"


@dataclass(frozen=True)
class Skip:
    """A valid input that yields nothing, with the reason (becomes status 'skipped')."""

    video_id: str
    stage: str
    reason: str


def local_path_of(source: Source) -> str:
    if not is_local(source.uri):
        scheme = source.uri.split("://", 1)[0]
        raise MediaError(
            "unsupported_scheme",
            f"{scheme}:// sources cannot be read yet: this version processes local files only",
        )
    path = source.uri.removeprefix("file://")
    if not os.path.exists(path):
        raise MediaError("not_found", f"no such file: {path}")
    if not os.path.isfile(path):
        raise MediaError("not_a_file", f"not a regular file: {path}")
    if os.path.getsize(path) == 0:
        raise MediaError("empty_file", "the file is empty (0 bytes)")
    return path


def probe_source(source: Source) -> ProbedVideo:
    """ffprobe + size + sha256; raises NoVideoStream or MediaError."""
    path = local_path_of(source)
    data = probe(path)
    size, sha256 = file_digest(path)
    return ProbedVideo(source=source, local_path=path, info=parse_probe(data, size, sha256))


class _ProbeFn(beam.DoFn):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, source: Source) -> Iterator[ProbedVideo | beam.pvalue.TaggedOutput]:
        with self.metrics.timed():
            try:
                probed = probe_source(source)
            except NoVideoStream as e:
                self.metrics.skipped.inc()
                yield beam.pvalue.TaggedOutput(SKIPPED, Skip(source.video_id, STAGE, str(e)))
                return
            except Exception as e:
                self.metrics.failed.inc()
                yield beam.pvalue.TaggedOutput(
                    ERRORS,
                    error_record(e, stage=STAGE, source_uri=source.uri, run_id=self.run_id,
                                 video_id=source.video_id),
                )
                return
        self.metrics.processed.inc()
        yield probed


class Probe(beam.PTransform):
    """Sources -> ProbedVideo (main), Skip ('skipped'), ErrorRecord ('errors')."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def expand(self, sources: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return sources | "Ffprobe" >> beam.ParDo(_ProbeFn(self.run_id)).with_outputs(
            ERRORS, SKIPPED, main="videos")
