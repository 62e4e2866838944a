"""JudgeClips: burned-in subtitles, the aesthetic score and quality flags for every clip.

Nothing is dropped here: every judgement is a column, and `vidcurate curate` filters on
them afterwards. From what earlier stages measured, per clip:

- ``subtitle_box``: the band of burned-in subtitles, from the OCR lines the clip already
  has: text in the bottom (or top) band of the frame, its edge at one height across
  keyframes, its words changing from keyframe to keyframe (a logo, a sign or a lower
  third that stays the same is not a subtitle).
- ``aesthetic_score``: optional, a LAION aesthetic head (transforms/models/aesthetic.py)
  over the clip's CLIP keyframe embeddings, run through RunInference.
- ``quality_flags``: names from FLAGS, each from one signal and one threshold (an
  option). A signal that was not measured (null) raises no flag; an empty list means
  every measured signal passed. ``nsfw`` reads ``nsfw_score`` (transforms/nsfw.py,
  before this stage); ``personal_data`` is added after captioning by
  transforms/personal_data.py, which reads the captions too (``with_flag``).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from vidcurate.schemas.records import ClipRecord, OcrLine
from vidcurate.transforms.core import AddArgument, check
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.inference import FAILED, RESULTS, Infer
from vidcurate.transforms.models.aesthetic import AestheticConfig
from vidcurate.transforms.ocr import same_text

STAGE = "judge_clips"

# The vocabulary of quality_flags, in the order a clip lists them.
FLAGS = ("static", "dark", "overexposed", "blurry", "letterboxed", "subtitles", "damaged",
         "text_heavy", "low_resolution", "low_aesthetic", "nsfw", "personal_data")

# Subtitle lines keep one edge (the bottom one at the bottom of the frame, the top one at
# the top) within this fraction of the frame height across keyframes; OCR boxes of one
# caption vary by a few pixels with descenders and two-line captions grow upwards.
_SUBTITLE_EDGE_TOLERANCE = 0.03


@dataclass(frozen=True)
class QualityConfig:
    """The thresholds behind each quality flag (docs/quality/judging.md) and the subtitle
    search. Units are those of the columns they read."""

    static_motion: float = 0.005  # motion_score below (frame diagonals per second)
    dark_brightness: float = 0.15  # brightness below (mean luma 0-1)
    overexposed_brightness: float = 0.85  # brightness above
    blurry_sharpness: float = 100.0  # sharpness below (variance of the Laplacian)
    letterbox_bars: float = 0.1  # black bars take at least this of the width or height
    text_heavy_coverage: float = 0.1  # ocr_coverage_mean above (fraction of the frame)
    low_resolution_px: int = 360  # the content's short side below, in source pixels
    damaged_errors: int = 1  # decode_error_count at least
    low_aesthetic_score: float = 4.5  # aesthetic_score below (1-10)
    # nsfw_score above; Yahoo's guidance for Open-NSFW: above 0.8 likely NSFW, below 0.2
    # likely safe (models/nsfw.py LIKELY_NSFW)
    nsfw_score: float = 0.8
    subtitle_band: float = 0.25  # subtitles are looked for in this top / bottom share
    subtitle_min_frames: int = 2  # keyframes that must show changing subtitle text

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        d = QualityConfig()
        add("flag-static-motion", type=float, default=d.static_motion,
            help="Flag 'static' when motion_score (frame diagonals per second) is below this.")
        add("flag-dark-brightness", type=float, default=d.dark_brightness,
            help="Flag 'dark' when brightness (mean luma, 0-1) is below this.")
        add("flag-overexposed-brightness", type=float, default=d.overexposed_brightness,
            help="Flag 'overexposed' when brightness (mean luma, 0-1) is above this.")
        add("flag-blurry-sharpness", type=float, default=d.blurry_sharpness,
            help="Flag 'blurry' when sharpness (variance of the Laplacian) is below this.")
        add("flag-letterbox-bars", type=float, default=d.letterbox_bars,
            help="Flag 'letterboxed' when black bars (outside content_box) take at least "
            "this fraction of the frame's height or width.")
        add("flag-text-heavy-coverage", type=float, default=d.text_heavy_coverage,
            help="Flag 'text_heavy' when ocr_coverage_mean (fraction of the frame under "
            "text boxes) is above this.")
        add("flag-low-resolution-px", type=int, default=d.low_resolution_px,
            help="Flag 'low_resolution' when the picture's short side (content_box, else "
            "the frame) is below this many source pixels.")
        add("flag-damaged-errors", type=int, default=d.damaged_errors,
            help="Flag 'damaged' when the clip's span holds at least this many decode errors.")
        add("flag-low-aesthetic-score", type=float, default=d.low_aesthetic_score,
            help="Flag 'low_aesthetic' when aesthetic_score (1-10) is below this "
            "(Open-Sora 1.2 kept Panda-70M clips scoring 4.5 or more).")
        add("flag-nsfw-score", type=float, default=d.nsfw_score,
            help="Flag 'nsfw' when nsfw_score (Open-NSFW P(NSFW), 0-1) is above this. "
            "Default 0.8, Yahoo's guidance for 'likely NSFW'; its guidance for 'likely "
            "safe' is below 0.2, so 0.2 flags every clip the model is unsure of.")
        add("subtitle-band", type=float, default=d.subtitle_band,
            help="Burned-in subtitles are looked for in this fraction of the frame height "
            "at the bottom and at the top.")
        add("subtitle-min-frames", type=int, default=d.subtitle_min_frames,
            help="Keyframes that must show changing text at one height for subtitles.")

    @classmethod
    def from_options(cls, o: Any) -> QualityConfig:
        check(
            (o.flag_static_motion >= 0,
             f"--flag-static-motion must be >= 0, got {o.flag_static_motion}"),
            (0 <= o.flag_dark_brightness < o.flag_overexposed_brightness <= 1,
             "need 0 <= --flag-dark-brightness < --flag-overexposed-brightness <= 1, got "
             f"{o.flag_dark_brightness} and {o.flag_overexposed_brightness}"),
            (o.flag_blurry_sharpness >= 0,
             f"--flag-blurry-sharpness must be >= 0, got {o.flag_blurry_sharpness}"),
            (0 < o.flag_letterbox_bars < 1,
             f"--flag-letterbox-bars must be in (0, 1), got {o.flag_letterbox_bars}"),
            (0 <= o.flag_text_heavy_coverage <= 1,
             f"--flag-text-heavy-coverage must be in [0, 1], got {o.flag_text_heavy_coverage}"),
            (o.flag_low_resolution_px >= 0,
             f"--flag-low-resolution-px must be >= 0, got {o.flag_low_resolution_px}"),
            (0 <= o.flag_nsfw_score <= 1,
             f"--flag-nsfw-score must be in [0, 1], got {o.flag_nsfw_score}"),
            (o.flag_damaged_errors >= 1,
             f"--flag-damaged-errors must be >= 1, got {o.flag_damaged_errors}"),
            (0 < o.subtitle_band <= 0.5,
             f"--subtitle-band must be in (0, 0.5], got {o.subtitle_band}"),
            # Changing text needs two keyframes to change between.
            (o.subtitle_min_frames >= 2,
             f"--subtitle-min-frames must be >= 2, got {o.subtitle_min_frames}"),
        )
        return cls(static_motion=o.flag_static_motion, dark_brightness=o.flag_dark_brightness,
                   overexposed_brightness=o.flag_overexposed_brightness,
                   blurry_sharpness=o.flag_blurry_sharpness,
                   letterbox_bars=o.flag_letterbox_bars,
                   text_heavy_coverage=o.flag_text_heavy_coverage,
                   low_resolution_px=o.flag_low_resolution_px,
                   damaged_errors=o.flag_damaged_errors,
                   low_aesthetic_score=o.flag_low_aesthetic_score,
                   nsfw_score=o.flag_nsfw_score,
                   subtitle_band=o.subtitle_band, subtitle_min_frames=o.subtitle_min_frames)


def _bounds(line: OcrLine) -> tuple[float, float, float, float]:
    xs, ys = line.box[0::2], line.box[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def _in_all(text: str, frames: Sequence[Sequence[str]]) -> bool:
    return all(any(same_text(text, other) for other in texts) for texts in frames)


def _distinct(texts: Sequence[str]) -> int:
    kept: list[str] = []
    for text in texts:
        if not any(same_text(text, k) for k in kept):
            kept.append(text)
    return len(kept)


def _band_subtitles(lines: Sequence[OcrLine], bottom: bool, band: float, min_frames: int
                    ) -> tuple[int, float, float] | None:
    """(frames with subtitles, y0, y1 as fractions) for one band, or None."""
    inside = [ln for ln in lines
              if (_bounds(ln)[1] >= 1 - band if bottom else _bounds(ln)[3] <= band)]
    frames: dict[int, list[OcrLine]] = {}
    for line in inside:
        frames.setdefault(line.frame_index, []).append(line)
    if len(frames) < min_frames:
        return None
    # Text read in every keyframe that has text here is a fixture of the picture (a logo,
    # a channel name, a sign): not a subtitle, and not part of the band.
    texts = [[ln.text for ln in f] for f in frames.values()]
    changing = [ln for ln in inside if not _in_all(ln.text, texts)]
    by_frame: dict[int, list[OcrLine]] = {}
    for line in changing:
        by_frame.setdefault(line.frame_index, []).append(line)
    if len(by_frame) < min_frames or _distinct([ln.text for ln in changing]) < 2:
        return None
    # Subtitles sit at one height: the edge they are anchored to stays put.
    edges = [max(_bounds(ln)[3] for ln in f) if bottom else min(_bounds(ln)[1] for ln in f)
             for f in by_frame.values()]
    if max(edges) - min(edges) > _SUBTITLE_EDGE_TOLERANCE:
        return None
    y0 = min(_bounds(ln)[1] for ln in changing)
    y1 = max(_bounds(ln)[3] for ln in changing)
    # Half a line of margin: glyph outlines and shadows reach past OCR's boxes.
    pad = 0.5 * statistics.median(_bounds(ln)[3] - _bounds(ln)[1] for ln in changing)
    return len(by_frame), max(0.0, y0 - pad), min(1.0, y1 + pad)


def subtitle_box(lines: Sequence[OcrLine], frame_size: tuple[int, int],
                 band: float = QualityConfig.subtitle_band,
                 min_frames: int = QualityConfig.subtitle_min_frames,
                 ) -> tuple[int, int, int, int] | None:
    """The burned-in subtitle band [x0, y0, x1, y1] in source pixels, or None.

    The band spans the frame's width (a later, longer caption is as wide as the frame
    allows) and the height of the subtitle lines read in the keyframes plus half a line:
    crop it away (keep the rows above y0, or below y1 for top subtitles) rather than drop
    the clip. Subtitles need text in the bottom or top `band` of the frame in at least
    `min_frames` keyframes, at one height (the anchored edge within 3% of the frame
    height), saying at least two different things; text that reads the same in every such
    keyframe (a logo) is left out. When both bands qualify, the one with more frames wins.
    """
    found = [r for r in (_band_subtitles(lines, True, band, min_frames),
                         _band_subtitles(lines, False, band, min_frames)) if r is not None]
    if not found:
        return None
    _, y0, y1 = max(found, key=lambda r: r[0])  # max keeps the first (bottom) on a tie
    width, height = frame_size
    return 0, int(np.floor(y0 * height)), int(width), int(np.ceil(y1 * height))


def quality_flags(clip: ClipRecord, cfg: QualityConfig) -> tuple[str, ...]:
    """The flags a clip's measured signals raise, in FLAGS order; unmeasured (null)
    signals raise none."""
    raised: set[str] = set()
    if clip.motion_score is not None and clip.motion_score < cfg.static_motion:
        raised.add("static")
    if clip.brightness is not None:
        if clip.brightness < cfg.dark_brightness:
            raised.add("dark")
        if clip.brightness > cfg.overexposed_brightness:
            raised.add("overexposed")
    if clip.sharpness is not None and clip.sharpness < cfg.blurry_sharpness:
        raised.add("blurry")
    if clip.content_box is not None and clip.frame_size is not None:
        x0, y0, x1, y1 = clip.content_box
        width, height = clip.frame_size
        bars = max(1 - (x1 - x0) / max(width, 1), 1 - (y1 - y0) / max(height, 1))
        if bars >= cfg.letterbox_bars:
            raised.add("letterboxed")
    if clip.subtitle_box is not None:
        raised.add("subtitles")
    if clip.decode_error_count is not None and clip.decode_error_count >= cfg.damaged_errors:
        raised.add("damaged")
    if clip.ocr_coverage_mean is not None and clip.ocr_coverage_mean > cfg.text_heavy_coverage:
        raised.add("text_heavy")
    short_side = _short_side(clip)
    if short_side is not None and short_side < cfg.low_resolution_px:
        raised.add("low_resolution")
    if clip.aesthetic_score is not None and clip.aesthetic_score < cfg.low_aesthetic_score:
        raised.add("low_aesthetic")
    if clip.nsfw_score is not None and clip.nsfw_score > cfg.nsfw_score:
        raised.add("nsfw")
    if clip.personal_data:
        raised.add("personal_data")
    return tuple(f for f in FLAGS if f in raised)


def with_flag(flags: Sequence[str] | None, flag: str) -> tuple[str, ...]:
    """flags with `flag` raised too, in FLAGS order (a stage after this one adds its
    own flag this way)."""
    raised = {*(flags or ()), flag}
    return tuple(f for f in FLAGS if f in raised)


def _short_side(clip: ClipRecord) -> int | None:
    """The picture's short side in source pixels: without black bars when measured."""
    if clip.content_box is not None:
        x0, y0, x1, y1 = clip.content_box
        return min(x1 - x0, y1 - y0)
    if clip.frame_size is not None:
        return min(clip.frame_size)
    return None


