"""Labels as data (`vidcurate label`, the labels views) and `curate --calibrate` on
them: a threshold planted in the labels comes back out of the fit."""

from __future__ import annotations

import json
import threading
import tomllib
from pathlib import Path

import pytest

from tests.support.helpers import run_cli
from tests.support.review import review_output
from vidcurate.pipeline.labels import Label, write_labels
from vidcurate.pipeline.query import connect

# The planted rule: a person drops every clip whose motion is below this, as "static".
PLANTED = 0.013
CLIPS = 120
STEP = 0.05 / CLIPS  # the signal's spacing: the fit can only be as exact as the data


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("clip_id,label,reason\n" + "".join(f"{c},{lab},{r}\n" for c, lab, r in rows))
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    review_output(out, {f"c{i:03d}": {} for i in range(12)})
    return out


def _labels(out: Path, view: str = "labels") -> dict[str, tuple]:
    return {c: (lab, r) for c, lab, r in connect(str(out)).sql(
        f"SELECT clip_id, label, reason FROM {view}").fetchall()}


def test_import_relabel_latest_wins_and_clips_labelled(out, tmp_path):
    first = _write_csv(tmp_path / "a.csv", [("c000", "keep", ""), ("c001", "DROP", "static"),
                                            ("c002", "drop", "wobbly horizon")])
    proc = run_cli("label", str(out), "--from", str(first))
    assert proc.returncode == 0, proc.stderr
    assert "imported 3 labels" in proc.stdout
    second = _write_csv(tmp_path / "b.csv", [("c000", "drop", "too_dark"),
                                             ("c003", "keep", ""), ("c003", "drop", "")])
    assert run_cli("label", str(out), "--from", str(second)).returncode == 0
    assert _labels(out) == {"c000": ("drop", "too_dark"), "c001": ("drop", "static"),
                            "c002": ("drop", "wobbly horizon"),
                            "c003": ("drop", None)}  # the later row of one file wins
    con = connect(str(out))
    assert con.sql("SELECT count(*) FROM labels_all").fetchall()[0][0] == 6  # appended
    # clips joins each clip's newest label (clips_labelled: the earlier name of it)
    joined = dict(con.sql("SELECT clip_id, label FROM clips").fetchall())
    assert len(joined) == 12 and joined["c000"] == "drop" and joined["c005"] is None
    assert con.sql("SELECT clip_id, label_reason FROM clips WHERE clip_id = 'c002'"
                   ).fetchall() == [("c002", "wobbly horizon")]
    assert dict(con.sql("SELECT clip_id, label FROM clips_labelled").fetchall()) == joined
    who = con.sql("SELECT DISTINCT labelled_by, source FROM labels_all").fetchall()
    assert len(who) == 1 and who[0][1] == "import" and who[0][0]
    # The published dataset keeps the clips schema: labels stay with the curator.
    pub = tmp_path / "pub"
    proc = run_cli("publish", str(out), str(pub), "--media", "none", "--allow-unknown-license")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "label" not in connect(str(pub)).sql("SELECT * FROM raw_clips LIMIT 0").columns


@pytest.mark.parametrize("rows, message", [
    ([("c000", "keep", ""), ("nope1", "keep", ""), ("nope2", "drop", "")],
     "2 unknown clip id(s)"),
    ([("c000", "maybe", "")], "label must be keep or drop"),
])
def test_bad_label_files_are_refused_whole(out, tmp_path, rows, message):
    proc = run_cli("label", str(out), "--from", str(_write_csv(tmp_path / "x.csv", rows)))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (out / "labels").exists()


