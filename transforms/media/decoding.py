"""Decoded pictures: the one downscaled decode the cut detector reads (on the CPU, or
on the GPU's video decoder, NVDEC), chosen frames by number, and keyframe images.
"""

from __future__ import annotations

import contextlib
import functools
import io
import subprocess
from collections.abc import Iterator

import numpy as np

from vidcurate.schemas.records import VideoInfo
from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    MediaError,
    MediaLimits,
    decode_timeout_s,
)
from vidcurate.transforms.media.tools import StderrListener, raw_frames, source_input


def detect_size(info: VideoInfo, target_width: int) -> tuple[int, int]:
    """Even-sized downscale keeping the display aspect ratio; never upscales."""
    w, h = info.display_size
    width = min(target_width, w)
    height = max(2, int(round(h * width / w / 2)) * 2)
    width = max(2, width // 2 * 2)
    return width, height


def constant_rate(info: VideoInfo) -> str:
    # Frame 0 is the first video frame (timestamps reset, no padding from an earlier
    # audio start), and the fps filter resamples to the average rate, so frame i is at
    # i / fps even when a "constant" stream drops or repeats a frame.
    return f"setpts=PTS-STARTPTS,fps={info.fps:.9f}"


# Codecs and pixel formats NVDEC decodes to the 8-bit NV12 frames scale_cuda and
# hwdownload take here (10-bit and 4:2:2 / 4:4:4 sources are decoded on the CPU).
NVDEC_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg1video", "mpeg2video",
                          "mpeg4", "vc1", "mjpeg"})
NVDEC_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "nv12"})


def nvdec_suits(info: VideoInfo) -> bool:
    """Whether this stream goes to NVDEC: a codec and 8-bit 4:2:0 format it decodes, and
    no rotation (ffmpeg's autorotate filter works on CPU frames only)."""
    return (info.video_codec in NVDEC_CODECS and (info.pix_fmt or "") in NVDEC_PIX_FMTS
            and info.rotation % 360 == 0)


def nvdec_missing(hwaccels: str, filters: str) -> str | None:
    """Why an ffmpeg build cannot decode and scale on the GPU, from the output of
    `ffmpeg -hwaccels` and `ffmpeg -filters`; None when it can."""
    accels = {line.strip() for line in hwaccels.splitlines()[1:]}
    if "cuda" not in accels:
        return "this ffmpeg build has no CUDA hwaccel (ffmpeg -hwaccels)"
    names = {parts[1] for parts in (line.split() for line in filters.splitlines())
             if len(parts) >= 3}
    missing = [f for f in ("scale_cuda", "hwdownload") if f not in names]
    if missing:
        return f"this ffmpeg build has no {' / '.join(missing)} filter (ffmpeg -filters)"
    return None


