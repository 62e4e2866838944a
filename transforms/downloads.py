"""HTTP downloads: streamed, hashed while they stream, size-, time- and pace-limited
(every byte of the exchange, headers and chunk framing included), retried with backoff,
polite per host, and (--untrusted-input) connecting only to the globally routable
address that was checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import ipaddress
import socket
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from vidcurate.transforms.fetch_config import FetchConfig, FetchError, check_scheme
from vidcurate.transforms.retry import backoff_s, retry_after_s

_CHUNK = 1 << 20


_MAX_REDIRECTS = 10


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


_V6 = ipaddress.IPv6Network
# IPv6 forms that carry an IPv4 address the network delivers to (or through): judged
# by that IPv4 address. NAT64's well-known prefix is how DNS64 networks reach IPv4-only
# hosts, so a public IPv4 inside it passes; a private one would be translated to it.
_SIIT = _V6("::ffff:0:0:0/96")  # IPv4-translated (RFC 7915): ::ffff:0:a.b.c.d
_NAT64 = _V6("64:ff9b::/96")  # RFC 6052: the last 32 bits
# Global unicast is 2000::/3; everything else in IPv6 (site-local fec0::/10, IPv4-
# compatible ::a.b.c.d, NAT64's local-use 64:ff9b:1::/48, whose format the local
# network chooses, ULA, link-local, multicast, unassigned) is refused.
_GLOBAL_UNICAST = _V6("2000::/3")
# Inside 2000::/3 but refused whatever Python's is_global says in this version:
# Teredo (RFC 4380: tunnels through a relay to an IPv4 client the address encodes, and
# obsolete), 6bone (returned, RFC 3701), documentation (RFC 3849, RFC 9637).
_REFUSED_UNICAST = (_V6("2001::/32"), _V6("3ffe::/16"), _V6("2001:db8::/32"),
                    _V6("3fff::/20"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, SIIT-translated, NAT64
    (well-known prefix) or 6to4 (2002:a.b.c.d::/48, RFC 3056: relayed to that host)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _SIIT or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared (100.64/10),
    reserved, documentation, multicast or unspecified; an IPv6 address that carries an
    IPv4 one (mapped, SIIT, NAT64, 6to4) is judged as that IPv4 address, and deprecated
    IPv6 forms (IPv4-compatible, site-local, Teredo, 6bone) are refused."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is None:
            return (ip in _GLOBAL_UNICAST and ip.is_global
                    and not any(ip in net for net in _REFUSED_UNICAST))
        ip = embedded
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


# ---------------------------------------------------------------- pace of an attempt
# What the server was slow at, for the error message.
_CONNECTING = "connecting and the TLS handshake"
_HEADERS = "the status line and response headers"
_BODY = "the body (chunk framing included)"
# A read may wait this much past the deadline, so that the clock reads "past" when the
# socket's timeout fires (timers do not fire early, but the clock is read after).
_LATE_S = 0.05


class AttemptClock:
    """One download attempt's time and bytes, shared by its session's connections.

    Every socket read of the attempt (status line, headers, chunk sizes, body, a proxy's
    CONNECT answer) waits at most until --download-deadline, and every read that gets
    bytes checks --min-download-rate, both counted from the attempt's first request: a
    server trickling header bytes or chunk-size digits inside --read-timeout is stopped
    like one trickling its body. Connecting and the TLS handshake get at most the time
    left. A silence of --read-timeout stays a (retried) read timeout.
    """

    def __init__(self, cfg: FetchConfig) -> None:
        self.cfg = cfg
        self.restart()

    def restart(self) -> None:
        self.started, self.received, self.phase = time.monotonic(), 0, _CONNECTING

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check(self) -> None:
        """Raise FetchError 'too_slow' past the deadline or under the minimum rate."""
        check_pace(self.received, self.elapsed(), self.cfg, during=self.phase)

    def past_deadline(self) -> FetchError | None:
        """The deadline error once the deadline has passed (for timeouts it caused)."""
        elapsed = self.elapsed()
        if elapsed <= self.cfg.download_deadline_s:
            return None
        return _deadline_error(self.received, elapsed, self.cfg, self.phase)

    def wait_s(self, longest: float) -> float:
        """How long the next socket operation may block: `longest`, or less where the
        deadline comes sooner; FetchError once it has passed."""
        left = self.cfg.download_deadline_s - self.elapsed()
        if left <= 0:
            raise _deadline_error(self.received, self.elapsed(), self.cfg, self.phase)
        return min(longest, left + _LATE_S)


class _PacedReader(io.RawIOBase):
    """A response's socket file: each read blocks at most until the attempt's deadline
    (--read-timeout when that is sooner) and counts its bytes toward the pace."""

    def __init__(self, sock: socket.socket, clock: AttemptClock) -> None:
        super().__init__()
        self._sock, self._clock = sock, clock
        # The socket's own file underneath: it keeps the socket open while the response
        # reads, as http.client expects of sock.makefile().
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        clock = self._clock
        self._sock.settimeout(clock.wait_s(clock.cfg.read_timeout_s))
        try:
            n = self._raw.readinto(buffer)
        except TimeoutError as e:
            if late := clock.past_deadline():
                raise late from e
            raise  # --read-timeout of silence: urllib3 makes it a ReadTimeoutError
        if n:
            clock.received += n
            clock.check()
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _PacedSocket:
    """What http.client's response asks of its socket: a file to read from."""

    def __init__(self, sock: socket.socket, clock: AttemptClock) -> None:
        self._sock, self._clock = sock, clock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_PacedReader(self._sock, self._clock))


