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
- Downloaded files are named after the video id (never after the URL) and removed once
  the video's row is written, unless --keep-downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import Fetched, Source
from vidcurate.transforms.core import (
    AddArgument,
    ConfigError,
    StageError,
    check,
    is_local,
    is_remote,
)
from vidcurate.transforms.errors import ERRORS, SKIPPED, StageMetrics, guarded
from vidcurate.transforms.media.limits import TooLarge
from vidcurate.transforms.media.storage import file_digest, forget, publish
from vidcurate.transforms.probe import Skip
from vidcurate.transforms.retry import backoff_s, retry_after_s


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
        work_dir = o.work_dir or os.path.join(tempfile.gettempdir(), "vidcurate-work")
        if is_local(work_dir):
            work_dir = os.path.abspath(work_dir.removeprefix("file://"))
            _check_work_dir(work_dir, output, o.input)
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
_CHUNK = 1 << 20
_MAX_REDIRECTS = 10


class FetchError(StageError):
    """A source that could not be fetched; `retryable` failures were retried first."""

    def __init__(self, error_type: str, message: str, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(error_type, message)
        self.retryable = retryable
        self.retry_after = retry_after


# ---------------------------------------------------------------- politeness per host
class HostLimiter:
    """Token bucket (rate per second, burst 1) plus a concurrency cap, per host."""

    def __init__(self, rate: float, concurrency: int) -> None:
        self.rate, self.concurrency = rate, concurrency
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._slots.setdefault(host, threading.BoundedSemaphore(self.concurrency))

    def wait_turn(self, host: str) -> None:
        """Block until this host may get its next request."""
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next.get(host, now))
            self._next[host] = at + 1.0 / self.rate
        if at > now:
            time.sleep(at - now)


_LIMITERS: dict[tuple[float, int], HostLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(cfg: FetchConfig) -> HostLimiter:
    """One limiter per worker process and settings, shared by every thread there."""
    key = (cfg.rate_per_host, cfg.concurrency_per_host)
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(key, HostLimiter(*key))


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


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared (100.64/10),
    reserved, documentation, multicast or unspecified; IPv4-mapped IPv6 as its IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def public_address(host: str) -> str:
    """Resolve host once and return the address to connect to; every address it
    resolves to must be public (FetchError 'refused_address' otherwise), so that a
    manifest cannot make workers reach internal services."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as e:
            raise FetchError("dns_failed", f"cannot resolve {host!r}: {e}",
                             retryable=True) from e
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise FetchError("dns_failed", f"{host!r} resolves to no address", retryable=True)
    for ip in addresses:
        if not is_public(ip):
            raise FetchError("refused_address", f"{host} resolves to {ip}, not a public "
                             "address (--untrusted-input)")
    return str(addresses[0])


def check_address(url: str) -> None:
    """Refuse a URL whose host resolves to an address that is not public."""
    public_address(urlsplit(url).hostname or "")


def _checked_connections() -> tuple[type, type]:
    """urllib3 connection classes that resolve the host themselves, refuse it unless
    public, and connect to exactly the address that was checked (a second lookup could
    answer 127.0.0.1: DNS rebinding). TLS still verifies the host name."""
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class Checked:
        _dns_host: str

        def _new_conn(self):  # noqa: ANN202 - urllib3's own signature
            name = self._dns_host
            self._dns_host = public_address(name.rstrip("."))
            try:
                return super()._new_conn()  # type: ignore[misc]
            finally:
                self._dns_host = name  # Host header and TLS server name stay the name

    class CheckedHTTP(Checked, HTTPConnection):
        pass

    class CheckedHTTPS(Checked, HTTPSConnection):
        pass

    return CheckedHTTP, CheckedHTTPS


def http_session(cfg: FetchConfig) -> Any:
    """A requests session; for untrusted input, one whose connections go only to the
    public address each host was checked to have (no proxies from the environment: the
    proxy would resolve the name itself)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    session = requests.Session()
    session.headers["User-Agent"] = cfg.user_agent
    if not cfg.untrusted:
        return session
    checked_http, checked_https = _checked_connections()

    class CheckedHTTPPool(HTTPConnectionPool):
        ConnectionCls = checked_http

    class CheckedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = checked_https

    class CheckedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": CheckedHTTPPool,
                                                       "https": CheckedHTTPSPool}

    session.trust_env = False
    adapter = CheckedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def is_video_site(url: str, cfg: FetchConfig) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in cfg.ytdlp_hosts)


def local_work_dir(cfg: FetchConfig) -> str:
    """Where downloads land first: the work dir, or a local folder when it is remote."""
    if is_remote(cfg.work_dir):
        return os.path.join(tempfile.gettempdir(), "vidcurate-work",
                            hashlib.sha256(cfg.work_dir.encode()).hexdigest()[:12])
    return cfg.work_dir


