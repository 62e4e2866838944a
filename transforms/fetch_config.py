"""What Fetch may do (FetchConfig: schemes, sizes, timeouts, politeness, the work
dir) and how it fails (FetchError); checked before the graph is built.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vidcurate.transforms.core import (
    AddArgument,
    ConfigError,
    StageError,
    check,
    is_local,
    is_remote,
    private_dir,
    private_tmp_dir,
)


@dataclass(frozen=True)
class FetchConfig:
    allow_schemes: tuple[str, ...]
    max_bytes: int
    connect_timeout_s: float
    read_timeout_s: float
    retries: int
    backoff_s: float
    backoff_max_s: float
    rate_per_host: float
    concurrency_per_host: int
    work_dir: str
    keep_downloads: bool
    untrusted: bool
    ytdlp_hosts: tuple[str, ...]
    max_height: int
    download_deadline_s: float = 3600.0
    min_rate: int = 16 * 1024  # bytes per second, after the first read_timeout_s
    user_agent: str = "vidcurate/0.1 (+video dataset curation)"

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("allow-schemes", default="file,http,https,gs,s3",
            help="URI schemes a manifest may name; anything else is refused.")
        add("max-bytes", type=int, default=8 * 1024**3,
            help="Largest download in bytes, enforced while streaming (0: no limit).")
        add("connect-timeout", type=float, default=10.0, help="HTTP connect timeout, s.")
        add("read-timeout", type=float, default=30.0,
            help="HTTP read timeout, s: the longest wait for the next bytes.")
        add("fetch-retries", type=int, default=4,
            help="Retries of a transient failure (connection, timeout, 5xx, 429).")
        add("backoff", type=float, default=1.0,
            help="First retry waits up to this many seconds (exponential, full jitter).")
        add("backoff-max", type=float, default=60.0,
            help="Longest wait between retries, s (also caps Retry-After).")
        add("rate-per-host", type=float, default=2.0,
            help="Requests per second per host, per worker process (0: no limit).")
        add("concurrency-per-host", type=int, default=4,
            help="Simultaneous downloads per host, per worker process.")
        add("work-dir", default=None,
            help="Where downloads go: a local folder (default: a per-run folder in the temp "
            "dir), or a shared store such as gs://bucket/work for distributed runners.")
        add("keep-downloads", action="store_true",
            help="Keep downloaded files in --work-dir after the run.")
        add("untrusted-input", dest="untrusted", action="store_true",
            aliases=("--refuse-private-addresses", "--refuse_private_addresses"),
            help="For manifests made by others: rows may name http(s) URLs only (no local "
            "paths, file:// or buckets), every connection goes to the address that was "
            "checked, and only globally routable addresses are reached (no private, "
            "loopback, link-local, shared 100.64/10 or reserved ones). "
            "--refuse-private-addresses is the old name.")
        add("download-deadline", type=float, default=3600.0,
            help="Longest time one download attempt may take, s, however it trickles.")
        add("min-download-rate", type=int, default=16 * 1024,
            help="Bytes per second a download must average after its first "
            "--read-timeout seconds, or it is stopped (0: no minimum).")
        add("ytdlp-hosts", default="youtube.com,youtu.be,vimeo.com,dailymotion.com,"
            "twitch.tv,tiktok.com,bilibili.com",
            help="Hosts fetched through yt-dlp (the 'sites' extra) instead of plain HTTP.")
        add("max-height", type=int, default=720,
            help="yt-dlp picks the best format up to this height.")

    @classmethod
    def from_options(cls, o: Any, *, run_id: str, output: str, input_is_manifest: bool
                     ) -> FetchConfig:
        check(
            (o.max_bytes >= 0, f"--max-bytes must be >= 0, got {o.max_bytes}"),
            (o.connect_timeout > 0 and o.read_timeout > 0, "timeouts must be > 0"),
            (o.fetch_retries >= 0, f"--fetch-retries must be >= 0, got {o.fetch_retries}"),
            (o.backoff >= 0 and o.backoff_max >= o.backoff,
             "--backoff must be >= 0 and <= --backoff-max"),
            (o.rate_per_host >= 0, f"--rate-per-host must be >= 0, got {o.rate_per_host}"),
            (o.concurrency_per_host >= 1, "--concurrency-per-host must be >= 1"),
            (o.download_deadline > 0, f"--download-deadline must be > 0, got "
             f"{o.download_deadline}"),
            (o.min_download_rate >= 0, f"--min-download-rate must be >= 0, got "
             f"{o.min_download_rate}"),
            (o.max_height >= 144, f"--max-height must be >= 144, got {o.max_height}"),
        )
        schemes = tuple(x.strip().lower() for x in o.allow_schemes.split(",") if x.strip())
        if not schemes:
            raise ConfigError("--allow-schemes is empty")
        if o.untrusted and input_is_manifest:
            # The rows are someone else's: URLs on the web only, never this machine's
            # files or the buckets its credentials can read.
            schemes = tuple(x for x in schemes if x in ("http", "https"))
            if not schemes:
                raise ConfigError("--untrusted-input takes http(s) URLs only, and "
                                  "--allow-schemes allows neither")
        # Downloads go to a folder of this run's own inside --work-dir, the only thing a
        # run removes afterwards (never the work dir itself: it may hold the user's files).
        # The default is this user's own folder in the temp dir (<tmp>/vidcurate-work-<uid>,
        # 0700), never one folder shared by every user of the machine.
        work_dir = o.work_dir or os.path.join(tempfile.gettempdir(),
                                              f"vidcurate-work-{_uid()}")
        if is_local(work_dir):
            work_dir = os.path.abspath(work_dir.removeprefix("file://"))
            _check_work_dir(work_dir, output, o.input)
            private_dir(work_dir, what="--work-dir", strict=o.work_dir is None)
        return cls(
            allow_schemes=schemes,
            max_bytes=o.max_bytes,
            connect_timeout_s=o.connect_timeout,
            read_timeout_s=o.read_timeout,
            retries=o.fetch_retries,
            backoff_s=o.backoff,
            backoff_max_s=o.backoff_max,
            rate_per_host=o.rate_per_host,
            concurrency_per_host=o.concurrency_per_host,
            work_dir=f"{work_dir.rstrip('/')}/run-{run_id}",
            keep_downloads=o.keep_downloads,
            untrusted=o.untrusted,
            download_deadline_s=o.download_deadline,
            min_rate=o.min_download_rate,
            ytdlp_hosts=tuple(h.strip().lower() for h in o.ytdlp_hosts.split(",")
                              if h.strip()),
            max_height=o.max_height,
        )


def _uid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_work_dir(work_dir: str, output: str, input_uri: str) -> None:
    """--work-dir must be apart from the dataset and the inputs: a run writes and then
    removes its download folder there."""
    work = os.path.realpath(work_dir)
    named = []
    if is_local(output):
        named.append(("--output", os.path.realpath(output)))
    if is_local(input_uri):
        source = os.path.realpath(input_uri.removeprefix("file://"))
        if os.path.isdir(source):  # a folder of videos (a file cannot hold the work dir)
            named.append(("--input", source))
    for flag, other in named:
        if _inside(work, other) or _inside(other, work):
            raise ConfigError(f"--work-dir {work_dir!r} must not be, contain or lie inside "
                              f"{flag} ({other}): choose a separate folder")


STAGE = "fetch"


class FetchError(StageError):
    """A source that could not be fetched; `retryable` failures were retried first."""

    def __init__(self, error_type: str, message: str, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(error_type, message)
        self.retryable = retryable
        self.retry_after = retry_after


# ---------------------------------------------------------------- checks
def check_scheme(uri: str, cfg: FetchConfig) -> str:
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else "file"
    if scheme not in cfg.allow_schemes:
        if cfg.untrusted:
            what = "a local path" if scheme == "file" else f"scheme {scheme!r}"
            raise FetchError("scheme_not_allowed", f"{what} is refused for untrusted input: "
                             "manifest rows may name http(s) URLs only (--untrusted-input)")
        raise FetchError("scheme_not_allowed", f"scheme {scheme!r} is not allowed "
                         f"(--allow-schemes {','.join(cfg.allow_schemes)})")
    return scheme


def local_work_dir(cfg: FetchConfig) -> str:
    """Where downloads land first: the run's folder in the work dir, or a local folder
    of this user's when the work dir is remote."""
    if is_remote(cfg.work_dir):
        return os.path.join(private_tmp_dir("vidcurate-work"),
                            hashlib.sha256(cfg.work_dir.encode()).hexdigest()[:12])
    return cfg.work_dir.removeprefix("file://")


def run_folder(cfg: FetchConfig) -> str:
    """The run's own local folder (downloads, listing, frame samples), created private
    to this user (0700) or checked to be so: what is read back from it is trusted."""
    return private_dir(local_work_dir(cfg), what="run folder")


def work_path(cfg: FetchConfig, video_id: str, suffix: str = "") -> str:
    return os.path.join(run_folder(cfg), f"{video_id}{suffix}")
