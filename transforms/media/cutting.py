"""Writing clip media and keyframes with ffmpeg: all clips of a video in one process,
each holding exactly the frames its row says.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass

from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    FRAMES_TIMEOUT_S,
    MediaError,
    MediaLimits,
    ToolStopped,
    cut_timeout_s,
)
from vidcurate.transforms.media.probing import VideoPacket
from vidcurate.transforms.media.storage import localise
from vidcurate.transforms.media.tools import ff_path, run_tool, source_input, stderr_tail

# Containers mp4 can take by stream copy; anything else is copied into Matroska.
_MP4_VIDEO = {"h264", "hevc", "mpeg4", "av1", "vp9", "mjpeg", "mpeg2video", "mpeg1video"}


_MP4_AUDIO = {None, "aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}


def clip_extension(mode: str, video_codec: str, audio_codec: str | None) -> str:
    if mode == "copy" and (video_codec not in _MP4_VIDEO or audio_codec not in _MP4_AUDIO):
        return "mkv"
    return "mp4"


@dataclass(frozen=True)
class CopyPlan:
    """Which packets an exact stream copy of a span takes: `packets` packets in decode
    order from the keyframe at `start_s`. They hold exactly the frames shown in
    [start_s, end_s), and each of them decodes from those packets alone.

    Times are on the source's own timeline (ffprobe's pts, not shifted to frame 0)."""

    start_s: float
    end_s: float
    packets: int


# Frame times closer than this are the same time (printing rounds them to microseconds).
_SAME_TIME_S = 1e-4


class PacketIndex:
    """A video's packets (decode order) with what planning each clip's copy looks up:
    built once per video, so that a plan costs the packets of its own span."""

    def __init__(self, packets: list[VideoPacket]) -> None:
        self.packets = packets
        self.shown = sorted(p.pts_s for p in packets if p.pts_s is not None)
        self.keys = sorted((p.pts_s, i) for i, p in enumerate(packets)
                           if p.key and p.pts_s is not None)


def plan_copy(packets: PacketIndex | list[VideoPacket], start_s: float, end_s: float
              ) -> CopyPlan | None:
    """The longest stream copy that starts at the keyframe at or before start_s and ends
    on a frame before end_s, holding every frame in between and nothing else.

    A decoder only references packets it has already read, so any run of packets from a
    keyframe, in decode order, decodes exactly as in the source. With B-frames, though,
    a run cut at an arbitrary packet holds a frame from after the end (the reference the
    last B-frames need) and lacks some before it; so the run ends at the last packet after
    which the frames it holds are all frames from the keyframe on, with no gap. That can
    be up to the stream's B-frame depth earlier than end_s (x264's default: 3 frames);
    re-encoding that tail would be the only way to keep those frames.

    None when no such copy holds a frame of the span, or when the packets lack the
    times needed to tell (then the clip is cut by time, see cut_clips)."""
    index = packets if isinstance(packets, PacketIndex) else PacketIndex(packets)
    at = bisect.bisect_right(index.keys, (start_s + _SAME_TIME_S, len(index.packets)))
    if at:
        key_s, first = index.keys[at - 1]
    elif index.keys and index.keys[0][0] < end_s - _SAME_TIME_S:
        # No keyframe at or before the span (a file starting on a non-key frame): the
        # copy starts at the first keyframe inside it.
        key_s, first = index.keys[0]
    else:
        return None
    # The frames from the keyframe on, in display order: a copy without a gap holds
    # the first len(held) of them.
    shown_from = bisect.bisect_left(index.shown, key_s - _SAME_TIME_S)
    taken = 0  # packets from `first` on that the copy sends
    held = 0  # frames they show
    last = -math.inf  # the latest of those frames
    best: tuple[int, float] | None = None
    for p in index.packets[first:]:
        if p.pts_s is None:
            return None
        if p.pts_s < key_s - _SAME_TIME_S:
            # A leading frame of an open GOP (references the GOP before): the muxer's
            # edit list hides it, it is not a frame the clip shows.
            taken += 1
            continue
        if p.pts_s >= end_s - _SAME_TIME_S:
            break
        taken += 1
        held += 1
        last = max(last, p.pts_s)
        if abs(last - index.shown[shown_from + held - 1]) < _SAME_TIME_S:
            best = (taken, last)
    if best is None or best[1] < start_s - _SAME_TIME_S:
        return None
    taken, last = best
    after = bisect.bisect_right(index.shown, last + _SAME_TIME_S)
    if after < len(index.shown):
        stop = index.shown[after]
    else:  # the last frame of the video: it lasts its packet's duration
        durations = [p.duration_s for p in index.packets if p.pts_s == last and p.duration_s]
        stop = last + (durations[0] if durations else 0.0)
    return CopyPlan(start_s=key_s, end_s=min(stop, end_s), packets=taken)


@dataclass(frozen=True)
class ClipCut:
    """One clip file to write: [start_s, end_s) of the source on the timeline ffmpeg's -ss
    counts (from the container start), into dst. In copy mode `copy` says which packets;
    without it the copy is cut by time (start at the keyframe before, end unchecked)."""

    dst: str
    start_s: float
    end_s: float
    copy: CopyPlan | None = None
    container_start_s: float = 0.0  # where -ss counts from, on the source's own timeline
    frame_pixels: int = 0  # width x height, to bound how many encoders run at once
    audio: bool = True  # whether the source has an audio stream (exact mode encodes it)


# Clips per ffmpeg process. copy: every clip is its own input (one demuxer each; its
# index, a few MB for an hour of video). exact: one decode, but every clip its own
# encoder, alive until the process ends; bounded by frame area, eight 720p encoders.
COPY_CLIPS_PER_PROCESS = 64
_ENCODE_PIXELS_PER_PROCESS = 8 * 1280 * 720

# A stream copy starts at the keyframe itself: -ss just past it (so the demuxer's seek
# lands on it, not on the keyframe before), and an input offset that takes the extra
# back, so the keyframe is at 0 in the clip. One more microsecond keeps the keyframe
# from landing a rounding step before 0, where the clip's edit list would hide it.
_PAST_KEY_S = 1e-4
_ROUNDING_S = 1e-6
# In exact mode -ss sits this much before the first clip's first frame (decoding drops
# frames before -ss; the frame at the span start must not be dropped for rounding), and
# each clip's trim this much before its span's times (a frame exactly at the span's
# start is in, one exactly at its end is out).
_BEFORE_FIRST_S = 5e-4
_TRIM_EARLY_S = 2e-4


def _input_args(cut: ClipCut, src: str, threads: int, limits: MediaLimits) -> list[str]:
    """One input per stream-copied clip (copy mode), seeking to where it starts."""
    args = ["-threads", str(threads)] if threads else []
    if cut.copy is not None:
        seek = cut.copy.start_s - cut.container_start_s + _PAST_KEY_S
        args += ["-ss", f"{seek:.6f}", "-itsoffset", f"{_PAST_KEY_S + _ROUNDING_S:.6f}"]
    else:
        args += ["-ss", f"{cut.start_s:.6f}"]
    return args + source_input(src, limits)


def _output_args(index: int, cut: ClipCut, threads: int) -> list[str]:
    """A stream-copy output (copy mode)."""
    args = ["-map", f"{index}:v:0", "-map", f"{index}:a:0?", "-sn", "-dn",
            "-map_metadata", "-1", "-c", "copy"]
    if cut.copy is not None:
        # The audio ends where the last frame does; the video ends after the planned
        # packets, dropped by count (the packets after them in decode order still come
        # before the end time: they are the frames the cut leaves out).
        args += ["-t", f"{cut.copy.end_s - cut.copy.start_s:.6f}",
                 "-bsf:v", f"noise=drop=gte(n\\,{cut.copy.packets})"]
    else:
        args += ["-t", f"{cut.end_s - cut.start_s:.6f}", "-avoid_negative_ts", "make_zero"]
    if cut.dst.endswith(".mp4"):
        args += ["-movflags", "+faststart"]
    return args + [ff_path(cut.dst)]


def _exact_args(src: str, cuts: list[ClipCut], threads: int, limits: MediaLimits
                ) -> list[str]:
    """One decode from the first clip's start, split to every clip's trim and encoder:
    each clip holds exactly the frames shown in its [start_s, end_s), frames passing one
    to one (variable frame rates stay as they are)."""
    origin = max(0.0, min(c.start_s for c in cuts) - _BEFORE_FIRST_S)
    args = ["-threads", str(threads)] if threads else []
    args += ["-ss", f"{origin:.6f}", *source_input(src, limits)]
    n = len(cuts)
    graph = [f"[0:v:0]split={n}" + "".join(f"[sv{i}]" for i in range(n))]
    audio = all(c.audio for c in cuts)
    if audio:
        graph.append(f"[0:a:0]asplit={n}" + "".join(f"[sa{i}]" for i in range(n)))
    outputs: list[str] = []
    for i, cut in enumerate(cuts):
        start = cut.start_s - origin - _TRIM_EARLY_S
        end = cut.end_s - origin - _TRIM_EARLY_S
        graph.append(f"[sv{i}]trim=start={start:.6f}:end={end:.6f},setpts=PTS-STARTPTS[v{i}]")
        outputs += ["-map", f"[v{i}]"]
        if audio:
            graph.append(f"[sa{i}]atrim=start={start:.6f}:end={end:.6f},"
                         f"asetpts=PTS-STARTPTS[a{i}]")
            outputs += ["-map", f"[a{i}]", "-c:a", "aac", "-b:a", "128k"]
        if threads:
            outputs += ["-threads", str(threads)]
        outputs += ["-fps_mode", "passthrough", "-map_metadata", "-1",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                    "-pix_fmt", "yuv420p"]
        if cut.dst.endswith(".mp4"):
            outputs += ["-movflags", "+faststart"]
        outputs.append(ff_path(cut.dst))
    return args + ["-filter_complex", ";".join(graph), *outputs]


def _batches(cuts: list[ClipCut], mode: str) -> list[list[int]]:
    if mode == "copy":
        size = COPY_CLIPS_PER_PROCESS
    else:
        pixels = max((c.frame_pixels for c in cuts), default=0) or 1920 * 1080
        size = max(1, _ENCODE_PIXELS_PER_PROCESS // pixels)
    order = list(range(len(cuts)))
    return [order[i:i + size] for i in range(0, len(order), size)]


def _written(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0


def _cut_batch(src: str, cuts: list[ClipCut], mode: str, threads: int,
               limits: MediaLimits) -> MediaError | None:
    """One ffmpeg process writing every clip of `cuts`; the process's failure, if any.
    Raises ToolStopped: what a stopped process left is no clip, and cutting the clips
    again one by one would only meet the same environment."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
    if mode == "exact":
        args += _exact_args(src, cuts, threads, limits)
        # It decodes from the first clip's start to the last one's end.
        total_s = max(c.end_s for c in cuts) - min(c.start_s for c in cuts)
    else:
        for cut in cuts:
            args += _input_args(cut, src, threads, limits)
        for i, cut in enumerate(cuts):
            args += _output_args(i, cut, threads)
        total_s = sum(max(0.0, c.end_s - c.start_s) for c in cuts)
    # Bounded by the clips' length: one process does the work of all of them.
    what = "cutting the clip" if len(cuts) == 1 else f"cutting {len(cuts)} clips"
    try:
        out = run_tool(args, cut_timeout_s(total_s, limits), what, limits)
    except ToolStopped:
        raise
    except MediaError as e:
        return e
    if out.returncode != 0:
        return MediaError("cut_failed", f"ffmpeg could not cut the clip: "
                                        f"{stderr_tail(out.stderr)}")
    return None


