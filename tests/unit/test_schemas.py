"""Records and schemas stay in step: every row converts to its table without loss."""

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from vidcurate.schemas.records import (
    Boundary,
    CaptionCandidate,
    CaptionRow,
    ClipRecord,
    DroppedShot,
    ErrorRecord,
    OcrLine,
    Source,
    Span,
    VideoInfo,
    VideoRow,
)
from vidcurate.schemas.tables import METADATA_KEY, SCHEMA_VERSION, TABLES, table_schema

INFO = VideoInfo(10.0, 0.0, 0.0, 25.0, True, 320, 180, 90, "h264", "yuv420p", "aac", True,
                 0.0, "mp4",
                 1000, 250, 100, "sha")


def _roundtrip(table, row):
    schema = TABLES[table]
    assert list(row) == schema.names, f"{table}: columns differ from the schema"
    return pa.Table.from_pylist([row], schema=schema).to_pylist()[0]


def test_video_rows_match_schema_with_and_without_probe():
    src = Source(uri="/a.mp4", video_id="v", title="T", metadata={"k": [1, 2]})
    ok = VideoRow(src, "ok", None, "r", info=INFO,
                  boundaries=(Boundary(5, 0.2, "forced", distance=0.5, merged=True),),
                  shot_count=2, clip_count=1, event_count=1,
                  stitch_dropped=(DroppedShot(5, 9, 0.2, 0.36, "transition", 1.2),))
    back = _roundtrip("videos", ok.to_row())
    assert back["rotation"] == 90 and back["metadata_json"] == '{"k": [1, 2]}'
    assert back["shot_boundaries"] == [{"frame": 5, "time_s": 0.2, "kind": "forced",
                                        "distance": 0.5, "merged": True}]
    assert back["event_count"] == 1 and back["stitch_dropped"][0]["reason"] == "transition"
    failed = _roundtrip("videos", VideoRow(src, "failed", "probe: bad", "r").to_row())
    assert failed["duration_s"] is None and failed["status"] == "failed"


def test_clip_and_error_rows_match_schema():
    clip = ClipRecord("c", "v", "/a.mp4", 0, Span(0, 50, 0.0, 2.0), "h", "copy", "/m.mp4", 0.0,
                      2.0, ("/k0.jpg",), (0.1,), "r")
    assert _roundtrip("clips", clip.to_row())["duration_s"] == 2.0
    read = dataclasses.replace(clip, ocr_text="Hi", ocr_coverage_max=0.1, ocr_coverage_mean=0.05,
                               ocr_lines=(OcrLine("Hi", 0.9, (0.1,) * 8, 1),))
    back = _roundtrip("clips", read.to_row())
    assert back["ocr_lines"][0]["frame_index"] == 1 and back["ocr_text"] == "Hi"
    assert back["ocr_lines"][0]["box"] == pytest.approx([0.1] * 8)
    embedded = dataclasses.replace(read, clip_embedding=np.arange(4, dtype=np.float32),
                                   best_caption="a cat", best_teacher="metadata",
                                   clip_score=0.3, selection_method="clip")
    row = embedded.to_row()
    fixed = pa.Table.from_pylist([row], schema=table_schema("clips", 4))
    assert fixed.schema.field("clip_embedding").type == pa.list_(pa.float32(), 4)
    assert fixed.to_pylist()[0]["clip_embedding"] == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises((pa.ArrowInvalid, ValueError)):  # a wrong dimension never slips in
        pa.Table.from_pylist([row], schema=table_schema("clips", 5))
    err = ErrorRecord("probe", "/a.mp4", "probe_failed", "msg", "r",
                      time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert _roundtrip("errors", err.to_row())["time"].year == 2026


def test_caption_rows_match_schema():
    cand = CaptionCandidate("c", "v", "speech", "extractive:v1", None, "A talk.")
    row = CaptionRow(cand, 0.25, 0.3, 1, True, "clip", "r").to_row()
    back = _roundtrip("captions", row)
    assert back["selected"] and back["clip_score"] == pytest.approx(0.25)
    assert back["selection_method"] == "clip" and back["teacher"] == "speech"


def test_every_schema_carries_its_version():
    for name, schema in TABLES.items():
        assert schema.metadata[METADATA_KEY] == f"{name}:{SCHEMA_VERSION}".encode()
