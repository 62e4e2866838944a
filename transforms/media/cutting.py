"""Writing clip media and keyframes with ffmpeg.
"""

from __future__ import annotations

import os

from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    FRAMES_TIMEOUT_S,
    MediaError,
    MediaLimits,
    cut_timeout_s,
)
from vidcurate.transforms.media.storage import localise
from vidcurate.transforms.media.tools import ff_path, run_tool, source_input, stderr_tail

# Containers mp4 can take by stream copy; anything else is copied into Matroska.
_MP4_VIDEO = {"h264", "hevc", "mpeg4", "av1", "vp9", "mjpeg", "mpeg2video", "mpeg1video"}


_MP4_AUDIO = {None, "aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}


def clip_extension(mode: str, video_codec: str, audio_codec: str | None) -> str:
    if mode == "copy" and (video_codec not in _MP4_VIDEO or audio_codec not in _MP4_AUDIO):
        return "mkv"
    return "mp4"


def cut_clip(
    src: str, dst: str, start_s: float, duration_s: float, mode: str, threads: int = 0,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> None:
    """Write [start, start + duration) of src to dst.

    copy: stream copy; the clip really starts at the keyframe at or before start.
    exact: re-encode (H.264 / AAC), frame-accurate.
    """
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
    if threads:
        args += ["-threads", str(threads)]
    args += ["-ss", f"{start_s:.6f}", *source_input(src, limits), "-t", f"{duration_s:.6f}"]
    args += ["-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn", "-map_metadata", "-1"]
    if mode == "copy":
        args += ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    elif mode == "exact":
        args += [
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k",
        ]
    else:
        raise ValueError(f"unknown clip media mode {mode!r}")
    if dst.endswith(".mp4"):
        args += ["-movflags", "+faststart"]
    args.append(ff_path(dst))
    out = run_tool(args, cut_timeout_s(duration_s, limits), "cutting the clip", limits)
    if out.returncode != 0 or not os.path.exists(dst) or os.path.getsize(dst) == 0:
        raise MediaError("cut_failed", f"ffmpeg could not cut the clip: {stderr_tail(out.stderr)}")


def extract_frames(src: str, times_s: list[float], dsts: list[str], max_width: int,
                   limits: MediaLimits = DEFAULT_LIMITS) -> None:
    """Write one JPEG per time, each read by seeking (one ffmpeg process, one seek each)."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
    local = localise(src)
    for t in times_s:
        args += ["-ss", f"{t:.6f}", *source_input(local, limits)]
    scale = f"scale='min({max_width},iw)':-2" if max_width else None
    for i, dst in enumerate(dsts):
        args += ["-map", f"{i}:v:0", "-frames:v", "1", "-q:v", "3", "-update", "1"]
        if scale:
            args += ["-vf", scale]
        args.append(ff_path(dst))
    out = run_tool(args, FRAMES_TIMEOUT_S, "reading keyframes", limits)
    missing = [d for d in dsts if not os.path.exists(d) or os.path.getsize(d) == 0]
    if out.returncode != 0 or missing:
        raise MediaError(
            "keyframe_failed",
            f"ffmpeg could not read {len(missing) or len(dsts)} keyframe(s): "
            f"{stderr_tail(out.stderr)}",
        )