def test_a_file_without_the_columns_is_refused(out, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,verdict\nc000,keep\n")
    proc = run_cli("label", str(out), "--from", str(bad))
    assert proc.returncode == 2 and "clip_id" in proc.stderr


def test_writers_at_the_same_moment_lose_nothing(out):
    """Eight writers appending at once (as review windows and an import would): every
    label is a row, because each write is its own atomically renamed shard."""
    barrier = threading.Barrier(8)

    def writer(k: int) -> None:
        barrier.wait()
        for i in range(12):
            write_labels(str(out), [Label(f"c{i:03d}", "keep" if k % 2 else "drop",
                                          f"w{k}")], f"writer{k}", "review")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    con = connect(str(out))
    assert con.sql("SELECT count(*), count(DISTINCT label_id) FROM labels_all"
                   ).fetchall() == [(96, 96)]
    assert con.sql("SELECT count(*) FROM labels").fetchall()[0][0] == 12


# ------------------------------------------------------------------ calibration
@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """120 clips with motion spread over 0-0.05 (flagged static below the run's
    0.005), brightness too; half of them labelled by the planted rule."""
    out = tmp_path / "planted"
    clips = {}
    for i in range(CLIPS):
        motion = (i + 0.5) * STEP
        clips[f"c{i:03d}"] = {"motion_score": motion, "brightness": 0.3 + (i % 7) / 20,
                              "quality_flags": ["static"] if motion < 0.005 else []}
    review_output(out, clips)
    rows = [(c, "drop" if v["motion_score"] < PLANTED else "keep",
             "static" if v["motion_score"] < PLANTED else "")
            for i, (c, v) in enumerate(clips.items()) if i % 2 == 0]
    rows.append(("c001", "drop", "too_dark"))  # about another rule: not static's business
    proc = run_cli("label", str(out), "--from", str(_write_csv(tmp_path / "l.csv", rows)))
    assert proc.returncode == 0, proc.stderr
    return out


def test_calibration_recovers_a_planted_threshold(planted, tmp_path):
    proc = run_cli("curate", str(planted), "--calibrate")
    assert proc.returncode == 0, proc.stderr
    con = connect(str(planted))
    summary = json.loads(con.sql("SELECT summary_json FROM passes WHERE kind = 'calibrate'"
                                 ).fetchall()[0][0])
    rules = {r["rule"]: r for r in summary["rules"]}
    static = rules["static"]
    assert static["status"] == "fitted" and static["signal"] == "motion_score"
    # Labelled: 60 by the rule (c001's drop is about too_dark and left out).
    assert static["labelled_drop"] + static["labelled_keep"] == 60
    # At the run's 0.005 the rule is precise but misses most labelled drops.
    assert static["current"] == 0.005 and static["at_current"]["precision"] == 1.0
    assert static["at_current"]["recall"] < 0.5
    # The fit: perfect on the labels, within one signal step of the planted threshold
    # (labels sit on every other clip, so the gap between the last labelled drop and the
    # first labelled keep is two steps; the middle of it is within one).
    fit = static["fit"]
    assert fit["f1"] == 1.0
    assert abs(fit["threshold"] - PLANTED) <= STEP + 1e-9
    # The keep-rate curve runs over all 120 clips and rises with the threshold... down:
    # a higher minimum motion keeps fewer clips.
    curve = static["curve"]
    assert curve[0][1] == 1.0 and curve[-1][1] == 0.0
    assert all(a[1] >= b[1] for a, b in zip(curve, curve[1:], strict=False))
    assert fit["keep_rate"] == pytest.approx(sum(1 for i in range(CLIPS)
                                                 if (i + 0.5) * STEP >= fit["threshold"])
                                             / CLIPS)
    # Rules the labels do not speak to enough are said so, not fitted.
    assert rules["too_dark"]["status"] == "too few labels"
    assert "1 drop" in rules["too_dark"]["note"]
    assert rules["no_caption"]["status"] == "not fitted"
    assert "note: too_dark: too few labels" in proc.stdout
    # The fitted profile: loads, carries the labels it rests on, and curating with it
    # drops exactly the clips below the fitted threshold as static.
    path = Path(summary["fitted_profile"])
    assert path.parent == planted / "calibration" and path.exists()
    text = path.read_text()
    profile = tomllib.loads(text)
    assert profile["params"]["static_motion"] == fit["threshold"]
    assert f"fitted on {static['labelled_drop']} drop / {static['labelled_keep']} keep" in text
    rule = next(r for r in profile["rules"] if r["name"] == "static")
    assert rule["keep"] == "motion_score >= $static_motion"
    proc = run_cli("curate", str(planted), "--profile", str(path))
    assert proc.returncode == 0, proc.stderr
    dropped = {c for (c,) in connect(str(planted)).sql(
        "SELECT clip_id FROM curation WHERE dropped_by = 'static'").fetchall()}
    assert dropped == {f"c{i:03d}" for i in range(CLIPS) if (i + 0.5) * STEP < fit["threshold"]}
    # The report draws the curves and the labelled-vs-predicted table.
    proc = run_cli("report", str(planted), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Calibration: keep rate" in page and 'id="calibration-table"' in page


def test_calibration_needs_labels(out):
    proc = run_cli("curate", str(out), "--calibrate")
    assert proc.returncode == 2 and "no labels" in proc.stderr