def _connection_classes(clock: AttemptClock, checked: bool) -> tuple[type, type]:
    """urllib3 connection classes whose every read and whose connect and TLS handshake
    are bounded by the attempt's clock; with `checked` (untrusted input) they also
    resolve the host themselves, refuse it unless public, and connect to exactly the
    address that was checked (a second lookup could answer 127.0.0.1: DNS rebinding).
    TLS still verifies the host name."""
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class PacedResponse(http.client.HTTPResponse):
        def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            clock.phase = _HEADERS
            super().__init__(_PacedSocket(sock, clock), *args, **kwargs)  # type: ignore[arg-type]

    class Paced:
        response_class = PacedResponse
        timeout: Any

        def _new_conn(self):  # noqa: ANN202 - urllib3's own signature
            clock.phase = _CONNECTING
            given = self.timeout
            longest = given if isinstance(given, (int, float)) else float("inf")
            self.timeout = clock.wait_s(longest)
            try:
                sock = super()._new_conn()  # type: ignore[misc]
            finally:
                self.timeout = given
            # The TLS handshake that follows waits this long at most, all told (Python's
            # ssl module keeps one deadline for the whole handshake).
            sock.settimeout(clock.wait_s(longest))
            return sock

    class Checked:
        _dns_host: str

        def _new_conn(self):  # noqa: ANN202 - urllib3's own signature
            name = self._dns_host
            self._dns_host = public_address(name.rstrip("."))
            try:
                return super()._new_conn()  # type: ignore[misc]
            finally:
                self._dns_host = name  # Host header and TLS server name stay the name

    if checked:
        class CheckedHTTP(Checked, Paced, HTTPConnection):
            pass

        class CheckedHTTPS(Checked, Paced, HTTPSConnection):
            pass

        return CheckedHTTP, CheckedHTTPS

    class PacedHTTP(Paced, HTTPConnection):
        pass

    class PacedHTTPS(Paced, HTTPSConnection):
        pass

    return PacedHTTP, PacedHTTPS