def judge_clip(clip: ClipRecord, cfg: QualityConfig,
               aesthetic_score: float | None = None) -> ClipRecord:
    """The clip with subtitle_box (when OCR ran and the frame size is known), its
    aesthetic score (when one was computed) and quality_flags."""
    box = clip.subtitle_box
    if clip.ocr_lines is not None and clip.frame_size is not None:
        box = subtitle_box(clip.ocr_lines, clip.frame_size, cfg.subtitle_band,
                           cfg.subtitle_min_frames)
    judged = dataclasses.replace(
        clip, subtitle_box=box,
        aesthetic_score=clip.aesthetic_score if aesthetic_score is None
        else round(float(aesthetic_score), 4))
    return dataclasses.replace(judged, quality_flags=quality_flags(judged, cfg))


def keyframe_features(clip: ClipRecord) -> np.ndarray | None:
    """What the aesthetic head scores: the keyframe embeddings (their scores are
    averaged), else the clip embedding; None without CLIP."""
    if clip.keyframe_embeddings is not None and len(clip.keyframe_embeddings):
        return np.asarray(clip.keyframe_embeddings, np.float32)
    if clip.clip_embedding is not None:
        return np.asarray(clip.clip_embedding, np.float32)[None, :]
    return None


class _AestheticRequestsFn(beam.DoFn):
    """Every clip keyed for the join ('clips'), and a request for each that has CLIP
    embeddings of the head's size; embeddings of another size are an error row here
    (in a batch they would fail every clip batched with them)."""

    def __init__(self, input_dim: int | None, run_id: str) -> None:
        self.input_dim, self.run_id = input_dim, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, clip: ClipRecord) -> Iterator[Any]:
        yield beam.pvalue.TaggedOutput("clips", (clip.clip_id, clip))
        features = keyframe_features(clip)
        if features is None:
            return
        if self.input_dim is not None and features.shape[1] != self.input_dim:
            yield self.metrics.failure(
                ValueError(f"the aesthetic head takes {self.input_dim}-d CLIP embeddings, "
                           f"the clip has {features.shape[1]}-d ones ({clip.clip_model}): "
                           "it is meant for another CLIP model"),
                source_uri=clip.source_uri, run_id=self.run_id, video_id=clip.video_id,
                clip_id=clip.clip_id)
            return
        yield clip.clip_id, features


