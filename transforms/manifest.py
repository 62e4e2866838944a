"""ReadManifest: turn --input (a folder, one video, or a manifest file) into Sources.

Listing and reading happen inside the pipeline (so a bucket with millions of objects
is listed by a worker, not the launcher), then sources are grouped by video id: the
same video listed twice is processed once, and the shuffle spreads the work.

A run in bounded batches (--batch-videos) lists once in the launcher instead
(listed_batches: the same sources, problems and duplicates, cut in listing order), and
each batch's pipeline starts from ReadListed, which gives what ReadManifest gives.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import ErrorRecord, Source
from vidcurate.transforms.core import is_local
from vidcurate.transforms.errors import ERRORS, StageMetrics, error_record

STAGE = "manifest"
MANIFEST_EXTENSIONS = ("csv", "tsv", "jsonl", "ndjson", "json", "parquet")
URI_COLUMNS = ("uri", "url", "path", "video", "video_path", "file", "filename")
KNOWN_COLUMNS = ("title", "description", "license")


class ManifestRowError(ValueError):
    """A manifest row that names no usable video."""


@dataclass(frozen=True)
class RowProblem:
    origin: str  # manifest path and row number
    reason: str


def normalise_uri(uri: str, base_dir: str | None = None) -> str:
    """One spelling per video: absolute local paths; lower-case scheme and host."""
    uri = uri.strip()
    if not uri:
        raise ManifestRowError("empty uri")
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if "://" not in uri:
        path = os.path.expanduser(uri)
        if not os.path.isabs(path) and base_dir and is_local(base_dir):
            path = os.path.join(base_dir, path)
        return os.path.normpath(os.path.abspath(path))
    parts = urlsplit(uri)
    if not parts.netloc:
        raise ManifestRowError(f"uri has a scheme but no host or bucket: {uri!r}")
    path = posixpath.normpath(parts.path) if parts.path else ""
    if parts.path.endswith("/") and not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def video_id_for(normalised_uri: str) -> str:
    return hashlib.sha256(normalised_uri.encode("utf-8")).hexdigest()[:16]


def input_kind(input_uri: str, extensions: Iterable[str]) -> str:
    """'manifest', 'video' or 'folder', from the name (and, locally, the file system)."""
    ext = input_uri.rsplit(".", 1)[-1].lower() if "." in posixpath.basename(input_uri) else ""
    if is_local(input_uri) and os.path.isdir(input_uri.removeprefix("file://")):
        return "folder"
    if ext in MANIFEST_EXTENSIONS:
        return "manifest"
    if ext in set(extensions):
        return "video"
    return "folder"


@dataclass(frozen=True)
class PassedOver:
    """A file in an input folder that is not taken as a video, and why: its extension
    (".m4a", "no extension"), "hidden", "symlink" (--no-follow-symlinks) or "output"
    (inside a vidcurate output). Counted in the run's summary and its runs row, never
    dropped without a word."""

    path: str
    reason: str


def is_output_folder(listed_paths: Iterable[str], folder: str) -> bool:
    """Whether listed paths show `folder` to be a vidcurate output: its runs/ table."""
    mark = folder.rstrip("/") + "/runs/"
    return any(p.startswith(mark) and p.endswith(".parquet") for p in listed_paths)


def _output_roots(paths: list[str]) -> list[str]:
    """The vidcurate outputs among the listed files' folders (<x>/runs/<id>.parquet, or
    a run in progress: <x>/.active/<id>.json), as prefixes ending in '/'."""
    roots = set()
    for path in paths:
        parent, name = posixpath.split(path)
        table_dir, table = posixpath.split(parent)
        if (table == "runs" and name.endswith(".parquet")) or (
                table == ".active" and name.endswith(".json")):
            roots.add(table_dir.rstrip("/") + "/")
    return sorted(roots)


def _local_files(root: str, follow_symlinks: bool) -> Iterator[tuple[str, bool]]:
    """(path, reached through a symbolic link) for every file under a local root;
    without follow_symlinks, each symlinked folder once instead of its files."""
    via_link = {root: False}
    for folder, dirs, files in os.walk(root, followlinks=follow_symlinks):
        linked = via_link.pop(folder, False)
        for d in dirs:
            path = os.path.join(folder, d)
            via_link[path] = linked or os.path.islink(path)
            if not follow_symlinks and os.path.islink(path):
                yield path, True  # os.walk does not enter it
        for name in files:
            path = os.path.join(folder, name)
            yield path, linked or os.path.islink(path)


def scan_folder(folder: str, extensions: Iterable[str], exclude: str | None = None,
                follow_symlinks: bool = True) -> Iterator[str | PassedOver]:
    """Every file under folder (recursively), in path order: its path when it is a
    video (its extension is one of `extensions`), else a PassedOver saying why not.
    Never a file inside a vidcurate output (the run's own `exclude`, or any folder
    holding a runs/ table): its clip files would come back as new videos. Without
    follow_symlinks (folders assembled by others), symbolic links are not followed."""
    wanted = {e.lower() for e in extensions}
    root = folder.rstrip("/")
    local = is_local(root)
    if local:
        base = root.removeprefix("file://") or "/"
        listed = sorted(_local_files(base, follow_symlinks))
        skip_real = os.path.realpath(exclude.removeprefix("file://")) + os.sep \
            if exclude and is_local(exclude) else None
    else:
        base = root
        # A bucket "folder" named like "Season [2019]" is a pattern to Beam; so be it.
        [result] = FileSystems.match([root + "/**"])
        listed = sorted((m.path, False) for m in result.metadata_list)
        skip_real = None
    skip = exclude.removeprefix("file://").rstrip("/") + "/" if exclude else None
    outputs = _output_roots([p for p, _ in listed])
    for path, linked in listed:
        relative = path[len(base):].lstrip("/")
        name = posixpath.basename(path)
        if (skip and path.startswith(skip)) or any(path.startswith(o) for o in outputs) or (
                skip_real and os.path.realpath(path).startswith(skip_real)):
            yield PassedOver(path, "output")
        elif any(part.startswith(".") for part in relative.split("/")):
            yield PassedOver(path, "hidden")
        elif linked and not follow_symlinks:
            yield PassedOver(path, "symlink")
        elif "." in name and name.rsplit(".", 1)[-1].lower() in wanted:
            yield path
        else:
            yield PassedOver(path, "." + name.rsplit(".", 1)[-1].lower() if "." in name
                             else "no extension")


def list_folder(folder: str, extensions: Iterable[str],
                exclude: str | None = None, follow_symlinks: bool = True) -> Iterator[str]:
    """The videos scan_folder finds, without what it passes over."""
    for item in scan_folder(folder, extensions, exclude, follow_symlinks):
        if isinstance(item, str):
            yield item


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value).strip()
    return text or None


def read_manifest_rows(path: str) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """(row number, row) for each row; a row that cannot be parsed comes as an exception."""
    ext = path.rsplit(".", 1)[-1].lower()
    if ext == "parquet":
        with FileSystems.open(path) as f:
            pf = pq.ParquetFile(f)
            n = 0
            for batch in pf.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        return
    with FileSystems.open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        if ext in ("csv", "tsv"):
            reader = csv.DictReader(text, delimiter="\t" if ext == "tsv" else ",")
            for n, row in enumerate(reader, start=1):
                if None in row:  # more cells than header columns
                    yield n, ManifestRowError(f"row has {len(row) - 1 + len(row[None])} cells "
                                              f"but the header has {len(row) - 1}")
                else:
                    yield n, row
        else:
            for n, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, ManifestRowError(f"invalid JSON: {e.msg} at column {e.colno}")
                    continue
                if not isinstance(row, dict):
                    yield n, ManifestRowError(f"expected a JSON object, got {type(row).__name__}")
                else:
                    yield n, row


def source_from_row(row: dict[str, Any], base_dir: str, origin: str) -> Source:
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    uri_key = next((k for k in URI_COLUMNS if _text(lowered.get(k))), None)
    if uri_key is None:
        raise ManifestRowError(f"no video uri (looked for columns {', '.join(URI_COLUMNS)})")
    uri = normalise_uri(str(lowered[uri_key]), base_dir)
    metadata = {
        str(k): v
        for k, v in row.items()
        if k is not None
        and str(k).strip().lower() not in (uri_key, *KNOWN_COLUMNS)
        and _text(v) is not None
    }
    return Source(
        uri=uri,
        video_id=video_id_for(uri),
        title=_text(lowered.get("title")),
        description=_text(lowered.get("description")),
        license=_text(lowered.get("license")),
        metadata=metadata,
        origin=origin,
    )


def expand_input(input_uri: str, extensions: tuple[str, ...],
                 exclude: str | None = None, follow_symlinks: bool = True
                 ) -> Iterator[Source | RowProblem | PassedOver]:
    """Sources named by --input, a RowProblem per unusable manifest row, and a
    PassedOver per file of an input folder that is not taken as a video."""
    kind = input_kind(input_uri, extensions)
    if kind == "video":
        uri = normalise_uri(input_uri)
        yield Source(uri=uri, video_id=video_id_for(uri), origin=input_uri)
    elif kind == "folder":
        for path in scan_folder(input_uri, extensions, exclude, follow_symlinks):
            if isinstance(path, PassedOver):
                yield path
                continue
            uri = normalise_uri(path)
            yield Source(uri=uri, video_id=video_id_for(uri), origin=input_uri)
    else:
        manifest = normalise_uri(input_uri)
        base_dir = posixpath.dirname(manifest) if not is_local(manifest) else os.path.dirname(
            manifest)
        for n, row in read_manifest_rows(manifest):
            origin = f"{input_uri}#row={n}"
            if isinstance(row, Exception):
                yield RowProblem(origin, str(row))
                continue
            try:
                yield source_from_row(row, base_dir, origin)
            except ManifestRowError as e:
                yield RowProblem(origin, str(e))


def passed_over_counter(reason: str) -> str:
    """The manifest stage's counter of files passed over for `reason` (in runs.counts)."""
    return f"passed_over:{reason}"


