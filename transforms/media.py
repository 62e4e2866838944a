"""ffmpeg / ffprobe helpers: argument lists only (never a shell), errors as MediaError.

Local files are passed to ffmpeg as ``file:<absolute path>`` so that names with
colons, spaces, quotes or shell metacharacters are taken literally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
from apache_beam.io.filesystems import FileSystems

from vidcurate.schemas.records import VideoInfo
from vidcurate.transforms.core import AddArgument, StageError, check, is_local, is_remote

_CHUNK = 1 << 20
# Containers mp4 can take by stream copy; anything else is copied into Matroska.
_MP4_VIDEO = {"h264", "hevc", "mpeg4", "av1", "vp9", "mjpeg", "mpeg2video", "mpeg1video"}
_MP4_AUDIO = {None, "aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}


class MediaError(StageError):
    """A media file that cannot be processed; becomes an error row, never a crash."""


class NoVideoStream(MediaError):
    """A readable file without a video stream (audio-only, image sequence metadata...)."""

    def __init__(self, message: str) -> None:
        super().__init__("no_video_stream", message)


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


def _stderr_tail(stderr: bytes | str | None, limit: int = 400) -> str:
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    # "[mov,mp4 @ 0x55d1c2]" -> "[mov,mp4]": the address differs on every run, which
    # would keep equal errors from grouping together.
    text = re.sub(r" @ 0x[0-9a-fA-F]+\]", "]", text)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-limit:]


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


def _limit_memory(pid: int, limits: MediaLimits) -> None:
    # Set from outside right after the start (no preexec_fn: unsafe in threaded
    # workers); what the child allocated before this is tiny.
    if limits.memory_bytes:
        with contextlib.suppress(OSError, ValueError):
            resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes,
                                                       limits.memory_bytes))


_OUT_OF_MEMORY = re.compile(r"cannot allocate memory|out of memory|malloc of size|"
                            r"failed to allocate|bad_alloc|failed to map segment|"
                            r"MemoryError", re.IGNORECASE)
_NOT_ALLOWED = re.compile(r"\[([^\]]+)\] Format not on whitelist")
_TOO_LARGE = re.compile(r"Picture size (\d+x\d+) exceeds specified max pixel count")


def classify_failure(stderr: str, returncode: int, limits: MediaLimits) -> MediaError | None:
    """The limit a failed tool ran into, as a MediaError; None for other failures."""
    if m := _NOT_ALLOWED.search(stderr):
        return MediaError("format_not_allowed", f"container format {m.group(1)!r} is not "
                          "a single-file video container vidcurate reads")
    if m := _TOO_LARGE.search(stderr):
        return MediaError("frame_too_large", f"frames of {m.group(1)} exceed --max-pixels "
                          f"{limits.max_pixels}")
    # SIGABRT / SIGKILL / SIGSEGV: how an allocation failure can end a process too.
    if limits.memory_bytes and (_OUT_OF_MEMORY.search(stderr) or returncode in (-6, -9, -11)):
        return MediaError("memory_limit", f"ffmpeg needed more than --tool-memory-mb "
                          f"{limits.memory_bytes >> 20} (exit {returncode})")
    return None


def run_tool(args: list[str], timeout_s: float, what: str,
             limits: MediaLimits = DEFAULT_LIMITS) -> subprocess.CompletedProcess:
    """Run ffmpeg / ffprobe within the memory limit; raises MediaError('timeout') past its
    time limit, and the limit's own MediaError when it failed on one."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _limit_memory(proc.pid, limits)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.communicate()
        raise MediaError("timeout", f"{what} took longer than {timeout_s:.0f} s") from e
    if proc.returncode != 0 and (
            limit := classify_failure(_stderr_tail(err, 4000), proc.returncode, limits)):
        raise limit
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def probe(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """ffprobe's JSON (format and streams), time- and memory-limited; only allowed
    container formats are opened (MediaError 'format_not_allowed' otherwise)."""
    args = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json",
            *source_input(path, limits)]
    out = run_tool(args, PROBE_TIMEOUT_S, "ffprobe", limits)
    if out.returncode != 0:
        detail = _stderr_tail(out.stderr) or "ffprobe exited with an error"
        raise MediaError("probe_failed", f"ffprobe could not read the file: {detail}")
    try:
        data = json.loads(out.stdout.decode("utf-8", "replace"))
    except json.JSONDecodeError as e:
        raise MediaError("probe_failed", f"ffprobe gave unreadable output: {e}") from e
    check_format(data.get("format", {}).get("format_name"))
    return data


