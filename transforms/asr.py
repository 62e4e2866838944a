"""Transcribe: Whisper once per video, guarded against hallucination, sliced to clips.

Audio is extracted once per video (16 kHz mono, aligned to the first video frame) and
transcribed in windows of a couple of minutes that end at quiet moments, so context
crosses clip boundaries and memory does not grow with the video. Guards then drop segments
Whisper is known to invent on silence and music; each dropped segment keeps the name of
its guard. AttachTranscripts gives every clip the words whose midpoint lies in its
span, and the segments those words came from.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import (
    AsrResult,
    AsrTask,
    ClipRecord,
    DroppedSegment,
    ProbedVideo,
    Segment,
    Word,
)
from vidcurate.transforms.errors import ERRORS, StageMetrics
from vidcurate.transforms.inference import FAILED, RESULTS, Infer
from vidcurate.transforms.media.audio import audio_windows
from vidcurate.transforms.media.limits import DEFAULT_LIMITS, MediaError, MediaLimits
from vidcurate.transforms.models.whisper import (
    SAMPLE_RATE,
    AsrConfig,
    Transcript,
    transcribe_array,
)

STAGE = "asr"
GUARDS = ("unvoiced", "no_speech", "low_logprob", "repetition")


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """Voiced spans in seconds, by the Silero VAD that ships with faster-whisper."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE)
            for r in get_speech_timestamps(audio, VadOptions())]


def voiced_fraction(start: float, end: float, regions: Sequence[tuple[float, float]]) -> float:
    if end <= start:
        return 0.0
    overlap = sum(max(0.0, min(end, b) - max(start, a)) for a, b in regions)
    return overlap / (end - start)


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(gzip.compress(raw)) if raw else 0.0


def max_ngram_count(text: str, n: int = 3) -> int:
    words = text.casefold().split()
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return max(grams.values(), default=0)


def guard_for(seg: Segment, regions: Sequence[tuple[float, float]] | None,
              cfg: AsrConfig) -> str | None:
    """The first guard that rejects this segment, or None to keep it."""
    if regions is not None and voiced_fraction(seg.start, seg.end, regions) < cfg.min_voiced:
        return "unvoiced"
    if seg.no_speech_prob > cfg.no_speech_threshold:
        return "no_speech"
    if seg.avg_logprob < cfg.logprob_threshold:
        return "low_logprob"
    if (max(seg.compression_ratio, compression_ratio(seg.text))
            > cfg.compression_ratio_threshold
            or max_ngram_count(seg.text) > cfg.max_ngram_repeats):
        return "repetition"
    return None


def apply_guards(segments: Iterable[Segment], regions: Sequence[tuple[float, float]] | None,
                 cfg: AsrConfig) -> tuple[tuple[Segment, ...], tuple[DroppedSegment, ...]]:
    kept, dropped = [], []
    for seg in segments:
        if not seg.text.strip():
            continue
        guard = guard_for(seg, regions, cfg)
        if guard is None:
            kept.append(seg)
        else:
            dropped.append(DroppedSegment(seg.start, seg.end, seg.text, guard))
    return tuple(kept), tuple(dropped)


def _shift(seg: Segment, by: float) -> Segment:
    if not by:
        return seg
    return dataclasses.replace(
        seg, start=seg.start + by, end=seg.end + by,
        words=tuple(dataclasses.replace(w, start=w.start + by, end=w.end + by)
                    for w in seg.words))


def transcribe_task(task: AsrTask, model: Any, cfg: AsrConfig,
                    limits: MediaLimits = DEFAULT_LIMITS) -> AsrResult | MediaError:
    """Whisper over the video's audio, guards applied; a MediaError for bad audio.

    The audio streams in windows of at most cfg.window_s, each ending at a quiet moment
    (Whisper itself reads 30 s at a time, and conditioning on earlier text is off), so
    memory holds one window's features rather than the whole video's.
    """
    base = AsrResult(video_id=task.video_id, source_uri=task.source_uri,
                     model_id=cfg.model_id)
    kept: list[Segment] = []
    dropped: list[DroppedSegment] = []
    # The language of the first window with speech (of the first window when none has).
    first: tuple[str | None, float | None] | None = None
    spoken: tuple[str | None, float | None] | None = None
    samples = 0
    try:
        for start, audio in audio_windows(task.local_path, task.info, SAMPLE_RATE,
                                          cfg.window_s, limits=limits):
            samples += audio.size
            if audio.size < SAMPLE_RATE // 10:
                continue
            transcript: Transcript = transcribe_array(model, audio, cfg)
            regions = speech_regions(audio) if cfg.vad else None
            window_kept, window_dropped = apply_guards(transcript.segments, regions, cfg)
            kept.extend(_shift(s, start) for s in window_kept)
            dropped.extend(dataclasses.replace(d, start=d.start + start, end=d.end + start)
                           for d in window_dropped)
            language = (transcript.language, transcript.language_probability)
            first = first or language
            spoken = spoken or (language if window_kept else None)
    except MediaError as e:
        return e
    base = dataclasses.replace(base, audio_s=samples / SAMPLE_RATE)
    if samples < SAMPLE_RATE // 10:
        return dataclasses.replace(base, note="the audio stream holds less than 0.1 s")
    language, probability = spoken or first or (None, None)
    return dataclasses.replace(base, segments=tuple(kept), dropped=tuple(dropped),
                               language=language, language_probability=probability)


def _mid(start: float, end: float) -> float:
    return (start + end) / 2


