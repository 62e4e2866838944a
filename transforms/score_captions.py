"""ScoreCaptions: every candidate caption scored with CLIP against its clip; best selected.

A candidate's score is the cosine between its text embedding and the clip embedding
(the mean of the keyframe embeddings); the best cosine with any single keyframe is kept
next to it. The candidate with the highest score is selected; ties go to the teacher
that comes first in the priority order, then to the text (so a rerun selects the same).
Each clip also takes its structured caption (CaptionStruct, from Captioning) here,
where its candidates are joined anyway.
Without CLIP scores (--no-clip, or a clip whose keyframes could not be embedded) the
teacher priority alone decides, and the clip says so in `selection_method`. Every
candidate is kept in `captions`, so selection can be redone in SQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import apache_beam as beam
import numpy as np

from vidcurate.schemas.records import CaptionCandidate, CaptionRow, ClipRecord
from vidcurate.transforms.errors import ERRORS, StageMetrics
from vidcurate.transforms.models.clip import (
    ClipModelConfig,
    EmbedRequest,
)
from vidcurate.transforms.models.clip_embedding import EmbedByOwner

STAGE = "score_captions"
BY_CLIP = "clip"
BY_PRIORITY = "priority"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clip_scores(text: np.ndarray, clip: ClipRecord) -> tuple[float, float]:
    """(cosine with the clip embedding, best cosine with one keyframe)."""
    t = _unit(text)
    whole = float(_unit(clip.clip_embedding) @ t)
    frames = clip.keyframe_embeddings
    best = float((_unit(frames) @ t).max()) if frames is not None and len(frames) else whole
    return whole, best


def priority_of(teacher: str, priority: Sequence[str]) -> int:
    return priority.index(teacher) if teacher in priority else len(priority)


def select(scored: Sequence[tuple[CaptionCandidate, float | None, float | None]],
           priority: Sequence[str], run_id: str) -> list[CaptionRow]:
    """Rank a clip's candidates: by CLIP score when every candidate has one, else by
    teacher priority; ties by priority, teacher name, then text. Rank 1 is selected."""
    by_clip = bool(scored) and all(s is not None for _, s, _ in scored)
    method = BY_CLIP if by_clip else BY_PRIORITY

    def key(item: tuple[CaptionCandidate, float | None, float | None]) -> tuple:
        cand, score, _ = item
        tie = (priority_of(cand.teacher, priority), cand.teacher, cand.text)
        return ((-score,) if by_clip and score is not None else ()) + tie

    ranked = sorted(scored, key=key)
    return [CaptionRow(candidate=c, clip_score=s, clip_score_max_frame=m, rank=i,
                       selected=i == 1, selection_method=method, run_id=run_id)
            for i, (c, s, m) in enumerate(ranked, start=1)]


def with_selection(clip: ClipRecord, rows: Sequence[CaptionRow]) -> ClipRecord:
    best = next((r for r in rows if r.selected), None)
    if best is None:
        return clip
    return dataclasses.replace(clip, best_caption=best.candidate.text,
                               best_teacher=best.candidate.teacher,
                               clip_score=best.clip_score,
                               selection_method=best.selection_method)


def score_clip(clip: ClipRecord, candidates: Sequence[CaptionCandidate],
               text_embeddings: dict[tuple[str, str], np.ndarray], priority: Sequence[str],
               run_id: str) -> tuple[ClipRecord, list[CaptionRow]]:
    """Score, rank and select one clip's candidates (duplicates of one teacher's text
    are kept once)."""
    unique = list({(c.teacher, c.text): c for c in candidates}.values())
    scored = []
    for cand in unique:
        emb = text_embeddings.get((cand.teacher, cand.text))
        if emb is not None and clip.clip_embedding is not None:
            scored.append((cand, *clip_scores(emb, clip)))
        else:
            scored.append((cand, None, None))
    rows = select(scored, priority, run_id)
    return with_selection(clip, rows), rows


class _SelectFn(beam.DoFn):
    def __init__(self, priority: Sequence[str], run_id: str) -> None:
        self.priority, self.run_id = tuple(priority), run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, joined: tuple[str, dict[str, list]]
                ) -> Iterator[ClipRecord | beam.pvalue.TaggedOutput]:
        _, parts = joined
        for clip in parts["clips"]:
            if parts.get("failed"):
                yield self.metrics.failure(
                    RuntimeError(f"CLIP could not embed caption texts: {parts['failed'][0]}"),
                    source_uri=clip.source_uri, run_id=self.run_id, video_id=clip.video_id,
                    clip_id=clip.clip_id)
            structs = parts.get("structs") or ()
            if structs:  # one per clip (the structured teacher's), or none
                clip = dataclasses.replace(clip, caption_struct=structs[0])
            with self.metrics.timed():
                scored, rows = score_clip(clip, parts["candidates"],
                                          dict(parts.get("texts", ())), self.priority,
                                          self.run_id)
            (self.metrics.processed if rows else self.metrics.skipped).inc()
            for row in rows:
                yield beam.pvalue.TaggedOutput("captions", row)
            yield dataclasses.replace(scored, keyframe_embeddings=None)


def _text_request(cand: CaptionCandidate) -> EmbedRequest:
    return EmbedRequest(key=(cand.clip_id, cand.teacher, cand.text), text=cand.text)


class ScoreCaptions(beam.PTransform):
    """{'clips': ClipRecord, 'candidates': CaptionCandidate[, 'structs': CaptionStruct]}
    -> clips with the selected caption and their struct (main 'clips'), CaptionRow
    ('captions') and ErrorRecord ('errors')."""

    def __init__(self, clip_model: ClipModelConfig, priority: Sequence[str], run_id: str) -> None:
        super().__init__()
        self.clip_model, self.priority, self.run_id = clip_model, tuple(priority), run_id

    def expand(self, inputs: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        candidates = inputs["candidates"]
        parts = {
            "clips": inputs["clips"] | "KeyClips" >> beam.Map(lambda c: (c.clip_id, c)),
            "candidates": candidates | "KeyCandidates" >> beam.Map(lambda c: (c.clip_id, c)),
        }
        if "structs" in inputs:
            parts["structs"] = inputs["structs"] | "KeyStructs" >> beam.Map(
                lambda s: (s.clip_id, s))
        if self.clip_model.enabled:
            texts = (candidates
                     | "Distinct" >> beam.Distinct()
                     | "TextRequests" >> beam.Map(_text_request))
            embedded = texts | "Embed" >> EmbedByOwner(self.clip_model)
            parts["texts"], parts["failed"] = embedded["features"], embedded["failed"]
        selected = (
            (parts | "Join" >> beam.CoGroupByKey())
            | "Select" >> beam.ParDo(_SelectFn(self.priority, self.run_id))
            .with_outputs(ERRORS, "captions", main="clips"))
        return selected
