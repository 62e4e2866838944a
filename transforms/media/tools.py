"""Running ffmpeg / ffprobe on source media: argument lists only (never a shell), the
demuxer and protocol allow-list, memory and time limits, streamed stdout.

Local files are passed to ffmpeg as ``file:<absolute path>`` so that names with
colons, spaces, quotes or shell metacharacters are taken literally.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import resource
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator

import numpy as np

from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    MediaError,
    MediaLimits,
    ToolStopped,
)
from vidcurate.transforms.media.storage import localise


def ff_path(path: str) -> str:
    """How ffmpeg must be given a local path so that it is read literally."""
    return "file:" + os.path.abspath(path)


# Demuxers of real single-file containers, the only ones ffmpeg / ffprobe may pick for
# source media (matched per name, as ffmpeg matches "mov,mp4,m4a,..."). Never listed:
# playlists and manifests (hls, dash, concat) that open the files or URLs they name,
# image sequences (image2), subfile, data, tty, and the game-music / tracker demuxers
# (libgme, libopenmpt) that expand a few KB into gigabytes.
ALLOWED_DEMUXERS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "flv", "mpegts",
    "mpeg", "ogg", "asf", "gif", "mxf", "nut", "ivf", "dv", "h264", "hevc", "m4v",
    "mpegvideo",
)


def source_input(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> list[str]:
    """ffmpeg / ffprobe arguments that open one source file: only the allowed demuxers,
    only the local file protocol (no playlist can reach another file or URL), and no
    decoded frame larger than --max-pixels."""
    return ["-format_whitelist", ",".join(ALLOWED_DEMUXERS), "-protocol_whitelist", "file",
            "-max_pixels", str(min(limits.max_pixels, 2**31 - 1)),
            "-i", ff_path(localise(path))]


def check_format(format_name: str | None) -> None:
    """The probed container must be an allowed one (as ffmpeg matches its whitelist)."""
    names = (format_name or "").split(",")
    if not any(n in ALLOWED_DEMUXERS for n in names):
        raise MediaError("format_not_allowed", f"container format {format_name!r} is not "
                         "a single-file video container vidcurate reads")


def stderr_tail(stderr: bytes | str | None, limit: int = 400) -> str:
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    # "[mov,mp4 @ 0x55d1c2]" -> "[mov,mp4]": the address differs on every run, which
    # would keep equal errors from grouping together.
    text = re.sub(r" @ 0x[0-9a-fA-F]+\]", "]", text)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-limit:]


def limit_memory(pid: int, limits: MediaLimits) -> None:
    # Set from outside right after the start (no preexec_fn: unsafe in threaded
    # workers); what the child allocated before this is tiny.
    if limits.memory_bytes:
        with contextlib.suppress(OSError, ValueError):
            resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes,
                                                       limits.memory_bytes))


_OUT_OF_MEMORY = re.compile(r"cannot allocate memory|out of memory|malloc of size|"
                            r"failed to allocate|bad_alloc|failed to map segment|"
                            r"MemoryError", re.IGNORECASE)
# What ffmpeg says when an allocation fails under the address-space limit without
# naming ENOMEM (seen decoding 4K H.264 at 280-480 MB): a frame buffer it could not
# get, a thread it could not start (its stack is address space: EAGAIN), the loader.
# Taken as the limit only where one is set and no frame size was refused; the rest
# of such a failure ("decode_slice_header error", "Invalid data found") reads like
# damage, which is why these decide.
_ALLOCATION_FAILED = re.compile(r"get_buffer\(\) failed|thread_encoder_init failed|"
                                r"Resource temporarily unavailable|pthread_create|"
                                r"error while loading shared libraries")
_BAD_SIZE = re.compile(r"Picture size \S+ (is invalid|exceeds)|Invalid dimensions")


_NOT_ALLOWED = re.compile(r"\[([^\]]+)\] Format not on whitelist")


_TOO_LARGE = re.compile(r"Picture size (\d+x\d+) exceeds specified max pixel count")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# ffmpeg catches SIGINT, SIGTERM and SIGXCPU itself: it stops reading, closes what it
# wrote and exits 255 (fftools: `received_nb_signals ? 255 : ...`; nothing else exits
# 255), or 123 at the fourth signal ("hard exiting"). At -v error it says nothing.
_FFMPEG_SIGNALLED = 255
_FFMPEG_HARD_EXIT = 123


def stopped_by_environment(stderr: str, returncode: int, limits: MediaLimits,
                           tool: str = "ffmpeg") -> ToolStopped | None:
    """Why the run's environment stopped a tool, whatever its output looks like: out of
    memory (a message from any part of it: a decoder that cannot allocate a frame logs
    it and goes on, which would read as damaged data), killed by a signal, or ffmpeg's
    own exit after one. None for an exit of the tool's own (its messages then say
    what the file did)."""
    if _OUT_OF_MEMORY.search(stderr) or (limits.memory_bytes and (
            returncode in (-6, -11)
            or (_ALLOCATION_FAILED.search(stderr) and not _BAD_SIZE.search(stderr)))):
        # SIGABRT / SIGSEGV: how an allocation failure can end a process too.
        limit = (f"more than --tool-memory-mb {limits.memory_bytes >> 20}"
                 if limits.memory_bytes else "more memory than the machine had")
        return ToolStopped("memory_limit", f"{tool} needed {limit} (exit {returncode})",
                           -returncode if returncode < 0 else None)
    if returncode < 0:
        name = _signal_name(-returncode)
        return ToolStopped("tool_killed", f"{tool} was killed by {name} (a signal from "
                           "outside, the OOM killer, or a crash): not the file's fault",
                           -returncode)
    if tool == "ffmpeg" and (returncode == _FFMPEG_SIGNALLED or (
            returncode == _FFMPEG_HARD_EXIT and "hard exiting" in stderr)):
        return ToolStopped("tool_killed", f"{tool} stopped on a signal (SIGINT or SIGTERM, "
                           f"exit {returncode}): not the file's fault", signal.SIGINT)
    return None


def classify_failure(stderr: str, returncode: int, limits: MediaLimits,
                     tool: str = "ffmpeg") -> MediaError | None:
    """The limit a failed tool ran into, as a MediaError (a ToolStopped when the run's
    environment stopped it); None for other failures."""
    if m := _NOT_ALLOWED.search(stderr):
        return MediaError("format_not_allowed", f"container format {m.group(1)!r} is not "
                          "a single-file video container vidcurate reads")
    if m := _TOO_LARGE.search(stderr):
        return MediaError("frame_too_large", f"frames of {m.group(1)} exceed --max-pixels "
                          f"{limits.max_pixels}")
    return stopped_by_environment(stderr, returncode, limits, tool)


def check_exit(stderr: bytes | str | None, returncode: int, limits: MediaLimits,
               tool: str) -> None:
    """Raise what a finished tool's exit and messages say stopped it: a content limit
    (format_not_allowed, frame_too_large) or the run's environment (ToolStopped), the
    latter also after an exit 0; nothing for anything else."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr or ""
    if returncode != 0 and (limit := classify_failure(stderr_tail(text, 4000), returncode,
                                                      limits, tool)):
        raise limit
    if stopped := stopped_by_environment(text, returncode, limits, tool):
        raise stopped


