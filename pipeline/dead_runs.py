"""Runs in progress, and the shards of runs that died.

A run's shards become visible only once its `runs` row is written (its commit); a run
killed before that leaves shards nobody will ever read. The next run over the output
deletes them, so the folder does not grow with garbage. A run in progress must not be
taken for a dead one, even one started by another launcher over the same output: each
launcher keeps a marker, <output>/.active/<run_id>.json (its host and pid), written
before its first shard, refreshed every HEARTBEAT_S while it runs, and removed when it
ends. A run is dead when it has shards, no `runs` row, and no live marker: none at all
(the launcher ended without a commit, or an older vidcurate wrote the shards), one whose
process is gone (same host), or one not refreshed for STALE_S (another host, or a
process id taken by another program since).

What is deleted: <output>/{videos,clips,captions,errors}/<run_id>-NNNNN-of-NNNNN.parquet
(and their .tmp-<pid> files) and <output>/runs/<run_id>.parquet.tmp-<pid> of dead runs,
and their markers. Nothing else: clip files and keyframes are named by clip id, which a
committed run may share, so they stay.

Local outputs only: on an object store the dead shards stay (invisible to the views).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vidcurate.pipeline.options import ConfigError
from vidcurate.transforms.core import is_local

log = logging.getLogger("vidcurate")

ACTIVE = ".active"
HEARTBEAT_S = 30.0
STALE_S = 600.0  # twenty missed heartbeats: that launcher is gone (or asleep)
RUN_TABLES = ("videos", "clips", "captions", "errors")
# The pipeline's shard names (transforms/sinks.py), with the temporary suffix a writer
# killed mid-write leaves.
SHARD = re.compile(r"^(?P<run>.+)-\d{5}-of-\d{5}\.parquet(?:\.tmp-\d+)?$")
TORN_COMMIT = re.compile(r"^(?P<run>.+)\.parquet\.tmp-\d+$")


def _folder(output: str) -> str:
    return output.removeprefix("file://")


def _marker(output: str, run_id: str) -> str:
    return os.path.join(_folder(output), ACTIVE, f"{run_id}.json")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def marker_alive(path: str, now: float | None = None) -> bool:
    """Whether the run behind a marker may still be running."""
    try:
        age = (time.time() if now is None else now) - os.path.getmtime(path)
    except OSError:
        return False  # removed meanwhile: that run ended
    if age > STALE_S:
        return False
    try:
        with open(path, encoding="utf-8") as f:
            owner = json.load(f)
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return True  # written but unreadable (a torn write): trust its heartbeat
    return host != socket.gethostname() or _process_alive(pid)


class OutputNotWritable(ConfigError):
    """The output cannot take the run's files (full, read-only): a one-line refusal."""


class RunInProgress:
    """The marker of this launcher's run, refreshed by a daemon thread."""

    def __init__(self, output: str, run_id: str) -> None:
        self.path = _marker(output, run_id)
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        folder = os.path.dirname(self.path)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                           "started": time.time()}, f)
            os.replace(tmp, self.path)
        except OSError as e:  # a full disk, a read-only output: stop before any work
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            with contextlib.suppress(OSError):  # only when empty: other runs may be active
                os.rmdir(folder)
            raise OutputNotWritable(
                f"cannot start run {self.run_id}: its in-progress marker could not be "
                f"written in {folder} ({e.strerror or e}); nothing was written") from e
        self._thread = threading.Thread(target=self._beat, name="vidcurate-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # removed as stale: check_still_ours says so
                os.utime(self.path)

    def check_still_ours(self) -> None:
        """Before the commit: if another run took this one for dead (its marker went
        stale, e.g. the machine slept for STALE_S), some of its shards may be gone, and
        committing would show a partial run."""
        if not os.path.exists(self.path):
            raise ConfigError(f"run {self.run_id}: another run over this output removed its "
                              f"in-progress marker (not refreshed for {STALE_S:.0f} s) and "
                              "may have deleted its shards as dead; nothing was committed. "
                              "Run again.")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):  # only when empty: other runs may be active
            os.rmdir(os.path.dirname(self.path))


@contextlib.contextmanager
def in_progress(output: str, run_id: str) -> Iterator[Callable[[], None]]:
    """Mark the run as in progress for the block; yields the pre-commit check. A remote
    output gets no marker (and no cleanup: see remove_dead_runs)."""
    if not is_local(output):
        yield lambda: None
        return
    marker = RunInProgress(output, run_id)
    marker.start()
    try:
        yield marker.check_still_ours
    finally:
        marker.stop()


@dataclass
class Removed:
    runs: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


def _listed(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def remove_dead_runs(output: str, own_run_id: str) -> Removed:
    """Delete the shards of dead runs (see the module's docstring); returns what went.

    The order of the reads matters against runs starting or ending meanwhile: shards
    first, then markers, then commits. A shard listed first has a marker written before
    it; if that marker is gone when read, its run had ended, and a commit it made is
    on disk by the time the commits are read."""
    removed = Removed()
    if not is_local(output):
        return removed
    base = _folder(output)
    shards: dict[str, list[str]] = {}
    for table in RUN_TABLES:
        for name in _listed(os.path.join(base, table)):
            if m := SHARD.match(name):
                shards.setdefault(m["run"], []).append(os.path.join(base, table, name))
    for name in _listed(os.path.join(base, "runs")):
        if m := TORN_COMMIT.match(name):
            shards.setdefault(m["run"], []).append(os.path.join(base, "runs", name))
    markers = {name.removesuffix(".json"): os.path.join(base, ACTIVE, name)
               for name in _listed(os.path.join(base, ACTIVE)) if name.endswith(".json")}
    alive = {run for run, path in markers.items() if marker_alive(path)}
    committed = {name.removesuffix(".parquet") for name in _listed(os.path.join(base, "runs"))
                 if name.endswith(".parquet")}
    for run, paths in sorted(shards.items()):
        if run == own_run_id or run in alive or run in committed:
            continue
        removed.runs.append(run)
        if run in markers:  # the marker first: its launcher, if alive, will not commit
            with contextlib.suppress(OSError):
                os.unlink(markers[run])
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                size = os.path.getsize(path)
                os.unlink(path)
                removed.files += 1
                removed.bytes += size
    for run, path in markers.items():  # launchers that died before any shard, or after
        if run != own_run_id and run not in alive and run not in shards:  # their commit
            with contextlib.suppress(OSError):
                os.unlink(path)
    if removed.runs:
        log.info("removed %d shards (%.1f MB) of %d runs that died before their commit: %s",
                 removed.files, removed.bytes / 1e6, len(removed.runs),
                 ", ".join(removed.runs))
    return removed
