"""ApplyClipRules: shots -> clip spans (trim, min / max length), with a reason when none.

Runs after cut detection and semantic stitching, on events (or shots, unstitched). An empty result
is a valid outcome: the video gets status 'skipped' and the reason, never an error.
"""

from __future__ import annotations

import math
from collections import Counter

import apache_beam as beam

from vidcurate.schemas.records import ScenedVideo, Span, SplitVideo
from vidcurate.transforms.errors import StageMetrics
from vidcurate.transforms.split_config import SplitConfig

STAGE = "clip_rules"


def _span(start_frame: int, end_frame: int, fps: float) -> Span:
    return Span(start_frame, end_frame, start_frame / fps, end_frame / fps)


def make_spans(
    shots: tuple[Span, ...], fps: float, cfg: SplitConfig
) -> tuple[tuple[Span, ...], str | None]:
    """Clip spans from shots; the reason is set when no span survives."""
    min_frames = cfg.min_clip_s * fps
    max_frames = cfg.max_clip_s * fps
    spans: list[Span] = []
    too_short = 0
    longest = 0.0
    for shot in shots:
        length = shot.end_frame - shot.start_frame
        trim = int(math.floor(length * cfg.trim_fraction))
        start, end = shot.start_frame + trim, shot.end_frame - trim
        longest = max(longest, (end - start) / fps)
        if end - start < min_frames or end <= start:
            too_short += 1
            continue
        # Longer than the maximum: split evenly, so no piece is a short leftover.
        pieces = max(1, math.ceil((end - start) / max_frames))
        bounds = [start + round(i * (end - start) / pieces) for i in range(pieces + 1)]
        spans.extend(_span(a, b, fps) for a, b in zip(bounds, bounds[1:], strict=False))
    if spans:
        return tuple(spans), None
    if not shots:
        return (), "no frames could be decoded"
    trimmed = f" after trimming {cfg.trim_fraction:.0%} at both ends" if cfg.trim_fraction else ""
    if len(shots) == 1:
        return (), (f"the video is {longest:.2f} s long{trimmed}, shorter than "
                    f"--min-clip-s {cfg.min_clip_s:g}")
    return (), (f"all {len(shots)} shots are shorter than --min-clip-s {cfg.min_clip_s:g}"
                f"{trimmed} (longest {longest:.2f} s)")


def apply_rules(scened: ScenedVideo, cfg: SplitConfig) -> SplitVideo:
    if scened.events == () and scened.shots:
        return SplitVideo(scened=scened, spans=(), reason=stitch_reason(scened))
    spans, reason = make_spans(scened.units, scened.video.info.fps, cfg)
    return SplitVideo(scened=scened, spans=spans, reason=reason)


def stitch_reason(scened: ScenedVideo) -> str:
    counts = Counter(d.reason for d in scened.stitch_dropped)
    detail = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(counts.items()))
    return f"stitching dropped all {len(scened.shots)} cut-scenes ({detail})"


class _RulesFn(beam.DoFn):
    def __init__(self, cfg: SplitConfig) -> None:
        self.cfg = cfg
        self.metrics = StageMetrics(STAGE)

    def process(self, scened: ScenedVideo):
        split = apply_rules(scened, self.cfg)
        (self.metrics.processed if split.spans else self.metrics.skipped).inc()
        yield split


class ApplyClipRules(beam.PTransform):
    """ScenedVideo -> SplitVideo (spans, or the reason there are none)."""

    def __init__(self, cfg: SplitConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, scened: beam.PCollection) -> beam.PCollection:
        return scened | "Rules" >> beam.ParDo(_RulesFn(self.cfg))
