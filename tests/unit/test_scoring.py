"""Caption scoring and selection: cosine scores, deterministic ranking, priority fallback."""

from __future__ import annotations

import numpy as np
import pytest

from vidcurate.schemas.records import CaptionCandidate, ClipRecord, Span
from vidcurate.transforms.score_captions import (
    BY_CLIP,
    BY_PRIORITY,
    clip_scores,
    score_clip,
    select,
)

PRIORITY = ("vlm", "captioner", "metadata")


def cand(teacher: str, text: str) -> CaptionCandidate:
    return CaptionCandidate(clip_id="c", video_id="v", teacher=teacher, model=None,
                            prompt=None, text=text)


def clip(frames: np.ndarray | None) -> ClipRecord:
    return ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 10, 0, 1), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=(), keyframe_times_s=(), run_id="r",
                      keyframe_embeddings=frames,
                      clip_embedding=None if frames is None else frames.mean(axis=0))


def test_scores_are_cosines_with_the_mean_and_the_best_keyframe():
    frames = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    whole, best = clip_scores(np.array([1, 0, 0], np.float32), clip(frames))
    assert whole == pytest.approx(1 / np.sqrt(2))  # mean (0.5, 0.5, 0) normalised
    assert best == pytest.approx(1.0)
    # Scores do not depend on the text embedding's norm.
    assert clip_scores(np.array([3, 0, 0], np.float32), clip(frames))[0] == pytest.approx(whole)


def test_best_scoring_candidate_is_selected_and_all_are_ranked():
    frames = np.array([[1, 0, 0]], np.float32)
    texts = {("metadata", "a cat"): np.array([1, 0.1, 0], np.float32),
             ("vlm", "a dog"): np.array([0, 1, 0], np.float32),
             ("captioner", "a kitten"): np.array([1, 0.5, 0], np.float32)}
    updated, rows = score_clip(clip(frames), [cand(t, x) for t, x in texts], texts,
                               PRIORITY, "r")
    assert [(r.candidate.text, r.rank, r.selected) for r in rows] == [
        ("a cat", 1, True), ("a kitten", 2, False), ("a dog", 3, False)]
    assert {r.selection_method for r in rows} == {BY_CLIP}
    assert updated.best_caption == "a cat" and updated.best_teacher == "metadata"
    assert updated.clip_score == pytest.approx(rows[0].clip_score)
    assert updated.selection_method == BY_CLIP


def test_ties_go_to_teacher_priority_then_text_whatever_the_input_order():
    same = np.array([1, 0, 0], np.float32)
    cands = [cand("metadata", "b"), cand("captioner", "z"), cand("captioner", "a")]
    texts = {(c.teacher, c.text): same for c in cands}
    for order in (cands, cands[::-1]):
        _, rows = score_clip(clip(np.array([[1, 0, 0]], np.float32)), order, texts,
                             PRIORITY, "r")
        assert [(r.candidate.teacher, r.candidate.text) for r in rows] == [
            ("captioner", "a"), ("captioner", "z"), ("metadata", "b")]


def test_without_clip_the_teacher_priority_decides_and_says_so():
    cands = [cand("metadata", "title"), cand("unknown", "x"), cand("vlm", "a scene")]
    updated, rows = score_clip(clip(None), cands, {}, PRIORITY, "r")
    assert [r.candidate.teacher for r in rows] == ["vlm", "metadata", "unknown"]
    assert all(r.clip_score is None and r.selection_method == BY_PRIORITY for r in rows)
    assert updated.best_teacher == "vlm" and updated.clip_score is None
    assert updated.selection_method == BY_PRIORITY


def test_a_missing_text_embedding_falls_back_to_priority_for_the_clip():
    frames = np.array([[1, 0, 0]], np.float32)
    texts = {("metadata", "a cat"): np.array([1, 0, 0], np.float32)}
    _, rows = score_clip(clip(frames), [cand("metadata", "a cat"), cand("vlm", "a dog")],
                         texts, PRIORITY, "r")
    assert rows[0].candidate.teacher == "vlm"
    assert {r.selection_method for r in rows} == {BY_PRIORITY}


def test_duplicate_candidates_are_kept_once_and_no_candidates_select_nothing():
    frames = np.array([[1, 0, 0]], np.float32)
    texts = {("metadata", "a cat"): np.array([1, 0, 0], np.float32)}
    _, rows = score_clip(clip(frames), [cand("metadata", "a cat")] * 2, texts, PRIORITY, "r")
    assert len(rows) == 1
    updated, rows = score_clip(clip(frames), [], {}, PRIORITY, "r")
    assert rows == [] and updated.best_caption is None
    assert select([], PRIORITY, "r") == []