def _tool_name(args: list[str]) -> str:
    return os.path.basename(args[0]) if args else "?"


def run_tool(args: list[str], timeout_s: float, what: str,
             limits: MediaLimits = DEFAULT_LIMITS) -> subprocess.CompletedProcess:
    """Run ffmpeg / ffprobe within the memory limit. Raises ToolStopped when the run's
    environment stopped it (past its time limit: 'timeout'; a signal, the memory limit),
    even where it exited 0 (a decoder out of memory goes on without the frame); and the
    limit's own MediaError when it failed on one."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    limit_memory(proc.pid, limits)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.communicate()
        raise ToolStopped("timeout", f"{what} took longer than {timeout_s:.0f} s") from e
    check_exit(err, proc.returncode, limits, _tool_name(args))
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


# Lines of a streamed tool's stderr kept for its error message (a damaged file can
# print thousands; the message quotes the last ones).
_STDERR_TAIL_LINES = 64

# Called from a reader thread with each stderr line as it arrives and the number of
# stdout blocks read by then (frames, for raw_frames).
StderrListener = Callable[[str, int], None]


@contextlib.contextmanager
def streamed(args: list[str], block_bytes: int, timeout_s: float, what: str,
              nothing: MediaError, limits: MediaLimits = DEFAULT_LIMITS,
              on_stderr: StderrListener | None = None) -> Iterator[Iterator[bytes]]:
    """Run ffmpeg writing to stdout and stream it in blocks of block_bytes (the last one
    may be shorter). The context yields the block iterator; on exit the process is
    stopped and checked: past timeout_s it is killed (ToolStopped 'timeout'); one the
    environment stopped (a signal, out of memory) raises ToolStopped, whatever it wrote
    (see check_exit); and a process that wrote nothing at all raises `nothing`, with
    ffmpeg's message.

    stderr is read live by a thread (its last lines kept for messages); `on_stderr`, when
    given, hears every line with the number of blocks read when it arrived, which
    places a decoder's message in the stream to within the frames ffmpeg had decoded
    ahead."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=min(block_bytes * 4, 1 << 24))
    limit_memory(proc.pid, limits)
    watchdog = threading.Timer(timeout_s, proc.kill)
    watchdog.start()
    wrote = False
    read = 0
    at_end = False  # stdout read to its end (else closing it may SIGPIPE the tool)
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
    listener_failed: list[Exception] = []
    # The first out-of-memory line, wherever it is: the tail may have lost it.
    out_of_memory: list[str] = []

    def read_stderr() -> None:
        # Drains stderr to the end whatever happens, so that ffmpeg never blocks on it.
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            tail.append(line)
            if not out_of_memory and (_OUT_OF_MEMORY.search(line)
                                      or _ALLOCATION_FAILED.search(line)):
                out_of_memory.append(line)
            if on_stderr is not None and not listener_failed:
                try:
                    on_stderr(line, read)
                except Exception as e:  # a bug in the listener: raised after the run
                    listener_failed.append(e)

    reader = threading.Thread(target=read_stderr, name="ffmpeg-stderr", daemon=True)
    reader.start()

    def blocks() -> Iterator[bytes]:
        nonlocal wrote, read, at_end
        assert proc.stdout is not None
        while buf := proc.stdout.read(block_bytes):
            wrote = True
            read += 1
            yield buf
        at_end = True

    try:
        yield blocks()
    finally:
        if proc.stdout:
            proc.stdout.close()
        code = proc.wait()
        timed_out = not watchdog.is_alive()
        watchdog.cancel()
        reader.join()
        if proc.stderr:
            proc.stderr.close()
        stderr = "\n".join(tail)
        tail_text = stderr_tail(stderr)
    if listener_failed:
        raise listener_failed[0]
    if timed_out:
        raise ToolStopped("timeout", f"{what} took longer than {timeout_s:.0f} s")
    # Before `wrote`: a killed decoder's frames are not the file's (an early end would
    # read as a truncated file).
    if not (code == -signal.SIGPIPE and not at_end):  # else our own early close
        check_exit("\n".join([*out_of_memory, stderr]), code, limits, _tool_name(args))
    if not wrote:
        raise MediaError(nothing.error_type,
                         f"{nothing} (exit {code}){': ' + tail_text if tail_text else ''}")


