"""Decoded pictures: the one downscaled decode the cut detector reads (on the CPU, or
on the GPU's video decoder, NVDEC), and the frame sample it keeps at keyframe size in
the same pass; chosen frames by number, and keyframe images.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vidcurate.schemas.records import FrameSample, VideoInfo
from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    MediaError,
    MediaLimits,
    decode_timeout_s,
)
from vidcurate.transforms.media.tools import StderrListener, ff_path, raw_frames, source_input

# Stitching embeds its boundary frames at most this wide: CLIP looks at 224 px.
STITCH_FRAME_WIDTH = 448
# The frame sample keeps a frame at least this often, so that a keyframe or a stitching
# frame is never more than half of it (0.125 s) from the frame it stands for.
SAMPLE_INTERVAL_S = 0.25
# Without stitching the sample serves only the keyframes, spread over clips at least
# --min-clip-s long: half as many images (JPEG-encoding them is about a third of the
# detect decode's CPU), each keyframe within 0.25 s of its place, and the time it
# shows is recorded.
KEYFRAME_SAMPLE_INTERVAL_S = 0.5
# At most this many sampled images per video (disk: ~100-200 KB each at 1280x720, so
# under ~600 MB); a longer video is sampled more sparsely. ffmpeg stops writing images
# there even when the probed duration lied.
MAX_SAMPLE_FRAMES = 3600
# JPEG quality of the sampled images (ffmpeg -q:v, 2 best .. 31): the dataset's keyframes
# are these bytes, at the quality the seeking path wrote them.
SAMPLE_JPEG_QUALITY = 3
_SAMPLE_NAME = re.compile(r"\d{8}\.jpg")


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


@dataclass(frozen=True)
class SampleRequest:
    """What the detect decode keeps besides its downscaled stream: every `stride`-th
    frame, at most `width` wide (0: full size), as JPEG files in `folder`."""

    folder: str
    stride: int
    width: int
    max_frames: int = MAX_SAMPLE_FRAMES


def sample_stride(fps: float, duration_s: float, min_scene_len: int,
                  max_frames: int = MAX_SAMPLE_FRAMES,
                  keyframes_only_min_clip_s: float | None = None) -> int:
    """Frames between two sampled frames: one every SAMPLE_INTERVAL_S at most, and at
    least two in every shot the detector can report (shots are >= min_scene_len
    frames), so that stitching's start and end frames of a shot differ; sparser only
    where the video is long enough to pass max_frames.

    With keyframes_only_min_clip_s (no stitching reads the sample: the keyframes of
    clips at least that long): one every KEYFRAME_SAMPLE_INTERVAL_S at most, and at
    least four in every clip, or in every shot when clips may be shorter than one."""
    if keyframes_only_min_clip_s is None:
        stride = max(1, min(int(fps * SAMPLE_INTERVAL_S), (min_scene_len - 1) // 2))
    else:
        shortest = max(int(fps * keyframes_only_min_clip_s), min_scene_len)
        stride = max(1, min(int(fps * KEYFRAME_SAMPLE_INTERVAL_S), shortest // 4))
    frames = math.ceil(max(0.0, duration_s) * fps) + 1
    return max(stride, math.ceil(frames / max_frames))


def nearest_sample(sample: FrameSample, frame: int, start_frame: int, end_frame: int
                   ) -> int | None:
    """The sampled image nearest to `frame` among those inside [start_frame, end_frame)
    (never one across the span's edge: that may be another shot); None if the span
    holds no sampled frame."""
    stride = sample.stride
    first = -(-max(0, start_frame) // stride)
    last = min(sample.count - 1, (end_frame - 1) // stride)
    if first > last:
        return None
    nearest = (2 * frame + stride) // (2 * stride)  # round half up
    return min(max(nearest, first), last)


def sample_folder(root: str, video_id: str) -> str:
    """A video's scratch folder for its frame sample, inside the run's work folder; named
    by a hash, so that no video id can point it elsewhere."""
    return os.path.join(root, "frames", hashlib.sha256(video_id.encode()).hexdigest()[:24])


def clear_sample(folder: str) -> None:
    """Delete the sampled images in folder (only our own file names) and the folder when
    that leaves it empty; a missing folder is fine."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if _SAMPLE_NAME.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def sample_count(folder: str) -> int:
    """How many images the decode wrote: 0 .. n-1 without a gap."""
    n = 0
    while os.path.isfile(os.path.join(folder, f"{n:08d}.jpg")):
        n += 1
    return n


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
                           gpu: int | None = None, sample: SampleRequest | None = None
                           ) -> list[str]:
    """ffmpeg's arguments for the cut detector's decode; gpu N decodes on that GPU's
    NVDEC and scales there (scale_cuda), so only the small frames cross to the CPU.

    With a `sample`, the same process (the same decoded frames, split after the rate
    filter) also writes every stride-th frame as JPEG {k:08d}.jpg in sample.folder:
    image k is frame k * stride. On NVDEC the frames are then downloaded at full size
    and both branches are scaled on the CPU (the sample needs the full picture).
    """
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
    if threads:
        args += ["-threads", str(threads)]
    if gpu is not None:
        args += ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda",
                 "-hwaccel_device", str(gpu)]
    elif sample is None:
        # Skipping the in-loop deblocking filter (H.264/HEVC; others ignore it) saves
        # about as much decode time as the downscale costs, and smoothing block edges
        # does not move a shot boundary (golden cut tests hold). Not when frames are
        # kept for the dataset: their block edges would show.
        args += ["-skip_loop_filter", "all"]
    args += [*source_input(path, limits)]
    small = f"scale={width}:{height}:flags=fast_bilinear"
    if sample is None:
        if gpu is None:
            chain = f"{constant_rate(info)},{small}"
        else:
            # Scaled on the GPU, then downloaded; the rate is made constant on the small
            # frames (the fps filter only drops and repeats them).
            chain = f"scale_cuda={width}:{height},hwdownload,format=nv12,{constant_rate(info)}"
        args += ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", chain,
                 "-fps_mode", "passthrough", "-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1"]
        return args
    download = "hwdownload,format=nv12," if gpu is not None else ""
    # As the seeking path scaled keyframes: never upscaled, even height.
    big = f",scale='min({sample.width},iw)':-2" if sample.width else ""
    graph = (f"[0:v:0]{download}{constant_rate(info)},split=2[all][kept];[all]{small}[small];"
             f"[kept]select=not(mod(n\\,{sample.stride})){big}[big]")
    args += ["-filter_complex", graph,
             "-map", "[small]", "-fps_mode", "passthrough",
             "-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1",
             "-map", "[big]", "-fps_mode", "passthrough",
             "-frames:v", str(sample.max_frames), "-q:v", str(SAMPLE_JPEG_QUALITY),
             "-start_number", "0", "-f", "image2",
             # A '%' in the work dir's path is literal, not part of the pattern.
             ff_path(os.path.join(sample.folder.replace("%", "%%"), "%08d.jpg"))]
    return args


