"""CutClips: plan a split video's clips, cut all their media in one ffmpeg process and
write their keyframes.

Keyframes are the JPEG bytes of the detect decode's frame sample (the sampled frame
nearest each wanted position, inside the clip); only a clip the sample cannot serve
(no sample, a clip shorter than the sample interval) has its keyframes read by seeking.

Clip ids are deterministic (video id, frame span, split-parameter hash), and so are
the media and keyframe paths derived from them: a rerun overwrites, never duplicates.
The unit of cutting is the video (one process writes all its clips, see
media.cutting.cut_clips); a Reshuffle spreads the videos over workers, and each clip
still ends as its own row or error row.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from vidcurate.schemas.records import (
    ClipRecord,
    ClipSignals,
    ClipTask,
    FrameSample,
    Span,
    SplitVideo,
    VideoInfo,
)
from vidcurate.transforms.core import AddArgument, auto_or_count, check, is_local
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.frame_signals import clip_signals
from vidcurate.transforms.media.cutting import (
    ClipCut,
    CopyPlan,
    PacketIndex,
    clip_extension,
    cut_clips,
    extract_frames,
    plan_copy,
)
from vidcurate.transforms.media.decoding import nearest_sample
from vidcurate.transforms.media.limits import MediaError, MediaLimits, ToolStopped
from vidcurate.transforms.media.probing import keyframe_times, media_duration, video_packets
from vidcurate.transforms.media.storage import publish
from vidcurate.transforms.media.tools import auto_ffmpeg_threads
from vidcurate.transforms.models.device import parse_device, usable_cores


@dataclass(frozen=True)
class MediaConfig:
    output: str
    clip_media: str
    keyframes: int
    keyframe_width: int
    ffmpeg_threads: int  # per ffmpeg a worker runs one at a time (cutting); 0: ffmpeg's
    limits: MediaLimits = MediaLimits()
    decode_device: str = "cpu"  # the cut detector's decode: "cpu" or "cuda:N" (NVDEC)
    video_concurrency: int = 1  # videos one DoFn instance decodes at a time, in threads
    decode_threads: int = 0  # per cut-detection decode (video_concurrency of them at once)
    notes: tuple[str, ...] = ()  # how --ffmpeg-threads auto was resolved, for runs.notes

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("clip-media", default="copy", choices=CLIP_MEDIA_MODES,
            help="copy: ffmpeg stream copy (fast; starts at the keyframe at or before the "
            "span, ends on the last frame its packets decode, at most the B-frame depth "
            "before the span's end; media_start_s/media_end_s say where); exact: "
            "frame-accurate re-encode; none: no clip files.")
        add("keyframes", type=int, default=3,
            help="JPEG keyframes per clip, spread from 5%% to 95%% of the clip (0 for none).")
        add("keyframe-width", type=int, default=1280,
            help="Keyframes are downscaled to at most this width (0 keeps full size); "
            "OCR reads them, so small on-screen text needs ~1280.")
        add("ffmpeg-threads", default="auto",
            help="Threads per ffmpeg process (0 lets ffmpeg choose: a thread per core). "
            "auto: where the DirectRunner runs several ffmpeg processes at once, the cores "
            "shared between them (cut detection: its workers times --video-concurrency; "
            "cutting clips: its workers), since extra frame threads cost CPU another "
            "process could use; 0 where one runs at a time, and on other runners.")
        add("decode-device", default="cpu",
            help="Where the cut-detection decode runs: cpu, or cuda / cuda:N for the "
            "GPU's video decoder (NVDEC, scaled on the GPU). Falls back to the CPU, with a "
            "note in runs, when ffmpeg lacks CUDA; per video (counted) when NVDEC fails.")
        add("video-concurrency", default="auto",
            help="Videos one worker decodes for cut detection at the same time, in "
            "threads (ffmpeg does the work, so they overlap). auto: the cores, on the "
            "in-memory DirectRunner, which runs a stage's whole input in one thread; 1 "
            "where the runner already runs a process or a thread per core "
            "(multi_processing, multi_threading, distributed runners).")
        MediaLimits.add_arguments(add)

    @classmethod
    def from_options(cls, o: Any, output: str, auto_concurrency: int = 1,
                     workers: int | None = None) -> MediaConfig:
        """auto_concurrency: what --video-concurrency auto means on this run's runner;
        workers: the DirectRunner's worker processes or threads on this machine (None on
        other runners, whose workers per machine the launcher cannot know)."""
        concurrency = auto_or_count(o.video_concurrency, "--video-concurrency", 1, 64)
        threads = auto_or_count(o.ffmpeg_threads, "--ffmpeg-threads", 0, 256)
        check(
            (0 <= o.keyframes <= 32, f"--keyframes must be in [0, 32], got {o.keyframes}"),
            (o.keyframe_width >= 0, f"--keyframe-width must be >= 0, got {o.keyframe_width}"),
            (parse_device(o.decode_device) is not None
             and parse_device(o.decode_device)[0] in ("cpu", "cuda"),
             f"--decode-device must be cpu, cuda or cuda:N, got {o.decode_device!r}"),
        )
        kind, index = parse_device(o.decode_device) or ("cpu", None)
        video_concurrency = auto_concurrency if concurrency is None else concurrency
        notes: tuple[str, ...] = ()
        if threads is None:
            # Cut detection decodes video_concurrency videos at once in each worker;
            # cutting runs one ffmpeg per worker.
            decodes = workers * video_concurrency if workers else None
            decode_threads = auto_ffmpeg_threads(usable_cores(), decodes)
            ffmpeg_threads = auto_ffmpeg_threads(usable_cores(), workers)
            if decode_threads or ffmpeg_threads:
                notes = (f"--ffmpeg-threads auto: {decode_threads or 'ffmpeg-chosen'} "
                         f"thread(s) per cut-detection decode, up to {decodes} at a time; "
                         f"{ffmpeg_threads or 'ffmpeg-chosen'} per other ffmpeg process, "
                         f"{workers} at a time",)
        else:
            ffmpeg_threads = decode_threads = threads
        return cls(output=output, clip_media=o.clip_media, keyframes=o.keyframes,
                   keyframe_width=o.keyframe_width, ffmpeg_threads=ffmpeg_threads,
                   limits=MediaLimits.from_options(o),
                   decode_device="cpu" if kind == "cpu" else f"cuda:{index or 0}",
                   video_concurrency=video_concurrency, decode_threads=decode_threads,
                   notes=notes)


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
    """One task per span; in copy mode each task knows which packets its stream copy
    takes (plan_copy, from one packet listing of the video) and where it starts and
    ends. Each task carries its span's picture signals and decoder error count."""
    scened = split.scened
    video = scened.video
    info = video.info
    packets = None
    keyframes: list[float] | None = None
    if media.clip_media == "copy" and split.spans:
        packets = PacketIndex(video_packets(video.local_path, media.limits))
        keyframes = [t - info.start_time_s for t, _ in packets.keys]
    keyframe_frames = None
    if scened.decode_log is not None and scened.decode_log.total and split.spans:
        # Damage shows until the next keyframe, where the decoder recovers.
        keyframe_frames = damage_keyframes(video.local_path, info, keyframes, media.limits)
    tasks = []
    for i, span in enumerate(split.spans):
        plan = None if packets is None else plan_copy(
            packets, span.start_s + info.start_time_s, span.end_s + info.start_time_s)
        copy_start = None
        if plan is not None:
            copy_start = plan.start_s - info.start_time_s
        elif keyframes is not None:
            copy_start = keyframe_at_or_before(keyframes, span.start_s)
        tasks.append(ClipTask(
            clip_id=clip_id_for(video.video_id, span, params_hash),
            clip_index=i,
            video_id=video.video_id,
            source_uri=video.source.uri,
            local_path=video.local_path,
            span=span,
            fps=info.fps,
            video_codec=info.video_codec,
            audio_codec=info.audio_codec,
            keyframe_before_start_s=copy_start,
            seek_offset_s=info.seek_offset_s,
            video_start_s=info.start_time_s,
            copy_packets=plan.packets if plan is not None else None,
            copy_end_s=plan.end_s - info.start_time_s if plan is not None else None,
            frame_size=info.display_size,
            signals=clip_signals(span, scened.signals, scened.decode_log, keyframe_frames),
            sample=scened.sample,
        ))
    return tasks