class _ExpandInput(beam.DoFn):
    def __init__(self, extensions: tuple[str, ...], run_id: str, exclude: str | None,
                 follow_symlinks: bool = True) -> None:
        self.extensions = extensions
        self.run_id = run_id
        self.exclude = exclude
        self.follow_symlinks = follow_symlinks
        self.metrics = StageMetrics(STAGE)

    def process(self, input_uri: str) -> Iterator[Source | beam.pvalue.TaggedOutput]:
        try:
            for item in expand_input(input_uri, self.extensions, self.exclude,
                                     self.follow_symlinks):
                if isinstance(item, PassedOver):
                    Metrics.counter(STAGE, passed_over_counter(item.reason)).inc()
                elif isinstance(item, Source):
                    self.metrics.processed.inc()
                    yield item
                else:
                    self.metrics.failed.inc()
                    yield beam.pvalue.TaggedOutput(
                        ERRORS,
                        ErrorRecord(stage=STAGE, source_uri=item.origin,
                                    error_type="bad_manifest_row", message=item.reason,
                                    run_id=self.run_id),
                    )
        except Exception as e:  # an unreadable manifest: one error row, not a crash
            yield self.metrics.failure(e, source_uri=input_uri, run_id=self.run_id)


def _origin_order(source: Source) -> tuple[str, int]:
    """Manifest order: 'm.csv#row=10' after 'm.csv#row=2'."""
    base, _, row = source.origin.rpartition("#row=")
    return (base, int(row)) if base and row.isdigit() else (source.origin, 0)


