"""A real HTTP server on 127.0.0.1 for fetch tests: each path misbehaves in one way.

Loopback only; request loops in the tests are bounded, and the server stops with the
fixture.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Behaviour:
    def __init__(self, video: bytes, other_video: bytes) -> None:
        self.video, self.other_video = video, other_video
        self.hits: dict[str, int] = defaultdict(int)
        self.times: list[tuple[str, float]] = []
        self.lock = threading.Lock()


def make_handler(b: Behaviour):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
                  length: int | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: C901 - one branch per behaviour
            path = self.path.split("?")[0]
            with b.lock:
                b.hits[path] += 1
                n = b.hits[path]
                b.times.append((self.path, time.monotonic()))
            mp4 = {"Content-Type": "video/mp4"}
            if path in ("/ok.mp4", "/same-bytes.mp4", "/rated.mp4"):
                self._send(200, b.video, mp4)
            elif path == "/other.mp4":
                self._send(200, b.other_video, mp4)
            elif path == "/missing.mp4":
                self._send(404, b"not here")
            elif path == "/forbidden.mp4":
                self._send(403, b"no")
            elif path == "/flaky.mp4":  # 500 twice, then a video (its own bytes)
                if n <= 2:
                    self._send(500, b"oops")
                else:
                    self._send(200, b.video + b"\0" * 8, mp4)
            elif path == "/busy.mp4":  # 429 with Retry-After once, then a video
                if n == 1:
                    self._send(429, b"slow down", {"Retry-After": "1"})
                else:
                    self._send(200, b.other_video + b"\0" * 16, mp4)
            elif path == "/slow.mp4":  # headers and a little, then silence
                self.send_response(200)
                self.send_header("Content-Length", str(len(b.video)))
                self.end_headers()
                self.wfile.write(b.video[:1000])
                self.wfile.flush()
                time.sleep(3)
            elif path == "/short.mp4":  # promises more than it sends
                self.send_response(200)
                self.send_header("Content-Length", str(len(b.video)))
                self.end_headers()
                self.wfile.write(b.video[: len(b.video) // 2])
                self.wfile.flush()
                self.close_connection = True
            elif path == "/loop-a":
                self._send(302, headers={"Location": "/loop-b"})
            elif path == "/loop-b":
                self._send(302, headers={"Location": "/loop-a"})
            elif path == "/moved.mp4":
                self._send(301, headers={"Location": "/other.mp4"})
            elif path == "/big.mp4":
                self._send(200, b.video + b.video, mp4)
            elif path == "/big-undeclared.mp4":  # no Content-Length: counted while streaming
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in (b.video, b.video):
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/page.html":
                self._send(200, b"<html><body>not a video</body></html>",
                           {"Content-Type": "text/html"})
            else:
                self._send(404, b"unknown")

    return Handler


class Loopback:
    """A threading HTTP server on 127.0.0.1 with a free port, stopped on exit."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class LoopbackServer(Loopback):
    def __init__(self, video: Path, other_video: Path) -> None:
        self.behaviour = Behaviour(video.read_bytes(), other_video.read_bytes())
        super().__init__(make_handler(self.behaviour))


class Trickler(Loopback):
    """Sends one byte every `every` seconds where a download cannot see it as body:

    - /headers: a status line, then one header byte at a time (the headers never end);
    - /chunk-sizes: complete headers for a chunked body, then the first chunk-size line
      one digit at a time (leading zeros: it never ends);
    - any other path: the status line itself, one byte at a time;
    - a TLS client (its first byte is no request): a TLS record header, then the
      record one byte at a time, so the handshake never ends.

    Each connection stops after `limit` bytes or once the client has gone, so a client
    that waits for ever still finishes the test, only late. `hits` counts the requests.
    """

    def __init__(self, every: float = 0.3, limit: int = 40) -> None:
        self.stop, self.hits = threading.Event(), defaultdict(int)
        stop, hits = self.stop, self.hits

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _trickle(self, head: bytes, byte: bytes) -> None:
                try:
                    self.wfile.write(head)
                    for _ in range(limit):
                        if stop.wait(every):
                            return
                        self.wfile.write(byte)
                except OSError:  # the client gave up: that is the point
                    pass
                self.close_connection = True

            def handle_one_request(self) -> None:
                first = self.rfile.peek(1)[:1]
                if first and not first.isalpha():  # a TLS ClientHello, not a request
                    hits["tls"] += 1
                    self._trickle(b"\x16\x03\x03\x40\x00", b"\x02")  # a record, slowly
                    return
                super().handle_one_request()

            def do_GET(self) -> None:
                hits[self.path] += 1
                if self.path == "/headers":
                    self._trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")
                elif self.path == "/chunk-sizes":
                    self._trickle(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n", b"0")
                else:
                    self._trickle(b"", b"H")

        super().__init__(Handler)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        super().__exit__(*exc)
