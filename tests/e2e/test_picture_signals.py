"""`vidcurate run` fills the picture-signal columns of `clips` and the decode errors of
`videos`: a letterboxed still and a file damaged in its middle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.media import Clip, damage_at, make_cuts_video, make_picture_video
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import run


@pytest.fixture(scope="module")
def signals_run(tmp_path_factory, sample_footage) -> Path:
    d = tmp_path_factory.mktemp("signals-in")
    picture = d.parent / "bunny.png"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "2.5", "-i",
                    str(sample_footage / "bigbuckbunny.mp4"), "-frames:v", "1", str(picture)],
                   check=True)
    make_picture_video(d / "letterboxed.mp4", picture, seconds=3,
                       filters="scale=640:270,pad=640:360:0:45")
    shots = [Clip(s, 3) for s in ("testsrc2", "smpte", "mandelbrot", "cellauto")]
    clean = make_cuts_video(d.parent / "clean.mp4", shots, size=(640, 360), audio=False,
                            gop=75, preset="veryfast")
    damage_at(clean, d / "damaged.mp4", 7.5, length=16384)
    out = tmp_path_factory.mktemp("signals-out") / "out"
    run(["--input", str(d), "--output", str(out), "--no-clip", "--no-ocr", "--no-asr",
         "--keyframes", "0", "--clip-media", "none"])
    return out


def test_clip_columns_are_filled(signals_run):
    con = connect(str(signals_run))
    rows = con.sql(
        "SELECT regexp_extract(source_uri, '[^/]+$') AS name, clip_index, motion_score, "
        "motion_patch_min, brightness, contrast, sharpness, content_box, decode_error_count "
        "FROM clips ORDER BY name, clip_index").fetchall()
    by_name: dict[str, list[tuple]] = {}
    for r in rows:
        by_name.setdefault(r[0], []).append(r[2:])
    (still,) = by_name["letterboxed.mp4"]
    motion, patch_min, brightness, contrast, sharpness, box, errors = still
    assert motion < 1e-3 and patch_min < 1e-3
    assert 0.2 < brightness < 0.8 and contrast > 0.1 and sharpness > 100
    assert box[0] == 0 and box[2] == 640 and abs(box[1] - 45) <= 3 and abs(box[3] - 315) <= 3
    assert errors == 0
    # The damaged file's third shot (6-9 s) holds the damage; its other clips are clean.
    damaged = by_name["damaged.mp4"]
    assert [r[-1] > 0 for r in damaged] == [False, False, True, False]
    assert all(r[0] is not None and r[5] == [0, 0, 640, 360] for r in damaged)


def test_video_row_lists_decode_errors_with_a_note(signals_run):
    con = connect(str(signals_run))
    status, reason, errors = con.sql(
        "SELECT status, reason, decode_errors FROM videos "
        "WHERE source_uri LIKE '%damaged.mp4'").fetchall()[0]
    assert status == "ok"
    assert "decoder reported" in reason and "decode_error_count" in reason
    assert errors and all(6.0 - 0.5 <= e["time_s"] < 9.0 and e["message"] for e in errors)
    clean = con.sql("SELECT reason, decode_errors FROM videos "
                    "WHERE source_uri LIKE '%letterboxed.mp4'").fetchall()[0]
    assert clean == (None, [])
