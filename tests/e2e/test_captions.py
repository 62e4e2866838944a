"""Captions end to end on the demo media: several teachers, CLIP scores, one selection."""

from __future__ import annotations

import pytest

from tests.support.chatserver import ChatServer
from tests.support.helpers import CAPTION_TEACHERS as TEACHERS
from tests.support.helpers import run_cli
from vidcurate.pipeline.query import connect


@pytest.fixture(scope="module")
def captioned(captioned_output):
    return captioned_output


def test_every_clip_has_candidates_and_one_selected_best(captioned):
    out, _ = captioned
    con = connect(str(out))
    per_clip = con.sql("""
        SELECT c.clip_id, count(k.text) AS n, count(*) FILTER (WHERE k.selected) AS chosen,
               max(k.clip_score) AS best,
               max(k.clip_score) FILTER (WHERE k.selected) AS chosen_score,
               count(DISTINCT k.teacher) AS teachers
        FROM clips c LEFT JOIN captions k USING (clip_id) GROUP BY 1""").fetchall()
    assert len(per_clip) >= 10
    for clip_id, n, chosen, best, chosen_score, teachers in per_clip:
        assert n >= 2 and teachers >= 2, clip_id
        assert chosen == 1, clip_id
        assert chosen_score == pytest.approx(best), clip_id
    clips = con.sql("SELECT best_caption, best_teacher, clip_score, selection_method, "
                    "len(clip_embedding) FROM clips").fetchall()
    assert all(c[0] and c[1] and c[2] is not None and c[3] == "clip" and c[4] == 64
               for c in clips)
    # Embeddings are FLOAT[d] in DuckDB: nearest neighbours in SQL, each clip its own best.
    nearest = con.sql("""
        SELECT a.clip_id, arg_max(b.clip_id, array_cosine_similarity(a.clip_embedding,
                                                                      b.clip_embedding))
        FROM clips a, clips b GROUP BY 1""").fetchall()
    assert all(a == b for a, b in nearest)
    # The clips table repeats the selected candidate exactly.
    assert con.sql("""SELECT count(*) FROM clips c JOIN captions k USING (clip_id)
                      WHERE k.selected AND (k.text <> c.best_caption
                                            OR k.teacher <> c.best_teacher)""").fetchall() \
        == [(0,)]


def test_teachers_contribute_what_they_know(captioned):
    out, requests = captioned
    con = connect(str(out))
    teachers = dict(con.sql("SELECT teacher, count(*) FROM captions GROUP BY 1").fetchall())
    clips = con.sql("SELECT count(*) FROM clips").fetchall()[0][0]
    # Every clip: a title, zero-shot concepts, a captioner line and both server teachers.
    assert teachers["metadata"] >= clips and teachers["zero_shot"] == 2 * clips
    assert teachers["captioner"] == clips  # the tiny model always says the same thing
    assert teachers["vlm"] == clips and teachers["vlm_fuse"] == clips
    # With a server configured, speech condenses through it too (text only).
    assert requests == 2 * clips + teachers["speech"]
    assert con.sql("SELECT DISTINCT model FROM captions WHERE teacher = 'speech'"
                   ).fetchall() == [("openai-chat:ok",)]
    # Speech only where Whisper heard words; on-screen text only on the text page.
    speech = con.sql("SELECT DISTINCT v.title FROM captions k JOIN videos v USING (video_id) "
                     "WHERE k.teacher = 'speech'").fetchall()
    assert speech == [("Megamind: two characters talk in a prison cell",)]
    ocr = dict(con.sql("SELECT v.title, k.text FROM captions k JOIN videos v USING "
                       "(video_id) WHERE teacher = 'ocr'").fetchall())
    assert ocr["A page of a computer vision textbook"].startswith("A slide titled")
    assert "Big Buck Bunny stretches outside his burrow" not in ocr
    # The win-rate query of the README works and adds up to one selection per clip.
    wins = con.sql("SELECT teacher, count(*) FILTER (WHERE selected) FROM captions "
                   "GROUP BY 1").fetchall()
    assert sum(n for _, n in wins) == clips
    (notes,), = con.sql("SELECT notes FROM runs").fetchall()
    assert any("caption teachers: " + TEACHERS.replace(",", ", ") in n for n in notes)


def test_reselect_among_a_subset_needs_no_model(captioned):
    out, _ = captioned
    con = connect(str(out))
    proc = run_cli("reselect", str(out), "--teachers", "metadata,speech",
                   "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "clip_id,video_id,teacher,model,text,clip_score,selection_method"
    picked = {row.split(",")[0]: row.split(",")[2] for row in lines[1:]}
    expected = dict(con.sql("""
        SELECT clip_id, arg_max(teacher, clip_score) FROM captions
        WHERE teacher IN ('metadata', 'speech') GROUP BY 1""").fetchall())
    assert picked == expected
    # All teachers: the pipeline's own selection again.
    every = run_cli("reselect", str(out), "--teachers", TEACHERS, "--format", "csv")
    chosen = {r.split(",")[0]: r.split(",")[2] for r in every.stdout.strip().splitlines()[1:]}
    assert chosen == dict(con.sql("SELECT clip_id, teacher FROM captions WHERE selected"
                                  ).fetchall())


def test_a_failing_vlm_server_never_stops_the_run(videos, tmp_path):
    from vidcurate.pipeline.run import run

    out = tmp_path / "mixed"
    with ChatServer() as server:
        # "mixed" answers some requests, fails others with 500 forever or non-JSON.
        run(["--input", str(videos.cuts), "--output", str(out), "--no-clip", "--no-asr",
             "--no-ocr", "--clip-media", "none", "--keyframes", "1", "--teachers", "vlm",
             "--vlm-url", server.url, "--vlm-model", "mixed", "--vlm-retries", "1",
             "--vlm-timeout", "5"])
    con = connect(str(out))
    assert con.sql("SELECT status FROM videos").fetchall() == [("ok",)]
    clips = con.sql("SELECT count(*) FROM clips").fetchall()[0][0]
    answered = con.sql("SELECT count(*) FROM captions WHERE teacher = 'vlm'").fetchall()[0][0]
    failed = dict(con.sql("SELECT error_type, count(*) FROM errors WHERE stage = 'captioning' "
                          "GROUP BY 1").fetchall())
    assert answered + sum(failed.values()) == clips
    assert answered and set(failed) <= {"vlm:http_retries_exhausted", "vlm:bad_response"}
    assert failed, "the server's failures must show as error rows"
    (reason,), = con.sql("SELECT reason FROM videos").fetchall()
    assert "captioning" in (reason or "")
