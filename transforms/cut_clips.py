"""CutClips: fan a split video out to clips, cut clip media and read keyframes by seeking.

Clip ids are deterministic (video id, frame span, split-parameter hash), and so are
the media and keyframe paths derived from them: a rerun overwrites, never duplicates.
After the fan-out a Reshuffle spreads one long video's clips over workers.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from vidcurate.schemas.records import (
    ClipRecord,
    ClipSignals,
    ClipTask,
    Span,
    SplitVideo,
    VideoInfo,
)
from vidcurate.transforms.core import AddArgument, check, is_local
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.frame_signals import clip_signals
from vidcurate.transforms.media.cutting import clip_extension, cut_clip, extract_frames
from vidcurate.transforms.media.limits import MediaError, MediaLimits
from vidcurate.transforms.media.probing import keyframe_times, media_duration
from vidcurate.transforms.media.storage import publish
from vidcurate.transforms.models.device import parse_device


@dataclass(frozen=True)
class MediaConfig:
    output: str
    clip_media: str
    keyframes: int
    keyframe_width: int
    ffmpeg_threads: int
    limits: MediaLimits = MediaLimits()
    decode_device: str = "cpu"  # the cut detector's decode: "cpu" or "cuda:N" (NVDEC)

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("clip-media", default="copy", choices=CLIP_MEDIA_MODES,
            help="copy: ffmpeg stream copy (fast, starts at the keyframe before the span); "
            "exact: frame-accurate re-encode; none: no clip files.")
        add("keyframes", type=int, default=3,
            help="JPEG keyframes per clip, spread from 5%% to 95%% of the clip (0 for none).")
        add("keyframe-width", type=int, default=1280,
            help="Keyframes are downscaled to at most this width (0 keeps full size); "
            "OCR reads them, so small on-screen text needs ~1280.")
        add("ffmpeg-threads", type=int, default=0,
            help="Threads per ffmpeg process (0 lets ffmpeg choose).")
        add("decode-device", default="cpu",
            help="Where the cut-detection decode runs: cpu, or cuda / cuda:N for the "
            "GPU's video decoder (NVDEC, scaled on the GPU). Falls back to the CPU, with a "
            "note in runs, when ffmpeg lacks CUDA; per video (counted) when NVDEC fails.")
        MediaLimits.add_arguments(add)

    @classmethod
    def from_options(cls, o: Any, output: str) -> MediaConfig:
        check(
            (0 <= o.keyframes <= 32, f"--keyframes must be in [0, 32], got {o.keyframes}"),
            (o.keyframe_width >= 0, f"--keyframe-width must be >= 0, got {o.keyframe_width}"),
            (o.ffmpeg_threads >= 0, f"--ffmpeg-threads must be >= 0, got {o.ffmpeg_threads}"),
            (parse_device(o.decode_device) is not None
             and parse_device(o.decode_device)[0] in ("cpu", "cuda"),
             f"--decode-device must be cpu, cuda or cuda:N, got {o.decode_device!r}"),
        )
        kind, index = parse_device(o.decode_device) or ("cpu", None)
        return cls(output=output, clip_media=o.clip_media, keyframes=o.keyframes,
                   keyframe_width=o.keyframe_width, ffmpeg_threads=o.ffmpeg_threads,
                   limits=MediaLimits.from_options(o),
                   decode_device="cpu" if kind == "cpu" else f"cuda:{index or 0}")


CLIP_MEDIA_MODES = ("copy", "exact", "none")


PLAN_STAGE = "plan_clips"
STAGE = "cut_clips"
_CLIP_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "vidcurate:clip")
# Keyframes sit between 5% and 95% of the clip: clear of the boundary frames, and at
# the positions Panda-70M's stitching compares.
_KEYFRAME_FIRST, _KEYFRAME_LAST = 0.05, 0.95


def clip_id_for(video_id: str, span: Span, params_hash: str) -> str:
    key = f"{video_id}:{span.start_frame}:{span.end_frame}:{params_hash}"
    return str(uuid.uuid5(_CLIP_NAMESPACE, key))


def keyframe_positions(span: Span, count: int) -> list[float]:
    if count <= 0:
        return []
    if count == 1:
        return [round(span.start_s + span.duration_s / 2, 6)]
    step = (_KEYFRAME_LAST - _KEYFRAME_FIRST) / (count - 1)
    return [round(span.start_s + span.duration_s * (_KEYFRAME_FIRST + i * step), 6)
            for i in range(count)]


def keyframe_at_or_before(keyframes: list[float], t: float, tolerance: float = 1e-3) -> float:
    i = bisect.bisect_right(keyframes, t + tolerance)
    return keyframes[i - 1] if i else 0.0


def plan_clips(split: SplitVideo, media: MediaConfig, params_hash: str) -> list[ClipTask]:
    """One task per span; in copy mode each task knows where stream copy will start.
    Each task carries its span's picture signals and decoder error count."""
    scened = split.scened
    video = scened.video
    info = video.info
    keyframes: list[float] | None = None
    if media.clip_media == "copy" and split.spans:
        keyframes = [t - info.start_time_s
                     for t in keyframe_times(video.local_path, media.limits)]
    keyframe_frames = None
    if scened.decode_log is not None and scened.decode_log.total and split.spans:
        # Damage shows until the next keyframe, where the decoder recovers.
        keyframe_frames = damage_keyframes(video.local_path, info, keyframes, media.limits)
    return [
        ClipTask(
            clip_id=clip_id_for(video.video_id, span, params_hash),
            clip_index=i,
            video_id=video.video_id,
            source_uri=video.source.uri,
            local_path=video.local_path,
            span=span,
            fps=info.fps,
            video_codec=info.video_codec,
            audio_codec=info.audio_codec,
            keyframe_before_start_s=(
                keyframe_at_or_before(keyframes, span.start_s) if keyframes is not None else None
            ),
            seek_offset_s=info.seek_offset_s,
            frame_size=info.display_size,
            signals=clip_signals(span, scened.signals, scened.decode_log, keyframe_frames),
        )
        for i, span in enumerate(split.spans)
    ]