@functools.cache
def probe_nvdec() -> str | None:
    """Asked once per process: why this machine's ffmpeg cannot use NVDEC, or None.
    (A missing driver shows only when a decode starts: detect_scenes falls back then.)"""
    def listing(flag: str) -> str:
        try:
            out = subprocess.run(["ffmpeg", "-hide_banner", flag], capture_output=True,
                                 timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"<{e}>"
        return out.stdout.decode("utf-8", "replace")

    return nvdec_missing(listing("-hwaccels"), listing("-filters"))


def downscaled_decode_args(path: str, info: VideoInfo, width: int, height: int,
                           threads: int = 0, limits: MediaLimits = DEFAULT_LIMITS,
                           gpu: int | None = None) -> list[str]:
    """ffmpeg's arguments for the cut detector's decode; gpu N decodes on that GPU's
    NVDEC and scales there (scale_cuda), so only the small frames cross to the CPU."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
    if threads:
        args += ["-threads", str(threads)]
    if gpu is None:
        # Skipping the in-loop deblocking filter (H.264/HEVC; others ignore it) saves
        # about as much decode time as the downscale costs, and smoothing block edges
        # does not move a shot boundary (golden cut tests hold).
        args += ["-skip_loop_filter", "all"]
        scale = f"{constant_rate(info)},scale={width}:{height}:flags=fast_bilinear"
    else:
        args += ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda",
                 "-hwaccel_device", str(gpu)]
        # Scaled on the GPU, then downloaded; the rate is made constant on the small
        # frames (the fps filter only drops and repeats them).
        scale = f"scale_cuda={width}:{height},hwdownload,format=nv12,{constant_rate(info)}"
    args += [*source_input(path, limits), "-map", "0:v:0", "-an", "-sn", "-dn"]
    args += ["-vf", scale, "-fps_mode", "passthrough"]
    args += ["-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1"]
    return args


@contextlib.contextmanager
def decode_frames_downscaled(
    path: str, info: VideoInfo, target_width: int, threads: int = 0,
    limits: MediaLimits = DEFAULT_LIMITS, on_stderr: StderrListener | None = None,
    gpu: int | None = None,
) -> Iterator[Iterator[np.ndarray]]:
    """Decode the first video stream once, downscaled, as BGR frames at a constant rate.

    Variable-rate input is resampled to its average rate, so frame i is at i / fps.
    The context yields an iterator; on exit the decoder is stopped and checked: a
    decoder that failed before the first frame raises MediaError. `on_stderr` hears
    each of ffmpeg's error lines (damaged data) with the number of frames read by then.
    `gpu` N decodes on that GPU (NVDEC); the caller checks nvdec_suits and the build.
    """
    width, height = detect_size(info, target_width)
    args = downscaled_decode_args(path, info, width, height, threads, limits, gpu)
    with raw_frames(args, width, height, decode_timeout_s(info.duration_s, limits),
                     "decoding for cut detection", limits, on_stderr) as frames:
        yield frames


# One selecting pass takes at most this many frames: its expression stays well under
# the kernel's 128 KiB limit for one argument.
SELECT_MAX_FRAMES = 1000


def select_expression(indices: list[int]) -> str:
    """An ffmpeg `select` expression true on exactly these frame numbers (sorted, unique):
    a balanced tree of comparisons, so each decoded frame costs log2(len) tests."""
    if len(indices) == 1:
        return f"eq(n\\,{indices[0]})"
    mid = len(indices) // 2
    return (f"if(lt(n\\,{indices[mid]})\\,{select_expression(indices[:mid])}"
            f"\\,{select_expression(indices[mid:])})")


def frames_by_number(path: str, info: VideoInfo, indices: list[int], target_width: int,
                     limits: MediaLimits = DEFAULT_LIMITS) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame) for the wanted frames, in one sequential decode per
    SELECT_MAX_FRAMES frames, numbered as decode_frames_downscaled numbers them.

    Streams: a frame is yielded as soon as it is decoded, and decoding stops after the
    last wanted frame. Frames past the end of the stream are not yielded; a decoder
    that fails partway yields what it read and raises MediaError.
    """
    wanted = sorted(set(indices))
    width, height = detect_size(info, target_width)
    for lo in range(0, len(wanted), SELECT_MAX_FRAMES):
        chunk = wanted[lo:lo + SELECT_MAX_FRAMES]
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error",
                *source_input(path, limits), "-map", "0:v:0", "-an", "-sn", "-dn"]
        args += ["-vf", f"{constant_rate(info)},select={select_expression(chunk)},"
                        f"scale={width}:{height}", "-fps_mode", "passthrough",
                 "-frames:v", str(len(chunk))]
        args += ["-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
        with raw_frames(args, width, height, decode_timeout_s(info.duration_s, limits),
                         "reading frames", limits) as frames:
            # Fewer frames than asked when some lie past the end of the stream.
            yield from zip(chunk, frames, strict=False)


def read_frame(uri: str) -> np.ndarray:
    """A keyframe as an RGB array (palette / grey / alpha images converted), from a
    local path or any Beam FileSystems uri; MediaError when it cannot be read."""
    from apache_beam.io.filesystems import FileSystems
    from PIL import Image, UnidentifiedImageError

    try:
        with FileSystems.open(uri) as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise MediaError("unreadable_frame", f"cannot read keyframe {uri}: {e}") from e