def http_session(cfg: FetchConfig, clock: AttemptClock) -> Any:
    """A requests session whose connections keep to the clock's deadline and pace
    (direct or through a proxy); for untrusted input, one whose connections go only to
    the public address each host was checked to have (no proxies from the environment:
    the proxy would resolve the name itself)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3 import ProxyManager
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    session = requests.Session()
    session.headers["User-Agent"] = cfg.user_agent
    connection_http, connection_https = _connection_classes(clock, checked=cfg.untrusted)

    class PacedHTTPPool(HTTPConnectionPool):
        ConnectionCls = connection_http

    class PacedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = connection_https

    pools = {"http": PacedHTTPPool, "https": PacedHTTPSPool}

    class PacedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(pools)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if isinstance(manager, ProxyManager):  # not SOCKS: it has its own connections
                manager.pool_classes_by_scheme = dict(pools)
            return manager

    if cfg.untrusted:
        session.trust_env = False
    adapter = PacedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# ---------------------------------------------------------------- http
@dataclasses.dataclass
class Download:
    path: str
    bytes: int
    sha256: str
    attempts: int
    final_url: str
    content_type: str | None


def _http_once(session: Any, url: str, dest: str, cfg: FetchConfig,
               clock: AttemptClock) -> Download:
    """One attempt: follow redirects by hand (each hop checked), stream to dest; the
    deadline and the minimum rate count from here, over every hop (the clock)."""
    import requests

    clock.restart()
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
            if late := clock.past_deadline():  # a connect or handshake cut short by it
                raise late from e
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
            return _stream_body(response, url, dest, cfg, clock)
    raise FetchError("redirect_loop", f"more than {_MAX_REDIRECTS} redirects from {seen[0]}")


def _stream_body(response: Any, url: str, dest: str, cfg: FetchConfig,
                 clock: AttemptClock) -> Download:
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    clock.phase = _BODY

    declared = response.headers.get("Content-Length")
    expected = int(declared) if declared and declared.isdigit() else None
    if cfg.max_bytes and expected is not None and expected > cfg.max_bytes:
        raise FetchError("too_large", f"{expected} bytes declared, over --max-bytes "
                         f"{cfg.max_bytes}")
    digest, size = hashlib.sha256(), 0
    try:
        with open(dest, "wb") as f:
            # read1: whatever has arrived (at most a chunk). The deadline and the rate are
            # checked at every socket read underneath (the clock), chunk sizes included.
            # decode_content=False: count and hash the bytes as sent.
            while chunk := response.raw.read1(_CHUNK, decode_content=False):
                size += len(chunk)
                if cfg.max_bytes and size > cfg.max_bytes:
                    raise FetchError("too_large", f"body exceeded --max-bytes {cfg.max_bytes}")
                digest.update(chunk)
                f.write(chunk)
    except (ReadTimeoutError, TimeoutError) as e:
        if late := clock.past_deadline():
            raise late from e
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


def _deadline_error(size: int, elapsed_s: float, cfg: FetchConfig, during: str
                    ) -> FetchError:
    return FetchError("too_slow", f"{size} bytes in {elapsed_s:.1f} s: over "
                      f"--download-deadline {cfg.download_deadline_s:g} s, during {during}")


def check_pace(size: int, elapsed_s: float, cfg: FetchConfig, during: str = _BODY) -> None:
    """Stop a download past its deadline, or slower than the minimum rate once it had
    --read-timeout seconds to get going (not retried: it would hold the worker again).
    `size` counts every byte received since the attempt began, headers included."""
    if elapsed_s > cfg.download_deadline_s:
        raise _deadline_error(size, elapsed_s, cfg, during)
    if cfg.min_rate and elapsed_s > cfg.read_timeout_s and size < cfg.min_rate * elapsed_s:
        raise FetchError("too_slow", f"{size} bytes in {elapsed_s:.1f} s "
                         f"({size / elapsed_s:.0f} B/s), under --min-download-rate "
                         f"{cfg.min_rate} B/s, during {during}")


def download_http(url: str, dest: str, cfg: FetchConfig, limiter: HostLimiter,
                  on_retry: Any = None) -> Download:
    """Download with retries; raises FetchError (retryable ones after the last try)."""

    host = (urlsplit(url).hostname or "").lower()
    clock = AttemptClock(cfg)
    session = http_session(cfg, clock)
    attempts = cfg.retries + 1
    try:
        for attempt in range(1, attempts + 1):
            try:
                with limiter.slot(host):
                    limiter.wait_turn(host)
                    result = _http_once(session, url, dest, cfg, clock)
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