class _JudgeFn(beam.DoFn):
    """(clip_id, {'clips', 'scores', 'failed'}) or a bare ClipRecord -> the judged clip;
    a failed head batch is an error row and the clip goes on judged without a score."""

    def __init__(self, cfg: QualityConfig, run_id: str) -> None:
        self.cfg, self.run_id = cfg, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, element: ClipRecord | tuple[str, dict[str, list]]
                ) -> Iterator[ClipRecord | beam.pvalue.TaggedOutput]:
        if isinstance(element, ClipRecord):
            parts: dict[str, list] = {"clips": [element], "scores": [], "failed": []}
        else:
            parts = element[1]
        for clip in parts["clips"]:
            ids = {"source_uri": clip.source_uri, "run_id": self.run_id,
                   "video_id": clip.video_id, "clip_id": clip.clip_id}
            for reason in parts["failed"][:1]:
                yield self.metrics.failure(
                    RuntimeError(f"the aesthetic head could not score the clip: {reason}"),
                    **ids)
            score = parts["scores"][0] if parts["scores"] else None
            judged = list(guarded(self.metrics, lambda c, s=score: [
                judge_clip(c, self.cfg, s)], clip, **ids))
            yield from judged
            if not any(isinstance(j, ClipRecord) for j in judged):
                yield clip  # judging failed (an error row): the clip itself goes on