def work_path(cfg: FetchConfig, video_id: str, suffix: str = "") -> str:
    folder = local_work_dir(cfg)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{video_id}{suffix}")


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


# ---------------------------------------------------------------- http
@dataclasses.dataclass
class Download:
    path: str
    bytes: int
    sha256: str
    attempts: int
    final_url: str
    content_type: str | None


def _http_once(session: Any, url: str, dest: str, cfg: FetchConfig) -> Download:
    """One attempt: follow redirects by hand (each hop checked), stream to dest."""
    import requests

    seen = []
    for _ in range(_MAX_REDIRECTS + 1):
        # Untrusted input: the session's connections check each host's address as they
        # connect (http_session), redirects included.
        if url in seen:
            raise FetchError("redirect_loop", f"redirect loop: {' -> '.join(seen + [url])}")
        seen.append(url)
        try:
            response = session.get(url, stream=True, allow_redirects=False,
                                   timeout=(cfg.connect_timeout_s, cfg.read_timeout_s))
        except (requests.ConnectionError, requests.Timeout) as e:
            raise FetchError("connection_failed", f"{type(e).__name__}: {e}",
                             retryable=True) from e
        except requests.RequestException as e:
            raise FetchError("bad_request", f"{type(e).__name__}: {e}") from e
        with response:
            if response.is_redirect:
                location = response.headers.get("Location")
                if not location:
                    raise FetchError("http_error", f"HTTP {response.status_code} without "
                                     "a Location")
                url = urljoin(url, location)
                check_scheme(url, cfg)
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                raise FetchError(f"http_{status}", f"HTTP {status} from {url}",
                                 retryable=True,
                                 retry_after=retry_after_s(response.headers.get("Retry-After")))
            if status >= 400:
                raise FetchError(f"http_{status}", f"HTTP {status} from {url}")
            return _stream_body(response, url, dest, cfg)
    raise FetchError("redirect_loop", f"more than {_MAX_REDIRECTS} redirects from {seen[0]}")


def _stream_body(response: Any, url: str, dest: str, cfg: FetchConfig) -> Download:
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    declared = response.headers.get("Content-Length")
    expected = int(declared) if declared and declared.isdigit() else None
    if cfg.max_bytes and expected is not None and expected > cfg.max_bytes:
        raise FetchError("too_large", f"{expected} bytes declared, over --max-bytes "
                         f"{cfg.max_bytes}")
    digest, size = hashlib.sha256(), 0
    start = time.monotonic()
    try:
        with open(dest, "wb") as f:
            # read1: whatever has arrived (at most a chunk), so that a server trickling a
            # byte at a time meets the deadline and rate checks between reads.
            # decode_content=False: count and hash the bytes as sent.
            while chunk := response.raw.read1(_CHUNK, decode_content=False):
                size += len(chunk)
                if cfg.max_bytes and size > cfg.max_bytes:
                    raise FetchError("too_large", f"body exceeded --max-bytes {cfg.max_bytes}")
                digest.update(chunk)
                f.write(chunk)
                check_pace(size, time.monotonic() - start, cfg)
    except (ReadTimeoutError, TimeoutError) as e:
        raise FetchError("read_timeout", f"read timed out after {size} bytes "
                         f"({cfg.read_timeout_s:g} s without data)", retryable=True) from e
    except ProtocolError as e:  # urllib3 wraps IncompleteRead / a connection closed early
        raise FetchError("truncated", f"body ended after {size} of {expected} bytes",
                         retryable=True) from e
    except OSError as e:
        raise FetchError("connection_failed", f"{type(e).__name__}: {e}",
                         retryable=True) from e
    if expected is not None and size != expected:
        raise FetchError("truncated", f"body ended after {size} of {expected} bytes",
                         retryable=True)
    return Download(dest, size, digest.hexdigest(), 1, url,
                    response.headers.get("Content-Type"))


def check_pace(size: int, elapsed_s: float, cfg: FetchConfig) -> None:
    """Stop a download past its deadline, or slower than the minimum rate once it had
    --read-timeout seconds to get going (not retried: it would hold the worker again)."""
    if elapsed_s > cfg.download_deadline_s:
        raise FetchError("too_slow", f"{size} bytes in {elapsed_s:.0f} s: over "
                         f"--download-deadline {cfg.download_deadline_s:g} s")
    if cfg.min_rate and elapsed_s > cfg.read_timeout_s and size < cfg.min_rate * elapsed_s:
        raise FetchError("too_slow", f"{size} bytes in {elapsed_s:.1f} s "
                         f"({size / elapsed_s:.0f} B/s), under --min-download-rate "
                         f"{cfg.min_rate} B/s")