@contextlib.contextmanager
def raw_frames(args: list[str], width: int, height: int, timeout_s: float, what: str,
                limits: MediaLimits = DEFAULT_LIMITS, on_stderr: StderrListener | None = None,
                ) -> Iterator[Iterator[np.ndarray]]:
    """Stream the frames of ffmpeg writing rawvideo (3 bytes a pixel) to stdout; a
    decoder that gave no frame raises MediaError 'decode_failed'. `on_stderr`: see
    streamed (its block count is the number of frames read)."""
    frame_bytes = width * height * 3
    with streamed(args, frame_bytes, timeout_s, what,
                   MediaError("decode_failed", "ffmpeg decoded no frame"), limits,
                   on_stderr) as blocks:
        yield (np.frombuffer(buf, np.uint8).reshape(height, width, 3)
               for buf in blocks if len(buf) == frame_bytes)


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, check=False)
    first = out.stdout.decode("utf-8", "replace").splitlines()
    return first[0] if first else "unknown"


def auto_ffmpeg_threads(cores: int, decoders_at_once: int | None) -> int:
    """--ffmpeg-threads auto: 0 (ffmpeg's own choice, a frame thread per core) where
    one video is decoded at a time or the count is unknown; with several at once on
    the machine, an equal share of the cores each. Frame threads cost CPU of their own
    (a 60 s 720p H.264 decode takes about 10% more CPU on 3 threads than on 1), which
    only pays where a core would otherwise sit idle."""
    if not decoders_at_once or decoders_at_once <= 1:
        return 0
    return max(1, cores // decoders_at_once)
