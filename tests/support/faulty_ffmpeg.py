"""A faulty ffmpeg for tests: a wrapper placed first on PATH (the pipeline finds
ffmpeg there) that runs the real one and stops it as a run's environment can, at one
step of the pipeline: a signal from outside, or a process that never finishes.

Steps: "decode", the cut detector's decode (raw BGR frames to a pipe); "cut", the
process writing clip files. Every other ffmpeg call passes through untouched."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

_SCRIPT = r'''#!{python}
import fcntl, os, signal, subprocess, sys, time

REAL, STEP, FAULT, TIMES, AFTER_BYTES = {real!r}, {step!r}, {fault!r}, {times!r}, {after!r}
COUNT = {count!r}
args = sys.argv[1:]


def outputs():
    return [a[5:] for i, a in enumerate(args)
            if a.startswith("file:") and (i == 0 or args[i - 1] != "-i")]


def is_step():
    if STEP == "decode":
        return "bgr24" in args and "pipe:1" in args
    return any(o.endswith((".mp4", ".mkv")) for o in outputs())


def take_turn():
    """Whether this call is one of the first TIMES calls of the step (a count file)."""
    with open(COUNT, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = len(f.read())
        if n >= TIMES:
            return False
        f.write("x")
        return True


if not is_step() or not take_turn():
    os.execv(REAL, [REAL, *args])

if FAULT == "hang":
    # Does its work, then never ends: only the time limit stops it.
    subprocess.run([REAL, *args], check=False)
    time.sleep(3600)

sig = signal.Signals[FAULT]
child = subprocess.Popen([REAL, *args], stdout=subprocess.PIPE if STEP == "decode" else None)
if STEP == "decode":
    # Relay the frames; the signal comes after AFTER_BYTES of them.
    sent = 0
    while chunk := child.stdout.read(1 << 16):
        os.write(1, chunk)
        sent += len(chunk)
        if sent >= AFTER_BYTES and child.poll() is None:
            child.send_signal(sig)
else:
    # The signal comes once a clip file holds data (or the process ended first).
    while child.poll() is None and not any(
            os.path.exists(o) and os.path.getsize(o) > 0 for o in outputs()):
        time.sleep(0.005)
    if child.poll() is None:
        child.send_signal(sig)
child.wait()
# As ffmpeg ends on that signal, also where it had finished before it came: SIGINT and
# SIGTERM it catches (exit 255), the others end it.
if sig in (signal.SIGINT, signal.SIGTERM):
    sys.exit(255)
if sig != signal.SIGKILL:  # its handler cannot be set
    signal.signal(sig, signal.SIG_DFL)
os.kill(os.getpid(), sig)
'''


def faulty_ffmpeg(folder: Path, step: str, fault: str, times: int = 1,
                  after_bytes: int = 0) -> dict[str, str]:
    """Write the wrapper into folder; the environment that puts it first on PATH.
    fault: a signal name (SIGINT, SIGKILL, ...) or "hang"; times: how many calls of the
    step fail (those after run the real ffmpeg); after_bytes: how much of its frames a
    decode passes on before the signal."""
    real = shutil.which("ffmpeg")
    assert real is not None
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "ffmpeg"
    script.write_text(_SCRIPT.format(python=sys.executable, real=real, step=step,
                                     fault=fault, times=times, after=after_bytes,
                                     count=str(folder / "calls")))
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def faulty_calls(folder: Path) -> int:
    """How many calls of the step the wrapper failed."""
    calls = folder / "calls"
    return len(calls.read_text()) if calls.exists() else 0
