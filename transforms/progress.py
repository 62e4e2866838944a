"""Live progress of a run: per-process tallies of the stage counters, in small files.

Beam's DirectRunner reports metrics only when the pipeline is done. To show progress
while it runs, every stage counter also adds to a tally in its worker process, flushed
at most twice a second to <dir>/<pid>.json (written to a temporary name and renamed).
The launcher sums the files. The directory comes from the VIDCURATE_PROGRESS_DIR
environment variable, which the launcher sets and worker processes inherit; without it
(remote runners) nothing is written.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

ENV = "VIDCURATE_PROGRESS_DIR"
FLUSH_S = 0.5

_lock = threading.Lock()
_tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
_last_flush = 0.0


def add(stage: str, name: str, n: int = 1) -> None:
    """Count n under stage/name in this process; flushes now and then."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    global _last_flush
    with _lock:
        _tally[stage][name] += n
        now = time.monotonic()
        if now - _last_flush < FLUSH_S:
            return
        _last_flush = now
        snapshot = json.dumps({s: dict(c) for s, c in _tally.items()})
    _write(folder, snapshot)


def reset() -> None:
    """Start counting afresh (a launcher that runs several pipelines in one process)."""
    global _last_flush
    with _lock:
        _tally.clear()
        _last_flush = 0.0


def flush() -> None:
    folder = os.environ.get(ENV)
    if folder:
        with _lock:
            snapshot = json.dumps({s: dict(c) for s, c in _tally.items()})
        _write(folder, snapshot)


def _write(folder: str, snapshot: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{os.getpid()}.json")
        tmp = f"{path}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as f:
            f.write(snapshot)
        os.replace(tmp, path)
    except OSError:
        pass  # progress is a convenience: never fail a run for it


def read(folder: str) -> dict[str, dict[str, int]]:
    """The tallies of every process, summed."""
    total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in glob.glob(os.path.join(glob.escape(folder), "*.json")):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue  # being replaced right now: the next poll reads it
        for stage, counts in data.items():
            for name, n in counts.items():
                total[stage][name] += int(n)
    return {s: dict(c) for s, c in total.items()}


# What the progress line shows: label, stage, counter.
LINE = (("fetched", "fetch", "processed"), ("probed", "probe", "processed"),
        ("split", "clip_rules", "processed"), ("clips", "cut_clips", "processed"),
        ("transcribed", "asr", "processed"), ("captioned", "score_captions", "processed"))


def render(tally: dict[str, dict[str, Any]], elapsed_s: float) -> str:
    parts = [f"{label} {tally.get(stage, {}).get(name, 0)}" for label, stage, name in LINE]
    failed = sum(c.get("failed", 0) for c in tally.values())
    return f"[{elapsed_s:5.0f} s] " + " · ".join(parts) + f" · errors {failed}"


class Display:
    """Redraws one status line on a terminal until stopped; silent elsewhere. While it
    runs, log records bound for the same stream (ours, Beam's, faster-whisper's) go
    through _LineSafeHandler: the status line is cleared before a record and redrawn
    after it, so the two never run into one another."""

    def __init__(self, folder: str, stream: Any, interval_s: float = 1.0) -> None:
        self.folder, self.stream, self.interval_s = folder, stream, interval_s
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = time.monotonic()
        self._lock = threading.RLock()  # one writer at a time: the loop or a log record
        self._line = ""
        self._wrapped: list[tuple[logging.Handler, _LineSafeHandler]] = []

    def __enter__(self) -> Display:
        if self.interactive:
            root = logging.getLogger()
            for handler in list(root.handlers):
                if getattr(handler, "stream", None) is self.stream:
                    wrapper = _LineSafeHandler(handler, self)
                    root.removeHandler(handler)
                    root.addHandler(wrapper)
                    self._wrapped.append((handler, wrapper))
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.interactive:
            self._stop.set()
            self._thread.join(timeout=5)
            with self._lock:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
                self._line = ""
            root = logging.getLogger()
            for handler, wrapper in self._wrapped:
                root.removeHandler(wrapper)
                root.addHandler(handler)
            self._wrapped.clear()

    def _draw(self) -> None:
        line = render(read(self.folder), time.monotonic() - self._start)
        with self._lock:
            self._line = line
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()

    def around_record(self, emit: Callable[[], None]) -> None:
        """Clear the status line, emit a log record (a line of its own), redraw."""
        with self._lock:
            if self._line:
                self.stream.write("\r\x1b[2K")
            emit()
            if self._line:
                self.stream.write(self._line)
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._draw()


class _LineSafeHandler(logging.Handler):
    """Stands in for a root handler while a Display draws on that handler's stream."""

    def __init__(self, inner: logging.Handler, display: Display) -> None:
        super().__init__()  # level NOTSET: the inner handler's level and filters decide
        self.inner, self.display = inner, display

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock of our own: the inner handler takes its own in handle().
        self.display.around_record(lambda: self.inner.handle(record))
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        self.inner.emit(record)