def _failed_keys(failure: tuple[Sequence[tuple[str, Any]], BaseException]
                 ) -> Iterator[tuple[str, str]]:
    batch, exc = failure
    for key in sorted({key for key, _ in batch}):
        yield key, f"{type(exc).__name__}: {exc}"


class JudgeClips(beam.PTransform):
    """ClipRecord -> ClipRecord with subtitle_box, aesthetic_score (when a head is
    given) and quality_flags (main), and ErrorRecord ('errors')."""

    def __init__(self, cfg: QualityConfig, aesthetic: AestheticConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.aesthetic, self.run_id = cfg, aesthetic, run_id

    def expand(self, clips: beam.PCollection) -> dict[str, beam.PCollection]:
        judge = _JudgeFn(self.cfg, self.run_id)
        if not self.aesthetic.enabled:
            judged = clips | "Judge" >> beam.ParDo(judge).with_outputs(ERRORS, main="clips")
            return {"clips": judged["clips"], ERRORS: judged[ERRORS]}
        from vidcurate.transforms.models.handlers import AestheticModelHandler

        requests = (clips | "AestheticRequests" >> beam.ParDo(
            _AestheticRequestsFn(self.aesthetic.input_dim, self.run_id))
            .with_outputs("clips", ERRORS, main="requests"))
        scored = requests["requests"] | "Aesthetic" >> Infer(
            AestheticModelHandler(self.aesthetic), model_identifier=self.aesthetic.model_id)
        judged = (
            {"clips": requests["clips"], "scores": scored[RESULTS],
             "failed": scored[FAILED] | "FailedByClip" >> beam.FlatMap(_failed_keys)}
            | "Join" >> beam.CoGroupByKey()
            | "Judge" >> beam.ParDo(judge).with_outputs(ERRORS, main="clips"))
        errors = (requests[ERRORS], judged[ERRORS]) | "Errors" >> beam.Flatten()
        return {"clips": judged["clips"], ERRORS: errors}
