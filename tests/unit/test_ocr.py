"""OCR: pure functions, then RapidOCR on drawtext videos and a real text image."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.helpers import TEXT_EXPECTED
from tests.support.metrics import cer
from vidcurate.pipeline.demo import still_video
from vidcurate.pipeline.options import OcrConfig
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import run
from vidcurate.schemas.records import OcrLine
from vidcurate.transforms.ocr import coverage, lines_from_result, merge_text, reading_order

CFG = OcrConfig(enabled=True, min_confidence=0.5, det_side=960, angle_cls=False)


def _line(text, x0, y0, x1, y1, frame=0, conf=0.9):
    return OcrLine(text, conf, (x0, y0, x1, y0, x1, y1, x0, y1), frame)


def test_lines_are_normalised_and_filtered():
    result = SimpleNamespace(
        boxes=[[[10, 20], [110, 20], [110, 40], [10, 40]],
               [[0, 0], [50, 0], [50, 10], [0, 10]],
               [[300, 0], [500, 0], [500, 300], [300, 300]]],
        txts=["  Hello   world ", "faint", "H"],
        scores=[0.95, 0.3, 0.99])
    lines = lines_from_result(result, 640, 360, 2, 0.5)
    # "faint" is under the confidence threshold; the frame-tall "H" is a shape.
    assert [(ln.text, ln.frame_index) for ln in lines] == [("Hello world", 2)]
    assert lines[0].box == pytest.approx((10 / 640, 20 / 360, 110 / 640, 20 / 360,
                                          110 / 640, 40 / 360, 10 / 640, 40 / 360), abs=1e-5)
    empty = SimpleNamespace(boxes=None, txts=None, scores=None)
    assert lines_from_result(empty, 640, 360, 0, 0.5) == []


def test_coverage_is_the_union_of_boxes():
    a = _line("a", 0.0, 0.0, 0.5, 0.5)
    assert coverage([a], 100, 100) == pytest.approx(0.25, abs=0.02)
    # The same box twice covers the same area; a disjoint one adds to it.
    assert coverage([a, a], 100, 100) == pytest.approx(0.25, abs=0.02)
    b = _line("b", 0.5, 0.5, 1.0, 1.0)
    assert coverage([a, b], 100, 100) == pytest.approx(0.5, abs=0.03)
    assert coverage([], 100, 100) == 0.0


def test_reading_order_rows_then_left_to_right():
    right = _line("world", 0.5, 0.1, 0.7, 0.15)
    left = _line("Hello", 0.1, 0.105, 0.3, 0.155)
    below = _line("second line", 0.1, 0.3, 0.6, 0.35)
    assert [ln.text for ln in reading_order([below, right, left])] == [
        "Hello", "world", "second line"]


def test_merge_drops_repeats_across_keyframes():
    f0 = [_line("Breaking News", 0.1, 0.8, 0.5, 0.9)]
    f1 = [_line("Breaking Nevvs", 0.1, 0.8, 0.5, 0.9, frame=1),
          _line("Tonight at nine", 0.1, 0.1, 0.5, 0.2, frame=1)]
    assert merge_text([f0, f1]) == "Breaking News\nTonight at nine"
    assert merge_text([[], []]) == ""


@pytest.fixture(scope="module")
def ocr_output(text_video, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ocr-run") / "out"
    run(["--no-clip", "--input", str(text_video), "--output", str(out), "--clip-media", "none",
         "--no-asr"])
    return out


def _clips(out):
    rel = connect(str(out)).sql("SELECT * FROM clips ORDER BY clip_index")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def test_drawtext_strings_read_with_low_error(ocr_output):
    clips = _clips(ocr_output)
    assert len(clips) == len(TEXT_EXPECTED)
    reference = " ".join(" ".join(lines) for lines in TEXT_EXPECTED)
    hypothesis = " ".join(c["ocr_text"] for c in clips if c["ocr_text"])
    assert cer(reference, hypothesis) <= 0.02, hypothesis
    for clip, expected in zip(clips, TEXT_EXPECTED, strict=True):
        assert cer(" ".join(expected), clip["ocr_text"]) <= 0.02, (expected, clip["ocr_text"])


def test_text_free_clips_report_no_text(ocr_output):
    for clip, expected in zip(_clips(ocr_output), TEXT_EXPECTED, strict=True):
        if not expected:
            assert clip["ocr_text"] == "" and clip["ocr_lines"] == []
            assert clip["ocr_coverage_max"] == 0.0


def test_coverage_ranks_text_heavy_above_light_above_none(ocr_output):
    cov = [c["ocr_coverage_mean"] for c in _clips(ocr_output)]
    headline, none, slide, ticker, _ = cov
    assert slide > headline > none == 0.0
    assert slide > ticker > 0.0


def test_lines_carry_boxes_and_frames(ocr_output):
    slide = _clips(ocr_output)[2]
    lines = slide["ocr_lines"]
    assert {ln["frame_index"] for ln in lines} == {0, 1, 2}
    first = [ln for ln in lines if ln["frame_index"] == 0]
    assert [ln["text"] for ln in first] == list(TEXT_EXPECTED[2])  # reading order
    for ln in first:
        xs, ys = ln["box"][0::2], ln["box"][1::2]
        assert 0.0 <= min(xs) < max(xs) <= 1.0 and 0.0 <= min(ys) < max(ys) <= 1.0
        assert ln["confidence"] >= 0.5


def test_real_text_image_words_are_found(opencv_media, tmp_path):
    video = still_video(opencv_media / "imageTextN.png", tmp_path / "page.mp4")
    out = tmp_path / "out"
    run(["--no-clip", "--input", str(video), "--output", str(out), "--clip-media", "none",
         "--keyframes", "1", "--no-asr"])
    text = _clips(out)[0]["ocr_text"].casefold()
    for word in ("technical details", "implementation", "projects", "conference",
                 "real-world", "computer vision", "inspiration", "approaches"):
        assert word in text, word


def test_min_confidence_option_filters_lines(text_video, tmp_path):
    out = tmp_path / "strict"
    run(["--no-clip", "--input", str(text_video), "--output", str(out), "--clip-media", "none",
         "--keyframes", "1", "--ocr-min-confidence", "0.995", "--no-asr"])
    lines = [ln for clip in _clips(out) for ln in clip["ocr_lines"]]
    assert lines  # the clean drawtext lines are read with confidence above 0.995
    assert all(ln["confidence"] >= 0.995 - 1e-6 for ln in lines)  # stored as float32


def test_ocr_config_engine_params():
    from vidcurate.transforms.models.ocr import engine_params

    params = engine_params(dataclasses.replace(CFG, angle_cls=True, det_side=640))
    assert params["Global.use_cls"] is True and params["Det.limit_side_len"] == 640
    assert params["Det.limit_type"] == "max"


def test_missing_ocr_extra_stops_before_the_graph(videos, tmp_path, monkeypatch):
    import sys

    from vidcurate.pipeline.options import ConfigError

    monkeypatch.setitem(sys.modules, "rapidocr", None)
    with pytest.raises(ConfigError, match=r"pip install 'vidcurate\[ocr\]', or run with --no-ocr"):
        run(["--no-clip", "--input", str(videos.cuts), "--output", str(tmp_path / "o"), "--no-asr"])
    assert not (tmp_path / "o").exists()