def download_http(url: str, dest: str, cfg: FetchConfig, limiter: HostLimiter,
                  on_retry: Any = None) -> Download:
    """Download with retries; raises FetchError (retryable ones after the last try)."""

    host = (urlsplit(url).hostname or "").lower()
    session = http_session(cfg)
    attempts = cfg.retries + 1
    try:
        for attempt in range(1, attempts + 1):
            try:
                with limiter.slot(host):
                    limiter.wait_turn(host)
                    result = _http_once(session, url, dest, cfg)
                result.attempts = attempt
                return result
            except FetchError as e:
                if not e.retryable or attempt == attempts:
                    if e.retryable:
                        e.args = (f"{e.args[0]} (gave up after {attempt} attempts)",)
                    raise
                if on_retry:
                    on_retry(e)
                wait = e.retry_after if e.retry_after is not None else backoff_s(attempt, cfg)
                time.sleep(min(wait, cfg.backoff_max_s))
    finally:
        session.close()
    raise AssertionError("unreachable")


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


def fetch_ytdlp(url: str, video_id: str, cfg: FetchConfig) -> tuple[Download, dict[str, Any]]:
    """A video site through yt-dlp (its Python API: no shell); returns the file and the
    site's metadata."""
    try:
        import yt_dlp
    except ModuleNotFoundError as e:
        raise FetchError("ytdlp_missing", "video sites need yt-dlp: pip install "
                         "'vidcurate[sites]' (or yt-dlp)") from e
    h = cfg.max_height
    opts = {
        "format": f"bv*[height<={h}]+ba/b[height<={h}]/bv*+ba/b",
        "outtmpl": work_path(cfg, video_id, ".ytdlp.%(ext)s"),
        "merge_output_format": "mp4",
        "quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True,
        "writesubtitles": True, "subtitleslangs": ["en", "en.*"],
        "socket_timeout": cfg.read_timeout_s, "retries": cfg.retries,
        "max_filesize": cfg.max_bytes or None,
        "http_headers": {"User-Agent": cfg.user_agent},
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
            path = info.get("filepath") or (info.get("requested_downloads") or [{}])[0].get(
                "filepath") or ydl.prepare_filename(info)
    except Exception as e:  # yt-dlp raises DownloadError for refusals, geo-blocks, 404s
        message = str(e).replace("\x1b[0;31m", "").replace("\x1b[0m", "")
        raise FetchError("site_refused", f"yt-dlp: {message}") from e
    if not path or not os.path.isfile(path):
        raise FetchError("site_refused", "yt-dlp reported no downloaded file")
    size, sha = file_digest(path)
    meta = {k: info.get(k) for k in ("title", "description", "tags", "uploader", "license",
                                     "chapters", "webpage_url", "duration", "extractor")
            if info.get(k) not in (None, [], "")}
    subtitles = collect_subtitles(info.get("requested_subtitles"))
    if subtitles:
        meta["subtitles"] = subtitles
    return Download(path, size, sha, 1, info.get("webpage_url") or url, None), meta


def collect_subtitles(requested: dict[str, Any] | None) -> dict[str, str]:
    """Subtitle text by language from yt-dlp's requested_subtitles; the files it wrote
    next to the download are read and removed."""
    found: dict[str, str] = {}
    for lang, sub in (requested or {}).items():
        path = (sub or {}).get("filepath")
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                found[lang] = f.read()
            os.remove(path)
        elif (sub or {}).get("data"):
            found[lang] = str(sub["data"])
    return found


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


def _order(fetched: Fetched) -> tuple[str, str]:
    from vidcurate.transforms.manifest import _origin_order

    base, row = _origin_order(fetched.source)
    return base, f"{row:012d}{fetched.source.uri}"


class _FirstByContent(beam.DoFn):
    """Same bytes under several uris: the first (manifest order) goes on, the others
    are recorded as skipped duplicates of it."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.duplicates = Metrics.counter(STAGE, "duplicate_content")

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


class Fetch(beam.PTransform):
    """Source -> Fetched (main), Skip for duplicate content ('skipped'), errors."""

    def __init__(self, cfg: FetchConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.run_id = cfg, run_id

    def expand(self, sources: beam.PCollection) -> dict[str, beam.PCollection]:
        got = (
            sources
            | "Get" >> beam.ParDo(_FetchFn(self.cfg, self.run_id))
            .with_outputs(ERRORS, main="fetched"))
        grouped = (
            got["fetched"]
            | "BySha" >> beam.Map(lambda f: (f.sha256, f))
            | "SameContent" >> beam.GroupByKey()
        )
        unique = (
            grouped
            | "FirstCopy" >> beam.ParDo(_FirstByContent(self.cfg.keep_downloads))
            .with_outputs(SKIPPED, main="unique"))
        return {"fetched": unique["unique"], SKIPPED: unique[SKIPPED], ERRORS: got[ERRORS]}