def cut_clips(src: str, cuts: list[ClipCut], mode: str, threads: int = 0,
              limits: MediaLimits = DEFAULT_LIMITS) -> list[MediaError | None]:
    """Write every clip of one source, all in one ffmpeg process (or a few, see
    COPY_CLIPS_PER_PROCESS), and say per clip whether it failed.

    copy: stream copy. With a CopyPlan the clip holds exactly the planned packets: it
    starts on the keyframe at or before the span and ends on the last frame that decodes
    from the copied packets (plan_copy); without one it is cut by time.
    exact: re-encode (H.264 / AAC) of exactly the frames in [start_s, end_s).

    When the shared process fails, or leaves a clip unwritten, each such clip is cut
    again on its own, so that one bad stretch of the source costs only its own clips.
    A process the run's environment stopped (a signal, --tool-memory-mb, the time
    limit) fails them all: ToolStopped is raised, and no clip is a result."""
    if mode not in ("copy", "exact"):
        raise ValueError(f"unknown clip media mode {mode!r}")
    results: list[MediaError | None] = [None] * len(cuts)
    for batch in _batches(cuts, mode):
        failure = _cut_batch(src, [cuts[i] for i in batch], mode, threads, limits)
        redo = batch if failure is not None and len(batch) > 1 else [
            i for i in batch if not _written(cuts[i].dst)]
        if failure is not None and len(batch) == 1:
            results[batch[0]] = failure
            continue
        for i in redo:
            alone = _cut_batch(src, [cuts[i]], mode, threads, limits)
            if alone is None and not _written(cuts[i].dst):
                alone = MediaError("cut_failed", "ffmpeg wrote no clip (no frame of the "
                                   "span could be read)")
            results[i] = alone
    return results


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
