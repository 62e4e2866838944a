import dataclasses

from vidcurate.schemas.records import Span
from vidcurate.transforms.clip_rules import make_spans


def _shots(*lengths_s, fps=25):
    shots, start = [], 0
    for length in lengths_s:
        end = start + round(length * fps)
        shots.append(Span(start, end, start / fps, end / fps))
        start = end
    return tuple(shots)


def test_short_shots_dropped_long_ones_split_evenly(split_cfg):
    cfg = dataclasses.replace(split_cfg, max_clip_s=10.0)
    spans, reason = make_spans(_shots(2.0, 3.0, 25.0), 25.0, cfg)
    assert reason is None
    # 2 s dropped; 3 s kept; 25 s (frames 125-750) split into 3 near-equal pieces.
    assert [(s.start_frame, s.end_frame) for s in spans] == [
        (50, 125), (125, 333), (333, 542), (542, 750)]
    assert [round(s.duration_s, 2) for s in spans] == [3.0, 8.32, 8.36, 8.32]
    assert max(s.duration_s for s in spans) <= cfg.max_clip_s  # video seconds


def test_trim_fraction_cuts_both_ends(split_cfg):
    cfg = dataclasses.replace(split_cfg, trim_fraction=0.1)
    spans, _ = make_spans(_shots(5.0), 25.0, cfg)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(12, 113)]


def test_empty_results_explain_why(split_cfg):
    spans, reason = make_spans(_shots(0.04), 25.0, split_cfg)
    assert spans == () and reason == "the video is 0.04 s long, shorter than --min-clip-s 2.5"
    spans, reason = make_spans(_shots(1.0, 2.0, 1.5), 25.0, split_cfg)
    assert reason == "all 3 shots are shorter than --min-clip-s 2.5 (longest 2.00 s)"
    cfg = dataclasses.replace(split_cfg, trim_fraction=0.25)
    _, reason = make_spans(_shots(4.0), 25.0, cfg)
    assert "after trimming 25% at both ends" in reason
    assert make_spans((), 25.0, split_cfg) == ((), "no frames could be decoded")