def _first_of_duplicates(item: tuple[str, Iterable[Source]]) -> Source:
    _, sources = item
    ordered = sorted(sources, key=_origin_order)
    if len(ordered) > 1:
        Metrics.counter(STAGE, "duplicates").inc(len(ordered) - 1)
    return ordered[0]


class ReadManifest(beam.PTransform):
    """--input -> Sources (one per distinct video) and errors for unusable rows."""

    def __init__(self, input_uri: str, extensions: tuple[str, ...], run_id: str,
                 exclude: str | None = None, follow_symlinks: bool = True) -> None:
        super().__init__()
        self.input_uri = input_uri
        self.extensions = extensions
        self.run_id = run_id
        self.exclude = exclude
        self.follow_symlinks = follow_symlinks

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        listed = (
            (pbegin | "Input" >> beam.Create([self.input_uri]))
            | "Expand" >> beam.ParDo(_ExpandInput(self.extensions, self.run_id, self.exclude,
                                                  self.follow_symlinks))
            .with_outputs(ERRORS, main="sources"))
        sources = (
            listed["sources"]
            | "ByVideoId" >> beam.Map(lambda s: (s.video_id, s))
            | "Group" >> beam.GroupByKey()
            | "Dedupe" >> beam.Map(_first_of_duplicates)
        )
        return {"sources": sources, ERRORS: listed[ERRORS]}


