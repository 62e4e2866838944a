"""What a file holds, without decoding: ffprobe JSON into VideoInfo, packet listings
(verified duration, keyframes) and the duration of cut clips.
"""

from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction
from typing import Any, NamedTuple

from vidcurate.schemas.records import VideoInfo
from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    PROBE_TIMEOUT_S,
    MediaError,
    MediaLimits,
    NoVideoStream,
    ToolStopped,
    listing_timeout_s,
)
from vidcurate.transforms.media.storage import localise
from vidcurate.transforms.media.tools import (
    check_format,
    run_tool,
    source_input,
    stderr_tail,
    streamed,
)


def probe(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """ffprobe's JSON (format and streams), time- and memory-limited; only allowed
    container formats are opened (MediaError 'format_not_allowed' otherwise)."""
    args = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json",
            *source_input(path, limits)]
    out = run_tool(args, PROBE_TIMEOUT_S, "ffprobe", limits)
    if out.returncode != 0:
        detail = stderr_tail(out.stderr) or "ffprobe exited with an error"
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
    with streamed(args, 1 << 16, listing_timeout_s(size_bytes, limits), "listing packets",
                   MediaError("probe_failed", "the file holds no video packet"),
                   limits) as blocks:
        for block in blocks:
            *lines, rest = (rest + block).split(b"\n")
            for line in lines:
                pts, _, dts = line.decode("ascii", "replace").partition(",")
                t = as_float(pts) if pts not in ("", "N/A") else as_float(dts)
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


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def as_float(value: Any) -> float | None:
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
        if "rotation" in side and as_float(side["rotation"]) is not None:
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
    duration = as_float(v.get("duration")) or as_float(fmt.get("duration"))
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
        start_time_s=as_float(v.get("start_time")) or 0.0,
        container_start_s=as_float(fmt.get("start_time")) or 0.0,
        fps=float(fps),
        is_vfr=is_vfr,
        width=width,
        height=height,
        rotation=_rotation(v),
        video_codec=v.get("codec_name", "unknown"),
        pix_fmt=v.get("pix_fmt"),
        audio_codec=audio[0].get("codec_name") if audio else None,
        has_audio=bool(audio),
        audio_start_s=(as_float(audio[0].get("start_time")) or 0.0) if audio else None,
        container=fmt.get("format_name", "unknown"),
        bit_rate=_int(fmt.get("bit_rate")),
        nb_frames=nb_frames,
        bytes=size,
        content_sha256=sha256,
    )


def mean_keyframe_interval_s(path: str, window_s: float = 120.0,
                             limits: MediaLimits = DEFAULT_LIMITS) -> float | None:
    """Mean spacing of the video keyframes over the first window_s seconds, from packet
    flags (no decoding); None when the container does not flag them."""
    try:
        packets = _packets(path, window_s, limits)
    except ToolStopped:
        raise  # the run's environment, not the file's flags
    except MediaError:
        return None
    keys = [t for t, key in packets if key]
    if len(keys) < 2:
        return None
    # The listed span over the keyframe count: one keyframe, the whole span.
    return (max(t for t, _ in packets) - min(keys)) / len(keys)


def _packets(path: str, window_s: float | None = None,
             limits: MediaLimits = DEFAULT_LIMITS) -> list[tuple[float, bool]]:
    """(time, is keyframe) of the first video stream's packets, from packet flags (no
    decoding), over the first window_s seconds or the whole file."""
    packets = []
    for line in _packet_lines(path, "pts_time,flags", "keyframes", limits, window_s):
        pts, _, flags = line.partition(",")
        if (t := as_float(pts)) is not None:
            packets.append((t, "K" in flags))
    return packets


def keyframe_times(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> list[float]:
    """Presentation times of the video keyframes, from packet flags (no decoding)."""
    return sorted(t for t, key in _packets(path, None, limits) if key)


def media_duration(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> float:
    """Duration of the video stream of a cut clip (audio packets may run a little longer)."""
    data = probe(path, limits)
    for stream in data.get("streams", []):
        if stream.get("codec_type") == "video" and (d := as_float(stream.get("duration"))):
            return d
    fmt = as_float(data.get("format", {}).get("duration"))
    if fmt is None:
        raise MediaError("probe_failed", "cut clip reports no duration")
    return fmt


class VideoPacket(NamedTuple):
    """One packet of the first video stream, in decode (file) order; times in seconds on
    the source's own timeline (not shifted to frame 0). None where the container gives
    no value (AVI and raw streams may lack pts)."""

    pts_s: float | None
    dts_s: float | None
    duration_s: float | None
    key: bool


def video_packets(path: str, limits: MediaLimits = DEFAULT_LIMITS) -> list[VideoPacket]:
    """Every packet of the first video stream in decode order (no decoding): what an exact
    stream copy needs to know which packets hold which frames."""
    packets = []
    for line in _packet_lines(path, "pts_time,dts_time,duration_time,flags", "packets",
                              limits):
        fields = line.split(",")
        if len(fields) < 4:
            continue
        pts, dts, duration, flags = fields[:4]
        packets.append(VideoPacket(as_float(pts), as_float(dts), as_float(duration),
                                   "K" in flags))
    return packets


def _packet_lines(path: str, entries: str, what: str, limits: MediaLimits,
                  window_s: float | None = None) -> list[str]:
    """ffprobe's CSV lines of the first video stream's packets (the given entries), over
    the first window_s seconds or the whole file; MediaError when it cannot list them."""
    args = ["ffprobe", "-v", "error", "-select_streams", "v:0"]
    if window_s is not None:
        args += ["-read_intervals", f"%+{window_s:g}"]
    args += ["-show_entries", f"packet={entries}", "-of", "csv=p=0",
             *source_input(path, limits)]
    try:
        size = os.path.getsize(localise(path)) if window_s is None else 0
    except OSError as e:
        raise MediaError("probe_failed", f"cannot list {what}: {e.strerror}") from e
    out = run_tool(args, max(PROBE_TIMEOUT_S, listing_timeout_s(size, limits)),
                   f"listing {what}", limits)
    if out.returncode != 0:
        raise MediaError("probe_failed", f"cannot list {what}: {stderr_tail(out.stderr)}")
    return out.stdout.decode("utf-8", "replace").splitlines()
