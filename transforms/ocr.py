"""OCR: on-screen text, boxes and text coverage for every clip, from its keyframes.

The RapidOCR engine is loaded once per worker process (models.loading.ProcessCache) and reused
by every thread and DoFn instance there. Per clip: the lines read in each keyframe
(text, confidence, box, keyframe index), the merged text (reading order, duplicates
across keyframes removed), and the fraction of the frame covered by text boxes (max
and mean over keyframes), the signal used to filter text-heavy clips.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import cv2
import numpy as np

from vidcurate.schemas.records import ClipRecord, OcrLine
from vidcurate.transforms.errors import ERRORS, StageMetrics, error_record
from vidcurate.transforms.media.decoding import read_frame
from vidcurate.transforms.media.limits import MediaError
from vidcurate.transforms.models.loading import ProcessCache
from vidcurate.transforms.models.ocr import OcrConfig

STAGE = "ocr"
# Two lines read in different keyframes are the same text when this similar (OCR
# varies a character or two between frames of the same caption).
_SAME_TEXT = 0.85
# Large simple shapes (a bus roof from above, a window frame) are read as "H" or "O"
# with high confidence; real captions that tall hold more than two characters.
_SHAPE_MIN_HEIGHT = 1 / 3
_SHAPE_MAX_CHARS = 2


def lines_from_result(result: Any, width: int, height: int, frame_index: int,
                      min_confidence: float) -> list[OcrLine]:
    """RapidOCR output -> OcrLines with boxes as fractions of the frame size."""
    if result is None or result.boxes is None or result.txts is None:
        return []
    lines = []
    for box, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
        text = " ".join(str(text).split())
        if not text or float(score) < min_confidence:
            continue
        pts = np.asarray(box, dtype=np.float64).reshape(-1, 2)
        norm = np.clip(pts / [width, height], 0.0, 1.0)
        tall = norm[:, 1].max() - norm[:, 1].min() > _SHAPE_MIN_HEIGHT
        if tall and len(text.replace(" ", "")) <= _SHAPE_MAX_CHARS:
            continue
        lines.append(OcrLine(text=text, confidence=round(float(score), 4),
                             box=tuple(round(float(v), 5) for v in norm.ravel()),
                             frame_index=frame_index))
    return lines


def coverage(lines: Sequence[OcrLine], width: int, height: int) -> float:
    """Fraction of the frame covered by the union of the text boxes."""
    if not lines:
        return 0.0
    mask = np.zeros((height, width), np.uint8)
    for line in lines:
        pts = (np.asarray(line.box).reshape(-1, 2) * [width, height]).round().astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return float(mask.mean())


def _top(line: OcrLine) -> float:
    return min(line.box[1::2])


def _left(line: OcrLine) -> float:
    return min(line.box[0::2])


def _height(line: OcrLine) -> float:
    return max(line.box[1::2]) - min(line.box[1::2])


def reading_order(lines: Sequence[OcrLine]) -> list[OcrLine]:
    """Top to bottom; boxes whose tops are within half a line height form one row,
    read left to right."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=_top):
        if rows and _top(line) - _top(rows[-1][0]) <= 0.5 * max(_height(rows[-1][0]), 1e-6):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=_left)]


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def same_text(a: str, b: str) -> bool:
    """Two OCR readings of (nearly) the same text: case, punctuation and a character or
    two that OCR varies between frames do not count."""
    ka, kb = _key(a), _key(b)
    return ka == kb or difflib.SequenceMatcher(None, ka, kb).ratio() >= _SAME_TEXT


def merge_text(frames: Sequence[Sequence[OcrLine]]) -> str:
    """One text for the clip: each frame in reading order, frames in time order, and a
    line dropped when (nearly) the same text was already read in an earlier frame."""
    kept: list[str] = []
    keys: list[str] = []
    for lines in frames:
        for line in reading_order(lines):
            key = _key(line.text)
            if not key or any(difflib.SequenceMatcher(None, key, k).ratio() >= _SAME_TEXT
                              for k in keys):
                continue
            keys.append(key)
            kept.append(line.text)
    return "\n".join(kept)


@dataclasses.dataclass
class FrameFailure:
    index: int
    error: Exception


def ocr_clip(clip: ClipRecord, engine: Any, cfg: OcrConfig,
             ) -> tuple[ClipRecord, list[FrameFailure]]:
    """Run OCR on every keyframe of the clip; unreadable frames are returned apart."""
    per_frame: list[list[OcrLine]] = []
    coverages: list[float] = []
    failures: list[FrameFailure] = []
    for i, uri in enumerate(clip.keyframe_uris):
        try:
            frame = read_frame(uri)
        except MediaError as e:
            failures.append(FrameFailure(i, e))
            continue
        h, w = frame.shape[:2]
        lines = lines_from_result(engine(frame), w, h, i, cfg.min_confidence)
        per_frame.append(lines)
        coverages.append(coverage(lines, w, h))
    if not per_frame:
        return clip, failures
    return dataclasses.replace(
        clip,
        ocr_text=merge_text(per_frame),
        ocr_lines=tuple(line for lines in per_frame for line in reading_order(lines)),
        ocr_coverage_max=round(max(coverages), 5),
        ocr_coverage_mean=round(sum(coverages) / len(coverages), 5),
    ), failures


# One engine per worker process and settings: every OCR DoFn there, in any thread or
# transform, gets the same one.
_ENGINES: ProcessCache[Any] = ProcessCache()


class _OcrFn(beam.DoFn):
    def __init__(self, cfg: OcrConfig, run_id: str) -> None:
        self.cfg, self.run_id = cfg, run_id
        self.metrics = StageMetrics(STAGE)
        self.frames_with_text = beam.metrics.Metrics.counter(STAGE, "frames_with_text")
        self.frames = beam.metrics.Metrics.counter(STAGE, "frames")
        self.engine: Any = None

    def setup(self) -> None:
        from vidcurate.transforms.models.ocr import load_engine

        cfg = self.cfg
        self.engine = _ENGINES.get(cfg, lambda: load_engine(cfg))

    def process(self, clip: ClipRecord) -> Iterator[ClipRecord | beam.pvalue.TaggedOutput]:
        if not clip.keyframe_uris:
            self.metrics.skipped.inc()
            yield clip
            return
        with self.metrics.timed():
            try:
                result, failures = ocr_clip(clip, self.engine, self.cfg)
            except Exception as e:  # a bug or an engine failure: keep the clip, record it
                yield self.metrics.failure(e, source_uri=clip.source_uri,
                    run_id=self.run_id, video_id=clip.video_id, clip_id=clip.clip_id)
                yield clip
                return
        for failure in failures:
            yield beam.pvalue.TaggedOutput(ERRORS, error_record(
                failure.error, stage=STAGE, source_uri=clip.source_uri, run_id=self.run_id,
                video_id=clip.video_id, clip_id=clip.clip_id))
        (self.metrics.failed if failures else self.metrics.processed).inc()
        if result.ocr_lines is not None:
            self.frames.inc(len(clip.keyframe_uris) - len(failures))
            self.frames_with_text.inc(len({line.frame_index for line in result.ocr_lines}))
        yield result


class OCR(beam.PTransform):
    """ClipRecord -> ClipRecord with ocr_* filled (main) and ErrorRecord ('errors')."""

    def __init__(self, cfg: OcrConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.run_id = cfg, run_id

    def expand(self, clips: beam.PCollection) -> dict[str, beam.PCollection]:
        return (
            clips
            | "RapidOCR" >> beam.ParDo(_OcrFn(self.cfg, self.run_id))
            .with_outputs(ERRORS, main="clips"))
