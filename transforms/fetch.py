"""Fetch: materialise every source as a local file, safely, with retries and limits.

- Local paths and file:// are used in place (never copied); so are gs://, s3:// and
  other Beam FileSystems objects (hashed by one streamed read; stages copy them to a
  per-worker cache when they need a local file); http(s) is streamed with `requests`;
  video sites (hosts in --ytdlp-hosts) go through yt-dlp, an optional extra.
- Downloads go to --work-dir. When that is a shared store (gs://bucket/work), each
  download is staged there, so that any worker can read it after a shuffle.
- Every byte is counted and hashed while it streams; --max-bytes stops a download at
  once; a body shorter than its Content-Length is retried, then reported.
- Transient failures (connection errors, timeouts, 5xx, 429 with its Retry-After) are
  retried with exponential backoff and jitter; permanent ones (404, 403, unsupported
  scheme, redirect loop, too large) are reported at once.
- Per-host politeness: a token bucket (requests per second) and a cap on concurrent
  downloads per host, shared by all threads of a worker process.
- Downloaded files are named after the video id (never after the URL) and removed by
  RemoveDownloads once the video's row is made, unless --keep-downloads.

The work is split by job: fetch_config (options, FetchError), downloads (HTTP and the
address guard), video_sites (yt-dlp); content_dedup and RemoveDownloads are their own
steps in the DAG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import Fetched, Source, VideoRow
from vidcurate.transforms.core import (
    is_remote,
)
from vidcurate.transforms.downloads import HostLimiter, check_address, download_http, limiter_for
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.fetch_config import (
    STAGE,
    FetchConfig,
    FetchError,
    check_scheme,
    work_path,
)
from vidcurate.transforms.media.decoding import clear_sample, sample_folder
from vidcurate.transforms.media.limits import TooLarge
from vidcurate.transforms.media.storage import file_digest, forget, publish
from vidcurate.transforms.video_sites import fetch_ytdlp, is_video_site


def stage(local: str, cfg: FetchConfig, video_id: str) -> str:
    """Put a download where every worker can read it (a remote --work-dir)."""
    if not is_remote(cfg.work_dir):
        return local
    ext = os.path.splitext(local)[1] if not local.endswith(".download") else ""
    uri = f"{cfg.work_dir.rstrip('/')}/{video_id}{ext}"
    try:
        publish(local, uri)
    except Exception as e:
        raise FetchError("stage_failed", f"cannot stage to {uri}: {type(e).__name__}: "
                         f"{e}", retryable=False) from e
    return uri


# ---------------------------------------------------------------- other sources
def hash_filesystem(uri: str, cfg: FetchConfig) -> tuple[int, str]:
    """gs://, s3://, ... through Beam FileSystems: read once, streamed, to size and hash
    it. The object is not copied: workers read it where it is (media.localise)."""
    try:
        return file_digest(uri, cfg.max_bytes)
    except TooLarge as e:
        raise FetchError("too_large", str(e)) from e
    except Exception as e:
        kind = "not_found" if "not found" in str(e).lower() or isinstance(
            e, FileNotFoundError) else "fetch_failed"
        raise FetchError(kind, f"{type(e).__name__}: {e}") from e


# ---------------------------------------------------------------- one source
def fetch_source(source: Source, cfg: FetchConfig, limiter: HostLimiter,
                 on_retry: Any = None) -> Fetched:
    """Materialise one source; raises FetchError / MediaError."""
    scheme = check_scheme(source.uri, cfg)
    if scheme == "file":
        path = source.uri.removeprefix("file://")
        if not os.path.exists(path):
            raise FetchError("not_found", f"no such file: {path}")
        if not os.path.isfile(path):
            raise FetchError("not_a_file", f"not a regular file: {path}")
        size, sha = file_digest(path)
        if size == 0:
            raise FetchError("empty_file", "the file is empty (0 bytes)")
        return Fetched(source, path, size, sha, downloaded=False)
    if scheme not in ("http", "https"):
        size, sha = hash_filesystem(source.uri, cfg)
        if size == 0:
            raise FetchError("empty_file", "the object is empty (0 bytes)")
        return Fetched(source, source.uri, size, sha, downloaded=False)
    dest = work_path(cfg, source.video_id, ".download")
    meta: dict[str, Any] = {}
    try:
        if is_video_site(source.uri, cfg):
            if cfg.untrusted:
                check_address(source.uri)
            got, meta = fetch_ytdlp(source.uri, source.video_id, cfg)
        else:
            got = download_http(source.uri, dest, cfg, limiter, on_retry)
        if got.bytes == 0:
            raise FetchError("empty_body", "the download is empty (0 bytes)")
        got.path = stage(got.path, cfg, source.video_id)
    except BaseException:
        if os.path.exists(dest):
            os.remove(dest)
        raise
    enriched = source
    if meta:
        enriched = dataclasses.replace(
            source,
            title=source.title or meta.get("title"),
            description=source.description or meta.get("description"),
            license=source.license or meta.get("license"),
            metadata={**{f"site_{k}": v for k, v in meta.items()}, **source.metadata})
    return Fetched(enriched, got.path, got.bytes, got.sha256, downloaded=True,
                   attempts=got.attempts, final_url=got.final_url,
                   content_type=got.content_type)


def remove_download(fetched: Fetched | None) -> None:
    """Delete what Fetch made for this video (a local file or a staged object), and this
    worker's cached copy of a remote one."""
    if fetched is None:
        return
    forget(fetched.local_path)
    if not fetched.downloaded:
        return
    if is_remote(fetched.local_path):
        with contextlib.suppress(Exception):
            FileSystems.delete([fetched.local_path])
    elif os.path.exists(fetched.local_path):
        os.remove(fetched.local_path)