@contextlib.contextmanager
def decode_frames_downscaled(
    path: str, info: VideoInfo, target_width: int, threads: int = 0,
    limits: MediaLimits = DEFAULT_LIMITS, on_stderr: StderrListener | None = None,
    sample: SampleRequest | None = None, gpu: int | None = None,
) -> Iterator[Iterator[np.ndarray]]:
    """Decode the first video stream once, downscaled, as BGR frames at a constant rate.

    Variable-rate input is resampled to its average rate, so frame i is at i / fps.
    The context yields an iterator; on exit the decoder is stopped and checked: a
    decoder that failed before the first frame raises MediaError. `on_stderr` hears
    each of ffmpeg's error lines (damaged data) with the number of frames read by then.

    With a `sample`, the same process also writes the frame sample (see
    downscaled_decode_args); the folder must exist. `gpu` N decodes on that GPU
    (NVDEC); the caller checks nvdec_suits and the build.
    """
    width, height = detect_size(info, target_width)
    args = downscaled_decode_args(path, info, width, height, threads, limits, gpu, sample)
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


def read_sample_image(sample: FrameSample, k: int, max_width: int = 0) -> np.ndarray:
    """Sampled image k as an RGB array, at most max_width wide (0: as stored); the JPEG
    decoder scales by a power of two first where it can (cheap). MediaError when it
    cannot be read."""
    from PIL import Image, UnidentifiedImageError

    path = sample.path(k)
    try:
        with Image.open(path) as img:
            if max_width and img.width > max_width:
                img.draft("RGB", (max_width, max(1, img.height * max_width // img.width)))
            rgb = img.convert("RGB")
            if max_width and rgb.width > max_width:
                rgb = rgb.resize((max_width, max(2, round(rgb.height * max_width / rgb.width))),
                                 Image.Resampling.BILINEAR)
            return np.asarray(rgb)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise MediaError("unreadable_frame", f"cannot read sampled frame {path}: {e}") from e


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