def damage_keyframes(path: str, info: VideoInfo, keyframes: list[float] | None,
                     limits: MediaLimits) -> list[int] | None:
    """A damaged file's keyframes as frame numbers (None when they cannot be listed:
    damage windows then end a few frames after each error)."""
    try:
        times = keyframes if keyframes is not None else [
            t - info.start_time_s for t in keyframe_times(path, limits)]
    except ToolStopped:
        raise  # the run's environment, not the file: the video is done again
    except MediaError:
        return None
    return sorted({round(t * info.fps) for t in times})


def signal_columns(signals: ClipSignals | None) -> dict[str, Any]:
    """ClipRecord's picture-signal fields (docs/quality/signals.md) from a task's."""
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


@dataclass(frozen=True)
class ClipMedia:
    """A clip file written to scratch, and the span of the source it holds: the frames
    shown in [start_s, end_s), times from frame 0 like the span's."""

    local: str
    uri: str
    start_s: float
    end_s: float


def cut_media(tasks: list[ClipTask], media: MediaConfig, scratch: str
              ) -> list[ClipMedia | Exception]:
    """Write the media of all clips of one video (all tasks share a source) in one
    ffmpeg process; per clip, its file or why it failed."""
    if not tasks:
        return []
    first = tasks[0]
    ext = clip_extension(media.clip_media, first.video_codec, first.audio_codec)
    container_start = first.video_start_s - first.seek_offset_s
    cuts = []
    for i, task in enumerate(tasks):
        plan = None
        if (media.clip_media == "copy" and task.copy_packets is not None
                and task.copy_end_s is not None and task.keyframe_before_start_s is not None):
            plan = CopyPlan(start_s=task.keyframe_before_start_s + task.video_start_s,
                            end_s=task.copy_end_s + task.video_start_s,
                            packets=task.copy_packets)
        w, h = task.frame_size or (0, 0)
        cuts.append(ClipCut(
            dst=os.path.join(scratch, f"clip{i}.{ext}"),
            start_s=task.span.start_s + task.seek_offset_s,
            end_s=task.span.end_s + task.seek_offset_s,
            copy=plan, container_start_s=container_start, frame_pixels=w * h,
            audio=task.audio_codec is not None))
    failures = cut_clips(first.local_path, cuts, media.clip_media, media.ffmpeg_threads,
                         media.limits)
    results: list[ClipMedia | Exception] = []
    for task, cut, failure in zip(tasks, cuts, failures, strict=True):
        if failure is not None:
            results.append(failure)
            continue
        uri = media_uri_for(media.output, task, ext)
        if cut.copy is not None:
            # Planned from the packets: exactly what the file holds, no probe needed.
            results.append(ClipMedia(cut.dst, uri,
                                     round(cut.copy.start_s - task.video_start_s, 6),
                                     round(cut.copy.end_s - task.video_start_s, 6)))
            continue
        try:  # also proves the file has a video stream (ffmpeg can write an empty one)
            duration = media_duration(cut.dst, media.limits)
        except ToolStopped:
            raise
        except MediaError as e:
            results.append(e)
            continue
        if media.clip_media == "exact":
            # Re-encoded from exactly the frames shown in the span (variable frame rates
            # too, where the file's duration ends with its last frame, not the span).
            results.append(ClipMedia(cut.dst, uri, task.span.start_s, task.span.end_s))
            continue
        # A stream copy cut by time (packets without timestamps): where it ends is
        # only known from the file.
        start = (task.keyframe_before_start_s if task.keyframe_before_start_s is not None
                 else task.span.start_s)
        results.append(ClipMedia(cut.dst, uri, start, start + duration))
    return results