def slice_transcript(result: AsrResult, start: float, end: float
                     ) -> tuple[str, tuple[Segment, ...], tuple[Word, ...],
                                tuple[DroppedSegment, ...]]:
    """The clip's share of a video transcript: words whose midpoint is in [start, end),
    each segment cut down to those words (segments without word times go whole, by their
    own midpoint), and the dropped segments by midpoint."""
    segments, words = [], []
    for seg in result.segments:
        if seg.words:
            mine = tuple(w for w in seg.words if start <= _mid(w.start, w.end) < end)
            if not mine:
                continue
            text = "".join(w.word for w in mine).strip()
            segments.append(dataclasses.replace(seg, start=mine[0].start, end=mine[-1].end,
                                                text=text, words=mine))
            words.extend(mine)
        elif start <= _mid(seg.start, seg.end) < end:
            segments.append(seg)
    text = " ".join(s.text for s in segments)
    dropped = tuple(d for d in result.dropped if start <= _mid(d.start, d.end) < end)
    return text, tuple(segments), tuple(words), dropped


def attach(clip: ClipRecord, result: AsrResult) -> ClipRecord:
    if result.note:  # no usable audio: null transcript, the reason is on the video
        return clip
    text, segments, words, dropped = slice_transcript(result, clip.span.start_s,
                                                      clip.span.end_s)
    return dataclasses.replace(clip, transcript=text, transcript_segments=segments,
                               transcript_words=words, transcript_dropped=dropped)


def _task(video: ProbedVideo) -> AsrTask:
    return AsrTask(video.video_id, video.source.uri, video.local_path, video.info)


def _each_task_failed(failure: tuple[list[AsrTask], Exception]
                      ) -> Iterator[tuple[AsrTask, Exception]]:
    batch, exc = failure
    for task in batch:
        yield task, exc


class _Collect(beam.DoFn):
    """RunInference output -> AsrResult, or an error row for this video."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.metrics = StageMetrics(STAGE)
        self.audio_s = Metrics.counter(STAGE, "audio_seconds")
        self.dropped = {g: Metrics.counter(STAGE, f"dropped_{g}") for g in GUARDS}

    def process(self, item: tuple[AsrTask, AsrResult | Exception]) -> Iterator[Any]:
        task, outcome = item
        if isinstance(outcome, Exception):
            yield self.metrics.failure(outcome, source_uri=task.source_uri,
                run_id=self.run_id, video_id=task.video_id)
            return
        self.metrics.processed.inc()
        self.audio_s.inc(int(round(outcome.audio_s)))
        for d in outcome.dropped:
            self.dropped[d.guard].inc()
        yield outcome


def _no_audio(video: ProbedVideo, model_id: str) -> AsrResult:
    Metrics.counter(STAGE, "skipped").inc()
    return AsrResult(video_id=video.video_id, source_uri=video.source.uri, model_id=model_id,
                     note="no audio stream")


class Transcribe(beam.PTransform):
    """ProbedVideo -> AsrResult (main, one per video) and ErrorRecord ('errors')."""

    def __init__(self, cfg: AsrConfig, run_id: str,
                 limits: MediaLimits = DEFAULT_LIMITS) -> None:
        super().__init__()
        self.cfg, self.run_id, self.limits = cfg, run_id, limits

    def expand(self, videos: beam.PCollection) -> dict[str, beam.PCollection]:
        from vidcurate.transforms.models.handlers import WhisperModelHandler

        with_audio = videos | "HasAudio" >> beam.Filter(lambda v: v.info.has_audio)
        silent = (videos
                  | "NoAudio" >> beam.Filter(lambda v: not v.info.has_audio)
                  | "NoTranscript" >> beam.Map(_no_audio, self.cfg.model_id))
        # The handler loads and runs Whisper; the processing around it is ours.
        handler = WhisperModelHandler(
            self.cfg, functools.partial(transcribe_task, cfg=self.cfg, limits=self.limits),
            self.cfg.batch_size)
        whisper = (
            with_audio
            | "Tasks" >> beam.Map(_task)
            | "Spread" >> beam.Reshuffle()
            | "Whisper" >> Infer(handler, model_identifier=f"asr:{self.cfg.backend}:"
                                 f"{self.cfg.model_path or self.cfg.model}")
        )
        # The handler catches each video's failure; a batch that raises anyway (a bug in
        # a backend) still ends as one error row per video.
        failed = whisper[FAILED] | "FailedBatches" >> beam.FlatMap(_each_task_failed)
        collected = (
            (whisper[RESULTS], failed) | "Outcomes" >> beam.Flatten()
            | "Guarded" >> beam.ParDo(_Collect(self.run_id))
            .with_outputs(ERRORS, main="results"))
        results = (collected["results"], silent) | "AllResults" >> beam.Flatten()
        return {"results": results, ERRORS: collected[ERRORS]}


def _attach_all(item: tuple[str, dict[str, Iterable[Any]]]) -> Iterator[ClipRecord]:
    _, parts = item
    result = next(iter(parts["asr"]), None)
    for clip in parts["clips"]:
        yield attach(clip, result) if result is not None else clip


class AttachTranscripts(beam.PTransform):
    """(clips, ASR results) -> clips with their slice of their video's transcript."""

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:
        return (
            {"clips": parts["clips"] | "KeyClips" >> beam.Map(lambda c: (c.video_id, c)),
             "asr": parts["asr"] | "KeyAsr" >> beam.Map(lambda r: (r.video_id, r))}
            | "ByVideo" >> beam.CoGroupByKey()
            | "Slice" >> beam.FlatMap(_attach_all)
        )