@dataclasses.dataclass(frozen=True)
class PacketSpan:
    """The video packets really in a file: how many, and the time they span."""

    count: int
    first_s: float | None
    last_s: float | None

    @property
    def span_s(self) -> float:
        if self.first_s is None or self.last_s is None:
            return 0.0
        return self.last_s - self.first_s


def video_packet_span(path: str, size_bytes: int, limits: MediaLimits = DEFAULT_LIMITS
                      ) -> PacketSpan:
    """Count the first video stream's packets and their time span in one read of the
    file, without decoding (streamed: memory does not grow with the packet count)."""
    args = ["ffprobe", "-v", "error", "-select_streams", "v:0",
            "-show_entries", "packet=pts_time,dts_time", "-of", "csv=p=0",
            *source_input(path, limits)]
    count, first, last = 0, None, None
    rest = b""
    with _streamed(args, 1 << 16, listing_timeout_s(size_bytes, limits), "listing packets",
                   MediaError("probe_failed", "the file holds no video packet"),
                   limits) as blocks:
        for block in blocks:
            *lines, rest = (rest + block).split(b"\n")
            for line in lines:
                pts, _, dts = line.decode("ascii", "replace").partition(",")
                t = _float(pts) if pts not in ("", "N/A") else _float(dts)
                count += 1
                if t is not None:
                    first = t if first is None else min(first, t)
                    last = t if last is None else max(last, t)
    return PacketSpan(count, first, last)


# A header may claim this much more than its packets span (factor, seconds) before the
# file is refused: enough for edit lists and a stream that starts late.
DURATION_SLACK = (2.0, 10.0)


def verify_info(info: VideoInfo, packets: PacketSpan, limits: MediaLimits) -> VideoInfo:
    """Check the probed frame size and duration against the limits and against what the
    file really holds: MediaError 'frame_too_large' past --max-pixels, and
    'duration_mismatch' when the header claims far more time than its packets span (a
    lie that would stretch every time limit and the dataset's hours)."""
    if info.width * info.height > limits.max_pixels:
        raise MediaError("frame_too_large", f"frames of {info.width}x{info.height} exceed "
                         f"--max-pixels {limits.max_pixels}")
    if packets.count == 0:
        raise MediaError("probe_failed", "the file holds no video packet")
    real = packets.span_s + 1.0 / info.fps  # the last packet lasts a frame
    factor, seconds = DURATION_SLACK
    if info.duration_s > factor * real + seconds:
        raise MediaError("duration_mismatch", f"the header claims {info.duration_s:.6g} s "
                         f"but its {packets.count} video packets span {real:.3f} s")
    return info


class TooLarge(MediaError):
    def __init__(self, limit: int) -> None:
        super().__init__("too_large", f"over --max-bytes {limit}")


def file_digest(uri: str, max_bytes: int = 0) -> tuple[int, str]:
    """Size and sha256 of a file or object (any Beam FileSystems uri), streamed: never
    the whole file in memory, the bytes as stored (no decompression by extension), and
    TooLarge past max_bytes (0: no limit)."""
    digest = hashlib.sha256()
    size = 0
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        while chunk := f.read(_CHUNK):
            size += len(chunk)
            if max_bytes and size > max_bytes:
                raise TooLarge(max_bytes)
            digest.update(chunk)
    return size, digest.hexdigest()


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN -> None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict[str, Any]) -> int:
    tag = stream.get("tags", {}).get("rotate")
    if tag is not None and _int(tag) is not None:
        return int(tag) % 360
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side and _float(side["rotation"]) is not None:
            # The display matrix gives the counter-clockwise angle; report it clockwise
            # like the legacy `rotate` tag.
            return int(round(-float(side["rotation"]))) % 360
    return 0