def write_keyframes(task: ClipTask, media: MediaConfig, scratch: str, prefix: str
                    ) -> tuple[list[float], list[tuple[str, str]]]:
    """The clip's keyframe times and its JPEGs written to scratch, each with its final
    uri (published with the clip's media); raises MediaError."""
    times = keyframe_positions(task.span, media.keyframes)
    if not times:
        return [], []
    uris = [keyframe_uri_for(media.output, task, i) for i in range(len(times))]
    frames = [os.path.join(scratch, f"{prefix}kf{i}.jpg") for i in range(len(times))]
    times = _keyframe_images(task, times, frames, media)
    return times, list(zip(frames, uris, strict=True))


def sampled_keyframes(sample: FrameSample, span: Span, times_s: list[float]
                      ) -> list[int] | None:
    """The sampled image for each wanted keyframe time: the one nearest to it inside the
    span; None when the span holds no sampled frame."""
    picks = []
    for t in times_s:
        k = nearest_sample(sample, round(t * sample.fps), span.start_frame, span.end_frame)
        if k is None:
            return None
        picks.append(k)
    return picks


def _keyframe_images(task: ClipTask, times_s: list[float], dsts: list[str],
                     media: MediaConfig) -> list[float]:
    """Write the clip's keyframes to dsts and return the times they show (seconds from
    frame 0). From the frame sample: its JPEG bytes copied, no decode and no re-encode
    (resized only when the sample is wider than --keyframe-width: stitching needed
    it wider); by seeking where the sample cannot serve the clip. Raises MediaError."""
    sample = task.sample
    picks = sampled_keyframes(sample, task.span, times_s) if sample is not None else None
    if sample is not None and picks is not None:
        try:
            for k, dst in zip(picks, dsts, strict=True):
                if sample.width == media.keyframe_width:
                    shutil.copyfile(sample.path(k), dst)
                else:
                    _write_resized(sample.path(k), dst, media.keyframe_width)
            return [round(sample.frame(k) / sample.fps, 6) for k in picks]
        except OSError:
            pass  # the sample is gone (another worker's disk): read by seeking
    extract_frames(task.local_path, [t + task.seek_offset_s for t in times_s], dsts,
                   media.keyframe_width, media.limits)
    return times_s