def damage_keyframes(path: str, info: VideoInfo, keyframes: list[float] | None,
                     limits: MediaLimits) -> list[int] | None:
    """A damaged file's keyframes as frame numbers (None when they cannot be listed:
    damage windows then end a few frames after each error)."""
    try:
        times = keyframes if keyframes is not None else [
            t - info.start_time_s for t in keyframe_times(path, limits)]
    except MediaError:
        return None
    return sorted({round(t * info.fps) for t in times})


def signal_columns(signals: ClipSignals | None) -> dict[str, Any]:
    """ClipRecord's picture-signal fields (README "Picture signals") from a task's."""
    return {} if signals is None else dataclasses.asdict(signals)


def media_uri_for(output: str, task: ClipTask, ext: str) -> str:
    return f"{output}/media/{task.video_id}/{task.clip_id}.{ext}"


def keyframe_uri_for(output: str, task: ClipTask, index: int) -> str:
    return f"{output}/keyframes/{task.video_id}/{task.clip_id}_{index}.jpg"


def _scratch_dir(output: str) -> str:
    # Next to a local output, so that finished files are renamed into place, not copied.
    if is_local(output):
        base = os.path.join(output.removeprefix("file://"), ".tmp")
        os.makedirs(base, exist_ok=True)
        return tempfile.mkdtemp(dir=base)
    return tempfile.mkdtemp(prefix="vidcurate-")