def parse_probe(data: dict[str, Any], size: int, sha256: str) -> VideoInfo:
    """Turn ffprobe's JSON into VideoInfo; raises NoVideoStream / MediaError."""
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    # Cover art and thumbnails are "video" streams too; skip them.
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition", {}) or {}).get("attached_pic")
    ]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not video:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["none"]
        raise NoVideoStream(f"no video stream (streams: {', '.join(kinds)})")
    v = video[0]
    avg = _rate(v.get("avg_frame_rate"))
    real = _rate(v.get("r_frame_rate"))
    nb_frames = _int(v.get("nb_frames"))
    duration = _float(v.get("duration")) or _float(fmt.get("duration"))
    fps = avg or (nb_frames / duration if nb_frames and duration else None) or real
    if not fps or fps > 1000:
        raise MediaError("probe_failed", f"no usable frame rate (avg {avg}, r {real})")
    if duration is None or duration <= 0:
        if nb_frames:
            duration = nb_frames / fps
        else:
            raise MediaError("probe_failed", "the file reports no duration")
    # r_frame_rate is the lowest rate that represents all timestamps; when it differs
    # from the average the stream is variable-rate (phone footage, screen recordings).
    is_vfr = bool(avg and real and abs(real - avg) / avg > 0.01)
    width, height = _int(v.get("width")), _int(v.get("height"))
    if not width or not height:
        raise MediaError("probe_failed", "the video stream reports no frame size")
    return VideoInfo(
        duration_s=float(duration),
        start_time_s=_float(v.get("start_time")) or 0.0,
        container_start_s=_float(fmt.get("start_time")) or 0.0,
        fps=float(fps),
        is_vfr=is_vfr,
        width=width,
        height=height,
        rotation=_rotation(v),
        video_codec=v.get("codec_name", "unknown"),
        pix_fmt=v.get("pix_fmt"),
        audio_codec=audio[0].get("codec_name") if audio else None,
        has_audio=bool(audio),
        audio_start_s=(_float(audio[0].get("start_time")) or 0.0) if audio else None,
        container=fmt.get("format_name", "unknown"),
        bit_rate=_int(fmt.get("bit_rate")),
        nb_frames=nb_frames,
        bytes=size,
        content_sha256=sha256,
    )