# ---------------------------------------------------------------- Beam
class _FetchFn(beam.DoFn):
    def __init__(self, cfg: FetchConfig, run_id: str) -> None:
        self.cfg, self.run_id = cfg, run_id
        self.metrics = StageMetrics(STAGE)
        self.retries = Metrics.counter(STAGE, "retries")
        self.bytes = Metrics.counter(STAGE, "bytes")
        self.downloads = Metrics.counter(STAGE, "downloads")

    def process(self, source: Source) -> Iterator[Fetched | beam.pvalue.TaggedOutput]:
        yield from guarded(self.metrics, self._fetch, source, source_uri=source.uri,
                           run_id=self.run_id, video_id=source.video_id)

    def _fetch(self, source: Source) -> list[Fetched]:
        fetched = fetch_source(source, self.cfg, limiter_for(self.cfg),
                               on_retry=lambda e: self.retries.inc())
        self.bytes.inc(fetched.bytes)
        if fetched.downloaded:
            self.downloads.inc()
        return [fetched]


class Fetch(beam.PTransform):
    """Source -> Fetched (main) and errors."""

    def __init__(self, cfg: FetchConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.run_id = cfg, run_id

    def expand(self, sources: beam.PCollection) -> dict[str, beam.PCollection]:
        return (
            sources
            | "Get" >> beam.ParDo(_FetchFn(self.cfg, self.run_id))
            .with_outputs(ERRORS, main="fetched"))


class _RemoveDownloadFn(beam.DoFn):
    def __init__(self, remove_downloads: bool, sample_root: str | None) -> None:
        self.remove_downloads, self.sample_root = remove_downloads, sample_root
        self.removed = Metrics.counter(STAGE, "downloads_removed")

    def process(self, row: VideoRow) -> Iterator[VideoRow]:
        if self.sample_root is not None:
            # The detect decode's frame sample (scratch JPEGs): only our own folder, by
            # the video id's hash, and only our own file names in it.
            clear_sample(sample_folder(self.sample_root, row.source.video_id))
        if self.remove_downloads:
            if row.fetched is not None and row.fetched.downloaded:
                self.removed.inc()
            remove_download(row.fetched)
        yield row


class RemoveDownloads(beam.PTransform):
    """VideoRow -> the same rows, once each video's download (unless kept) and its frame
    sample under `sample_root` are deleted: a video's row exists only after every stage
    that reads its file or its sample has reported."""

    def __init__(self, remove_downloads: bool = True, sample_root: str | None = None) -> None:
        super().__init__()
        self.remove_downloads, self.sample_root = remove_downloads, sample_root

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return rows | "Remove" >> beam.ParDo(
            _RemoveDownloadFn(self.remove_downloads, self.sample_root))