def _write_resized(src: str, dst: str, width: int) -> None:
    from PIL import Image

    with Image.open(src) as img:
        if img.width > width:
            img = img.resize((width, max(2, round(img.height * width / img.width / 2) * 2)),
                             Image.Resampling.BICUBIC)
        img.convert("RGB").save(dst, "JPEG", quality=90)


def _clip_record(task: ClipTask, media: MediaConfig, params_hash: str, run_id: str,
                 clip_media: ClipMedia | None, keyframe_times_s: list[float],
                 keyframe_uris: list[str]) -> ClipRecord:
    return ClipRecord(
        clip_id=task.clip_id,
        video_id=task.video_id,
        source_uri=task.source_uri,
        clip_index=task.clip_index,
        span=task.span,
        split_params_hash=params_hash,
        media_mode=media.clip_media,
        media_uri=clip_media.uri if clip_media else None,
        media_start_s=clip_media.start_s if clip_media else None,
        media_end_s=clip_media.end_s if clip_media else None,
        keyframe_uris=tuple(keyframe_uris),
        keyframe_times_s=tuple(keyframe_times_s),
        run_id=run_id,
        frame_size=task.frame_size,
        **signal_columns(task.signals),
    )


def cut_video(tasks: list[ClipTask], media: MediaConfig, params_hash: str, run_id: str
              ) -> list[ClipRecord | Exception]:
    """Cut the media of all clips of one video (one ffmpeg process), read each clip's
    keyframes and publish each clip whose media and keyframes all worked; per clip, its
    record or why it failed. A clip's failure leaves no file of it behind and costs no
    other clip. A tool the run's environment stopped (ToolStopped: a signal, a limit)
    is raised before anything is published: the video is done again, whole."""
    if not tasks:
        return []
    scratch = _scratch_dir(media.output)
    try:
        clip_files: list[ClipMedia | Exception | None] = [None] * len(tasks)
        if media.clip_media != "none":
            clip_files = list(cut_media(tasks, media, scratch))
        # Every clip's files in scratch first, then published: a tool stopped half-way
        # through the keyframes leaves no clip of the video behind.
        prepared: list[tuple[list[float], list[tuple[str, str]]] | Exception] = []
        for i, (task, clip_file) in enumerate(zip(tasks, clip_files, strict=True)):
            if isinstance(clip_file, Exception):
                prepared.append(clip_file)
                continue
            try:
                prepared.append(write_keyframes(task, media, scratch, f"{i}_"))
            except ToolStopped:
                raise
            except Exception as e:  # this clip's error row (guarded), never another's
                prepared.append(e)
        results: list[ClipRecord | Exception] = []
        for task, clip_file, done in zip(tasks, clip_files, prepared, strict=True):
            if isinstance(done, Exception):
                results.append(done)
                continue
            assert not isinstance(clip_file, Exception)
            times, keyframes = done
            try:
                # Only a clip whose media and keyframes all worked leaves files behind.
                ready = ([(clip_file.local, clip_file.uri)] if clip_file else []) + keyframes
                for local, uri in ready:
                    publish(local, uri)
                results.append(_clip_record(task, media, params_hash, run_id, clip_file,
                                            times, [uri for _, uri in keyframes]))
            except Exception as e:  # this clip's error row (guarded), never another's
                results.append(e)
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def cut_one(task: ClipTask, media: MediaConfig, params_hash: str, run_id: str) -> ClipRecord:
    """Cut one clip's media and keyframes and publish them; raises MediaError."""
    result = cut_video([task], media, params_hash, run_id)[0]
    if isinstance(result, Exception):
        raise result
    return result


