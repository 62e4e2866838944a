"""Which uncommitted shards a run deletes: those of dead runs, never those of a run still
in progress (its marker alive: its process here, or a fresh heartbeat from elsewhere)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidcurate.pipeline import dead_runs
from vidcurate.pipeline.dead_runs import in_progress, remove_dead_runs
from vidcurate.pipeline.options import ConfigError


def _shards(out: Path, run_id: str) -> list[Path]:
    paths = []
    for table in ("videos", "clips", "captions", "errors"):
        (out / table).mkdir(parents=True, exist_ok=True)
        path = out / table / f"{run_id}-00000-of-00001.parquet"
        path.write_bytes(b"PAR1")
        paths.append(path)
    return paths


def _marker(out: Path, run_id: str, host: str, pid: int, age_s: float = 0) -> Path:
    (out / ".active").mkdir(parents=True, exist_ok=True)
    path = out / ".active" / f"{run_id}.json"
    path.write_text(json.dumps({"host": host, "pid": pid}))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_dead_runs_lose_their_shards(tmp_path):
    out = tmp_path / "out"
    here = socket.gethostname()
    keep = {
        # committed: its runs row exists
        "done": _shards(out, "done"),
        # in progress here: its launcher's process exists
        "busy": _shards(out, "busy"),
        # in progress on another machine, heartbeat fresh
        "remote": _shards(out, "remote"),
        # the run that sweeps
        "me": _shards(out, "me"),
    }
    (out / "runs").mkdir()
    (out / "runs" / "done.parquet").write_bytes(b"PAR1")
    _marker(out, "busy", here, os.getpid())
    _marker(out, "remote", "elsewhere", 1)
    gone = {
        "killed": _shards(out, "killed"),  # its launcher's process is gone
        "stale": _shards(out, "stale"),  # elsewhere, no heartbeat for too long
        "old": _shards(out, "old"),  # no marker at all
    }
    _marker(out, "killed", here, _dead_pid())
    _marker(out, "stale", "elsewhere", 1, age_s=dead_runs.STALE_S + 60)
    torn = out / "runs" / "killed.parquet.tmp-123"
    torn.write_bytes(b"PAR1 torn")
    user_file = out / "clips" / "notes.txt"  # not a shard name: never touched
    user_file.write_text("mine")
    removed = remove_dead_runs(str(out), "me")
    assert sorted(removed.runs) == ["killed", "old", "stale"]
    assert removed.files == 3 * 4 + 1
    assert all(p.exists() for paths in keep.values() for p in paths)
    assert not any(p.exists() for paths in gone.values() for p in paths)
    assert not torn.exists() and user_file.read_text() == "mine"
    assert sorted(p.name for p in (out / ".active").iterdir()) == ["busy.json", "remote.json"]


def test_a_run_marks_itself_and_refuses_to_commit_once_swept(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    with in_progress(str(out), "mine") as check_still_ours:
        marker = out / ".active" / "mine.json"
        assert json.loads(marker.read_text())["pid"] == os.getpid()
        shards = _shards(out, "mine")
        # Another launcher's sweep keeps a live run's shards ...
        assert remove_dead_runs(str(out), "other").runs == []
        assert all(p.exists() for p in shards)
        check_still_ours()
        # ... but takes them once its heartbeat is stale (a machine asleep, say): this
        # run must then not commit.
        then = time.time() - dead_runs.STALE_S - 1
        os.utime(marker, (then, then))
        assert remove_dead_runs(str(out), "other").runs == ["mine"]
        with pytest.raises(ConfigError, match="nothing was committed"):
            check_still_ours()
    assert not (out / ".active").exists()


def test_heartbeat_keeps_the_marker_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(dead_runs, "HEARTBEAT_S", 0.05)
    out = tmp_path / "out"
    out.mkdir()
    with in_progress(str(out), "mine"):
        marker = out / ".active" / "mine.json"
        os.utime(marker, (0, 0))
        deadline = time.monotonic() + 10
        while os.path.getmtime(marker) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert time.time() - os.path.getmtime(marker) < 5


def test_a_full_disk_at_the_marker_stops_the_run_cleanly(tmp_path, monkeypatch):
    """No traceback, no 0-byte .active/*.json.tmp-PID left behind (issue 28)."""
    out = tmp_path / "out"
    out.mkdir()

    def full_disk(obj, f):  # what a full disk does: part of the write, then ENOSPC
        f.write("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dead_runs.json, "dump", full_disk)
    with pytest.raises(dead_runs.OutputNotWritable, match="No space left on device"), \
            in_progress(str(out), "mine"):
        pytest.fail("the run must not start")
    assert list(out.iterdir()) == []  # neither the marker, its temp file nor .active
