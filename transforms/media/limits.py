"""How a media tool may fail and what it may use: MediaError and its kinds, MediaLimits
(--tool-memory-mb, --max-pixels, --tool-max-seconds) and the time limits derived from them.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

from vidcurate.transforms.core import AddArgument, StageError, check


class MediaError(StageError):
    """A media file that cannot be processed; becomes an error row, never a crash."""


class ToolStopped(MediaError):
    """ffmpeg / ffprobe stopped by the run's environment, not by the file: killed by a
    signal (error type 'tool_killed'), past --tool-memory-mb ('memory_limit') or past
    its time limit ('timeout'). Nothing it wrote is a result (a decode that ends early
    is not a truncated file, a clip it left is not a clip): the video becomes an error
    row with status failed, which the next run does again."""

    def __init__(self, error_type: str, message: str, signal_number: int | None = None
                 ) -> None:
        super().__init__(error_type, message)
        self.signal_number = signal_number

    @property
    def crashed(self) -> bool:
        """Died of its own fault (SIGSEGV, SIGABRT, ...), not killed from outside."""
        return self.signal_number in _CRASH_SIGNALS


# The error types of ToolStopped: what a run's environment did, never the content.
TOOL_STOPPED_TYPES = frozenset({"tool_killed", "memory_limit", "timeout"})

_CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL,
                            signal.SIGFPE})


class NoVideoStream(MediaError):
    """A readable file without a video stream (audio-only, image sequence metadata...)."""

    def __init__(self, message: str) -> None:
        super().__init__("no_video_stream", message)


@dataclasses.dataclass(frozen=True)
class MediaLimits:
    """What one ffmpeg / ffprobe process on a source may use (--tool-memory-mb,
    --max-pixels, --tool-max-seconds): a hostile file ends as an error row, not as a
    worker out of memory or pinned for hours."""

    memory_bytes: int = 4 * 1024**3  # address space of one process (0: no limit)
    max_pixels: int = 7680 * 4320  # per frame: 8K UHD
    max_seconds: float = 4 * 3600.0  # whatever the video's length

    def seconds(self, base_s: float, per_video_s: float, duration_s: float) -> float:
        """A time limit that grows with the (verified) duration, up to the hard cap."""
        return min(self.max_seconds, base_s + per_video_s * max(0.0, duration_s))

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("tool-memory-mb", type=int, default=4096,
            help="Address space of one ffmpeg / ffprobe process, MB (0: no limit); past it "
            "the video ends as a memory_limit error row.")
        add("max-pixels", type=int, default=7680 * 4320,
            help="Largest frame (width x height) a source may have; larger ones end as "
            "frame_too_large error rows (default: 8K UHD).")
        add("tool-max-seconds", type=float, default=4 * 3600.0,
            help="Hard cap on the time of one ffmpeg / ffprobe process, s, whatever the "
            "video's length.")

    @classmethod
    def from_options(cls, o: Any) -> MediaLimits:
        check(
            (o.tool_memory_mb == 0 or o.tool_memory_mb >= 256,
             f"--tool-memory-mb must be 0 (no limit) or >= 256, got {o.tool_memory_mb}"),
            (o.max_pixels >= 64 * 64, f"--max-pixels must be >= 4096, got {o.max_pixels}"),
            (o.tool_max_seconds >= 10, f"--tool-max-seconds must be >= 10, got "
             f"{o.tool_max_seconds}"),
        )
        return cls(memory_bytes=o.tool_memory_mb * 1024**2, max_pixels=o.max_pixels,
                   max_seconds=o.tool_max_seconds)


DEFAULT_LIMITS = MediaLimits()


# Time limits for one ffmpeg / ffprobe process, so a pathological file ends as an
# error row instead of pinning a worker forever. Generous: ~10x the usual cost. Those
# that grow with the video use its duration as verified against its packets (probe),
# never a header's claim alone, and stop at MediaLimits.max_seconds.
PROBE_TIMEOUT_S = 120.0


FRAMES_TIMEOUT_S = 120.0


def decode_timeout_s(duration_s: float, limits: MediaLimits = DEFAULT_LIMITS) -> float:
    return limits.seconds(600.0, 4.0, duration_s)


def cut_timeout_s(duration_s: float, limits: MediaLimits = DEFAULT_LIMITS) -> float:
    return limits.seconds(300.0, 10.0, duration_s)


def listing_timeout_s(size_bytes: int, limits: MediaLimits = DEFAULT_LIMITS) -> float:
    """Listing packets reads the file once without decoding: bounded by its size."""
    return limits.seconds(60.0, 1.0, size_bytes / 20e6)


class TooLarge(MediaError):
    def __init__(self, limit: int) -> None:
        super().__init__("too_large", f"over --max-bytes {limit}")