@dataclass
class ListedBatch:
    """Up to --batch-videos distinct sources, in listing order, and what the listing
    found while reading them: each unusable row, duplicate and listing failure lands
    in exactly one batch, so a run's batches count them once."""

    sources: list[Source] = field(default_factory=list)
    # Unusable manifest rows and a listing that failed, as error rows without a run id
    # (the batch's run id is known once the listing is done).
    errors: list[ErrorRecord] = field(default_factory=list)
    duplicates: int = 0  # sources dropped as the same video listed again
    passed_over: dict[str, int] = field(default_factory=dict)  # files not taken, by why

    # A batch waits on disk as JSON lines (data, never a pickle: the file is read back,
    # and unpickling runs whatever code the file names).
    def to_lines(self) -> Iterator[str]:
        yield json.dumps({"kind": "batch", "duplicates": self.duplicates,
                          "passed_over": self.passed_over})
        for s in self.sources:
            yield json.dumps({"kind": "source", "uri": s.uri, "video_id": s.video_id,
                              "title": s.title, "description": s.description,
                              "license": s.license, "origin": s.origin,
                              "metadata": _jsonable(s.metadata)})
        for e in self.errors:
            yield json.dumps({"kind": "error", "stage": e.stage, "source_uri": e.source_uri,
                              "error_type": e.error_type, "message": e.message,
                              "video_id": e.video_id, "clip_id": e.clip_id,
                              "time": e.time.isoformat()})

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> ListedBatch:
        batch = cls()
        for line in lines:
            item = json.loads(line)
            kind = item.pop("kind")
            if kind == "batch":
                batch.duplicates = int(item["duplicates"])
                batch.passed_over = {str(k): int(v) for k, v in item["passed_over"].items()}
            elif kind == "source":
                batch.sources.append(Source(**item))
            elif kind == "error":
                time = dt.datetime.fromisoformat(item.pop("time"))
                batch.errors.append(ErrorRecord(**item, run_id="", time=time))
            else:
                raise ValueError(f"unknown listing line kind {kind!r}")
        return batch


def _jsonable(value: Any) -> Any:
    """Manifest metadata as JSON: what Parquet gives (numpy arrays, dates, bytes) as the
    videos table writes it (lists stay lists, anything else its text)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _jsonable(value.tolist())
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def listed_batches(input_uri: str, extensions: tuple[str, ...], exclude: str | None,
                   size: int, follow_symlinks: bool = True) -> Iterator[ListedBatch]:
    """--input listed once (expand_input, as ReadManifest lists it), cut into batches of
    at most `size` distinct videos in listing order; always at least one batch. Holds one
    batch and the ids seen so far, never the whole listing. The first listing of a video
    is kept, as ReadManifest keeps the first in manifest order."""
    seen: set[str] = set()
    batch = ListedBatch()
    try:
        for item in expand_input(input_uri, extensions, exclude, follow_symlinks):
            if isinstance(item, PassedOver):
                batch.passed_over[item.reason] = batch.passed_over.get(item.reason, 0) + 1
            elif isinstance(item, RowProblem):
                batch.errors.append(ErrorRecord(
                    stage=STAGE, source_uri=item.origin, error_type="bad_manifest_row",
                    message=item.reason, run_id=""))
            elif item.video_id in seen:
                batch.duplicates += 1
            else:
                seen.add(item.video_id)
                if len(batch.sources) == size:
                    yield batch
                    batch = ListedBatch()
                batch.sources.append(item)
    except Exception as e:  # an unreadable manifest: one error row, as ReadManifest makes
        batch.errors.append(error_record(e, stage=STAGE, source_uri=input_uri, run_id=""))
    yield batch


class _CountListed(beam.DoFn):
    """The manifest stage's counters for a batch listed by the launcher."""

    def __init__(self) -> None:
        self.metrics = StageMetrics(STAGE)

    def process(self, item: Source | ErrorRecord) -> Iterator[Source | beam.pvalue.TaggedOutput]:
        if isinstance(item, Source):
            self.metrics.processed.inc()
            yield item
        else:
            self.metrics.failed.inc()
            yield beam.pvalue.TaggedOutput(ERRORS, item)


def _count_duplicates(n: int) -> None:
    # ReadManifest counts a listing as processed before it drops the duplicates.
    if n:
        StageMetrics(STAGE).processed.inc(n)
        Metrics.counter(STAGE, "duplicates").inc(n)


def _count_passed_over(passed_over: dict[str, int]) -> None:
    for reason, n in passed_over.items():
        Metrics.counter(STAGE, passed_over_counter(reason)).inc(n)


class ReadListed(beam.PTransform):
    """A batch listed by the launcher (listed_batches) -> the outputs of ReadManifest
    (sources, errors) and its counters, for that batch's sources and rows only."""

    def __init__(self, batch: ListedBatch, run_id: str) -> None:
        super().__init__()
        self.batch = batch
        self.run_id = run_id

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        errors = [replace(e, run_id=self.run_id) for e in self.batch.errors]
        listed = (
            (pbegin | "Listed" >> beam.Create([*self.batch.sources, *errors]))
            | "Count" >> beam.ParDo(_CountListed())
            .with_outputs(ERRORS, main="sources"))
        _ = (pbegin | "Duplicates" >> beam.Create([self.batch.duplicates])
             | "CountDuplicates" >> beam.Map(_count_duplicates))
        _ = (pbegin | "PassedOver" >> beam.Create([self.batch.passed_over])
             | "CountPassedOver" >> beam.Map(_count_passed_over))
        return {"sources": listed["sources"], ERRORS: listed[ERRORS]}