def cut_one(task: ClipTask, media: MediaConfig, params_hash: str, run_id: str) -> ClipRecord:
    """Cut the clip's media and keyframes and publish them; raises MediaError."""
    scratch = _scratch_dir(media.output)
    offset = task.seek_offset_s
    try:
        ready: list[tuple[str, str]] = []  # (scratch file, final uri), published together
        media_uri = media_start = media_end = None
        if media.clip_media != "none":
            ext = clip_extension(media.clip_media, task.video_codec, task.audio_codec)
            local = os.path.join(scratch, f"clip.{ext}")
            cut_clip(task.local_path, local, task.span.start_s + offset, task.span.duration_s,
                     media.clip_media, media.ffmpeg_threads, media.limits)
            duration = media_duration(local, media.limits)
            media_start = (task.keyframe_before_start_s if media.clip_media == "copy"
                           and task.keyframe_before_start_s is not None else task.span.start_s)
            media_end = media_start + duration
            media_uri = media_uri_for(media.output, task, ext)
            ready.append((local, media_uri))
        times = keyframe_positions(task.span, media.keyframes)
        uris = [keyframe_uri_for(media.output, task, i) for i in range(len(times))]
        if times:
            frames = [os.path.join(scratch, f"kf{i}.jpg") for i in range(len(times))]
            extract_frames(task.local_path, [t + offset for t in times], frames,
                           media.keyframe_width, media.limits)
            ready.extend(zip(frames, uris, strict=True))
        # Only a clip whose media and keyframes all worked leaves files behind.
        for local, uri in ready:
            publish(local, uri)
        return ClipRecord(
            clip_id=task.clip_id,
            video_id=task.video_id,
            source_uri=task.source_uri,
            clip_index=task.clip_index,
            span=task.span,
            split_params_hash=params_hash,
            media_mode=media.clip_media,
            media_uri=media_uri,
            media_start_s=media_start,
            media_end_s=media_end,
            keyframe_uris=tuple(uris),
            keyframe_times_s=tuple(times),
            run_id=run_id,
            frame_size=task.frame_size,
            **signal_columns(task.signals),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _PlanFn(beam.DoFn):
    def __init__(self, media: MediaConfig, params_hash: str, run_id: str) -> None:
        self.media, self.params_hash, self.run_id = media, params_hash, run_id
        self.metrics = StageMetrics(PLAN_STAGE)

    def process(self, split: SplitVideo) -> Iterator[ClipTask | beam.pvalue.TaggedOutput]:
        if not split.spans:
            return
        video = split.scened.video
        # Untimed: planning has no latency in the runs table; cutting (_CutFn) has.
        yield from guarded(self.metrics, self._plan, split, source_uri=video.source.uri,
                           run_id=self.run_id, video_id=video.video_id, timed=False)

    def _plan(self, split: SplitVideo) -> list[ClipTask]:
        return plan_clips(split, self.media, self.params_hash)


class _CutFn(beam.DoFn):
    def __init__(self, media: MediaConfig, params_hash: str, run_id: str) -> None:
        self.media, self.params_hash, self.run_id = media, params_hash, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, task: ClipTask) -> Iterator[ClipRecord | beam.pvalue.TaggedOutput]:
        yield from guarded(self.metrics, self._cut, task, source_uri=task.source_uri,
                           run_id=self.run_id, video_id=task.video_id, clip_id=task.clip_id)

    def _cut(self, task: ClipTask) -> list[ClipRecord]:
        return [cut_one(task, self.media, self.params_hash, self.run_id)]


class CutClips(beam.PTransform):
    """SplitVideo -> ClipRecord (main) and ErrorRecord ('errors')."""

    def __init__(self, media: MediaConfig, params_hash: str, run_id: str) -> None:
        super().__init__()
        self.media, self.params_hash, self.run_id = media, params_hash, run_id

    def expand(self, splits: beam.PCollection) -> dict[str, beam.PCollection]:
        planned = (
            splits
            | "Plan" >> beam.ParDo(_PlanFn(self.media, self.params_hash, self.run_id))
            .with_outputs(ERRORS, main="tasks"))
        spread = planned["tasks"] | "Spread" >> beam.Reshuffle()
        cut = (
            spread
            | "Cut" >> beam.ParDo(_CutFn(self.media, self.params_hash, self.run_id))
            .with_outputs(ERRORS, main="clips"))
        errors = (planned[ERRORS], cut[ERRORS]) | "MergeErrors" >> beam.Flatten()
        return {"clips": cut["clips"], ERRORS: errors}
