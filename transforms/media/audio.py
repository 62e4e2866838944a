"""Audio for speech recognition: mono windows streamed from one ffmpeg process, each
ending at a quiet point.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vidcurate.schemas.records import VideoInfo
from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    MediaError,
    MediaLimits,
    decode_timeout_s,
)
from vidcurate.transforms.media.tools import source_input, streamed


def quietest_point(audio: np.ndarray, frame: int) -> int:
    """The sample at the middle of the quietest `frame`-sample stretch (lowest energy)."""
    n = audio.size // frame
    if n == 0:
        return audio.size // 2
    energy = np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64).sum(axis=1)
    return int(np.argmin(energy)) * frame + frame // 2


def audio_windows(path: str, info: VideoInfo, sample_rate: int = 16000,
                  window_s: float = 120.0, search_s: float = 10.0,
                  limits: MediaLimits = DEFAULT_LIMITS) -> Iterator[tuple[float, np.ndarray]]:
    """The first audio stream as mono float32 at sample_rate, from the video's first
    frame, in consecutive windows of at most window_s, each with its start on the
    video's clock (later than 0 when the audio begins after the picture), streamed from
    one ffmpeg process.

    A window ends at the quietest 20 ms of its last search_s, so a word is rarely cut in
    two; memory holds one window, whatever the length of the video. Raises MediaError
    'audio_failed' when nothing can be decoded.
    """
    start = max(info.start_time_s, info.audio_start_s or 0.0)
    offset = start - info.start_time_s
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error",
            "-ss", f"{start - info.container_start_s:.6f}", *source_input(path, limits),
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate),
            "-f", "f32le", "pipe:1"]
    limit = int(window_s * sample_rate)
    search = int(min(search_s, window_s / 3) * sample_rate)
    chunks: list[np.ndarray] = []
    size = 0
    carry = b""  # a sample split across two pipe reads
    at = 0  # samples handed out so far
    with streamed(args, 1 << 20, decode_timeout_s(info.duration_s, limits),
                   "extracting audio", MediaError("audio_failed", "no audio could be decoded"),
                   limits) as blocks:
        for buf in blocks:
            buf = carry + buf
            whole = len(buf) // 4 * 4
            carry = buf[whole:]
            chunks.append(np.frombuffer(buf[:whole], np.float32))
            size += whole // 4
            if size <= limit:
                continue
            pending = np.concatenate(chunks)
            while pending.size > limit:
                cut = limit - search + quietest_point(pending[limit - search:limit],
                                                      sample_rate // 50)
                yield offset + at / sample_rate, pending[:cut]
                at += cut
                pending = pending[cut:]
            chunks, size = [pending], pending.size
    pending = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if pending.size or at == 0:
        yield offset + at / sample_rate, pending