class _PlanFn(beam.DoFn):
    def __init__(self, media: MediaConfig, params_hash: str, run_id: str) -> None:
        self.media, self.params_hash, self.run_id = media, params_hash, run_id
        self.metrics = StageMetrics(PLAN_STAGE)

    def process(self, split: SplitVideo
                ) -> Iterator[tuple[ClipTask, ...] | beam.pvalue.TaggedOutput]:
        if not split.spans:
            return
        video = split.scened.video
        # Untimed: planning has no latency in the runs table; cutting (_CutFn) has.
        yield from guarded(self.metrics, self._plan, split, source_uri=video.source.uri,
                           run_id=self.run_id, video_id=video.video_id, timed=False)

    def _plan(self, split: SplitVideo) -> list[tuple[ClipTask, ...]]:
        # One element per video: its clips are cut together, by one ffmpeg process.
        return [tuple(plan_clips(split, self.media, self.params_hash))]


def _outcome(result: ClipRecord | Exception) -> list[ClipRecord]:
    if isinstance(result, Exception):
        raise result
    return [result]


class _CutFn(beam.DoFn):
    """All clips of one video; counted, timed and failed per clip."""

    def __init__(self, media: MediaConfig, params_hash: str, run_id: str) -> None:
        self.media, self.params_hash, self.run_id = media, params_hash, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, tasks: tuple[ClipTask, ...]
                ) -> Iterator[ClipRecord | beam.pvalue.TaggedOutput]:
        if not tasks:
            return
        start = time.perf_counter()
        results: list[ClipRecord | Exception]
        try:
            results = cut_video(list(tasks), self.media, self.params_hash, self.run_id)
        except Exception as e:  # the video's shared step failed: every clip's error row
            results = [e] * len(tasks)
        # The runs table's latency stays per clip: each clip's share of the video's time.
        share_ms = int((time.perf_counter() - start) * 1000 / len(tasks))
        for task, result in zip(tasks, results, strict=True):
            self.metrics.latency_ms.update(share_ms)
            yield from guarded(self.metrics, _outcome, result, source_uri=task.source_uri,
                               run_id=self.run_id, video_id=task.video_id,
                               clip_id=task.clip_id, timed=False)


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