def detect_size(info: VideoInfo, target_width: int) -> tuple[int, int]:
    """Even-sized downscale keeping the display aspect ratio; never upscales."""
    w, h = info.display_size
    width = min(target_width, w)
    height = max(2, int(round(h * width / w / 2)) * 2)
    width = max(2, width // 2 * 2)
    return width, height


@contextlib.contextmanager
def _streamed(args: list[str], block_bytes: int, timeout_s: float, what: str,
              nothing: MediaError, limits: MediaLimits = DEFAULT_LIMITS
              ) -> Iterator[Iterator[bytes]]:
    """Run ffmpeg writing to stdout and stream it in blocks of block_bytes (the last one
    may be shorter). The context yields the block iterator; on exit the process is
    stopped and checked: past timeout_s it is killed (MediaError 'timeout'), and a
    process that wrote nothing at all raises `nothing`, with ffmpeg's message."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err,
                                bufsize=min(block_bytes * 4, 1 << 24))
        _limit_memory(proc.pid, limits)
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        wrote = False

        def blocks() -> Iterator[bytes]:
            nonlocal wrote
            assert proc.stdout is not None
            while buf := proc.stdout.read(block_bytes):
                wrote = True
                yield buf

        try:
            yield blocks()
        finally:
            if proc.stdout:
                proc.stdout.close()
            code = proc.wait()
            timed_out = not watchdog.is_alive()
            watchdog.cancel()
            err.seek(0)
            stderr = err.read()
            tail = _stderr_tail(stderr)
        if timed_out:
            raise MediaError("timeout", f"{what} took longer than {timeout_s:.0f} s")
        if code != 0 and (limit := classify_failure(_stderr_tail(stderr, 4000), code, limits)):
            raise limit
        if not wrote:
            raise MediaError(nothing.error_type,
                             f"{nothing} (exit {code}){': ' + tail if tail else ''}")


@contextlib.contextmanager
def _raw_frames(args: list[str], width: int, height: int, timeout_s: float, what: str,
                limits: MediaLimits = DEFAULT_LIMITS) -> Iterator[Iterator[np.ndarray]]:
    """Stream the frames of ffmpeg writing rawvideo (3 bytes a pixel) to stdout; a
    decoder that gave no frame raises MediaError 'decode_failed'."""
    frame_bytes = width * height * 3
    with _streamed(args, frame_bytes, timeout_s, what,
                   MediaError("decode_failed", "ffmpeg decoded no frame"), limits) as blocks:
        yield (np.frombuffer(buf, np.uint8).reshape(height, width, 3)
               for buf in blocks if len(buf) == frame_bytes)


def _constant_rate(info: VideoInfo) -> str:
    # Frame 0 is the first video frame (timestamps reset, no padding from an earlier
    # audio start), and the fps filter resamples to the average rate, so frame i is at
    # i / fps even when a "constant" stream drops or repeats a frame.
    return f"setpts=PTS-STARTPTS,fps={info.fps:.9f}"


@contextlib.contextmanager
def decode_frames_downscaled(
    path: str, info: VideoInfo, target_width: int, threads: int = 0,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Iterator[Iterator[np.ndarray]]:
    """Decode the first video stream once, downscaled, as BGR frames at a constant rate.

    Variable-rate input is resampled to its average rate, so frame i is at i / fps.
    The context yields an iterator; on exit the decoder is stopped and checked: a
    decoder that failed before the first frame raises MediaError.
    """
    width, height = detect_size(info, target_width)
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
    if threads:
        args += ["-threads", str(threads)]
    # Skipping the in-loop deblocking filter (H.264/HEVC; others ignore it) saves about
    # as much decode time as the downscale costs, and smoothing block edges does not
    # move a shot boundary (golden cut tests hold).
    args += ["-skip_loop_filter", "all"]
    args += [*source_input(path, limits), "-map", "0:v:0", "-an", "-sn", "-dn"]
    args += ["-vf", f"{_constant_rate(info)},scale={width}:{height}:flags=fast_bilinear",
             "-fps_mode", "passthrough"]
    args += ["-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1"]
    with _raw_frames(args, width, height, decode_timeout_s(info.duration_s, limits),
                     "decoding for cut detection", limits) as frames:
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
        args += ["-vf", f"{_constant_rate(info)},select={select_expression(chunk)},"
                        f"scale={width}:{height}", "-fps_mode", "passthrough",
                 "-frames:v", str(len(chunk))]
        args += ["-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
        with _raw_frames(args, width, height, decode_timeout_s(info.duration_s, limits),
                         "reading frames", limits) as frames:
            # Fewer frames than asked when some lie past the end of the stream.
            yield from zip(chunk, frames, strict=False)


def mean_keyframe_interval_s(path: str, window_s: float = 120.0,
                             limits: MediaLimits = DEFAULT_LIMITS) -> float | None:
    """Mean spacing of the video keyframes over the first window_s seconds, from packet
    flags (no decoding); None when the container does not flag them."""
    try:
        packets = _packets(path, window_s, limits)
    except MediaError:
        return None
    keys = [t for t, key in packets if key]
    if len(keys) < 2:
        return None
    # The listed span over the keyframe count: one keyframe, the whole span.
    return (max(t for t, _ in packets) - min(keys)) / len(keys)


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
    with _streamed(args, 1 << 20, decode_timeout_s(info.duration_s, limits),
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


def _packets(path: str, window_s: float | None = None,
             limits: MediaLimits = DEFAULT_LIMITS) -> list[tuple[float, bool]]:
    """(time, is keyframe) of the first video stream's packets, from packet flags (no
    decoding), over the first window_s seconds or the whole file."""
    args = ["ffprobe", "-v", "error", "-select_streams", "v:0"]
    if window_s is not None:
        args += ["-read_intervals", f"%+{window_s:g}"]
    args += ["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0",
             *source_input(path, limits)]
    size = os.path.getsize(localise(path)) if window_s is None else 0
    out = run_tool(args, max(PROBE_TIMEOUT_S, listing_timeout_s(size, limits)),
                   "listing keyframes", limits)
    if out.returncode != 0:
        raise MediaError("probe_failed", f"cannot list keyframes: {_stderr_tail(out.stderr)}")
    packets = []
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        pts, _, flags = line.partition(",")
        if (t := _float(pts)) is not None:
            packets.append((t, "K" in flags))
    return packets


def keyframe_times(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> list[float]:
    """Presentation times of the video keyframes, from packet flags (no decoding)."""
    return sorted(t for t, key in _packets(path, None, limits) if key)


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
        raise MediaError("cut_failed", f"ffmpeg could not cut the clip: {_stderr_tail(out.stderr)}")


def media_duration(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> float:
    """Duration of the video stream of a cut clip (audio packets may run a little longer)."""
    data = probe(path, limits)
    for stream in data.get("streams", []):
        if stream.get("codec_type") == "video" and (d := _float(stream.get("duration"))):
            return d
    fmt = _float(data.get("format", {}).get("duration"))
    if fmt is None:
        raise MediaError("probe_failed", "cut clip reports no duration")
    return fmt


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
            f"{_stderr_tail(out.stderr)}",
        )


def publish(local_path: str, dest_uri: str) -> None:
    """Move a finished local file to its final place; the local file is consumed.

    Local targets get a rename (atomic within one file system; a copy to a temporary
    name and a rename across file systems). Other file systems (gs://, s3://, ...) go
    through Beam's FileSystems, whose object stores show a file only once complete.
    """
    if is_local(dest_uri):
        dest = dest_uri.removeprefix("file://")
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        try:
            os.replace(local_path, dest)
        except OSError:
            tmp = f"{dest}.tmp-{os.getpid()}"
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest)
            os.remove(local_path)
        return
    with open(local_path, "rb") as src, FileSystems.create(dest_uri) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    os.remove(local_path)


# ------------------------------------------------------------------ local copies
# Stages after Fetch may run on another worker than the download: files staged in a
# shared store (gs://, s3://, ...) are copied to a per-worker cache when first read.
CACHE_DIR = os.path.join(tempfile.gettempdir(), "vidcurate-cache")
CACHE_BYTES = 20 * 1024**3
_cache_lock = threading.Lock()


def localise(uri: str) -> str:
    """A local path for uri: itself when local, else a cached copy (LRU, bounded)."""
    if not is_remote(uri):
        return uri.removeprefix("file://")
    name = hashlib.sha256(uri.encode()).hexdigest()[:24] + os.path.splitext(
        uri.rsplit("/", 1)[-1])[1][:8]
    path = os.path.join(CACHE_DIR, name)
    with _cache_lock:
        if os.path.exists(path):
            os.utime(path)  # most recently used
            return path
        os.makedirs(CACHE_DIR, exist_ok=True)
        tmp = f"{path}.part-{os.getpid()}-{threading.get_ident()}"
        try:
            with FileSystems.open(uri) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except Exception as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise MediaError("stage_read_failed", f"cannot copy {uri} to this worker: "
                             f"{type(e).__name__}: {e}") from e
        os.replace(tmp, path)
        _evict(keep=path)
    return path


def _evict(keep: str) -> None:
    entries = []
    for name in os.listdir(CACHE_DIR):
        full = os.path.join(CACHE_DIR, name)
        if full != keep and ".part-" not in name:
            st = os.stat(full)
            entries.append((st.st_mtime, st.st_size, full))
    total = sum(size for _, size, _ in entries) + os.path.getsize(keep)
    for _, size, full in sorted(entries):
        if total <= CACHE_BYTES:
            break
        os.remove(full)
        total -= size


def forget(uri: str) -> None:
    """Drop this worker's cached copy of uri (its video is done)."""
    if is_remote(uri):
        name = hashlib.sha256(uri.encode()).hexdigest()[:24]
        with _cache_lock:
            for entry in os.listdir(CACHE_DIR) if os.path.isdir(CACHE_DIR) else []:
                if entry.startswith(name):
                    os.remove(os.path.join(CACHE_DIR, entry))


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, check=False)
    first = out.stdout.decode("utf-8", "replace").splitlines()
    return first[0] if first else "unknown"


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
