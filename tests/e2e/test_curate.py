"""`vidcurate curate` through the CLI, on an output whose clip columns are known: the
funnel adds up, the first failing rule is the one recorded, one threshold moves exactly
the clips it should, bad profiles change nothing, and the curated set exports and shows
in the report."""

from __future__ import annotations

import datetime as dt
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.helpers import run_cli
from vidcurate.pipeline.query import connect
from vidcurate.transforms.sinks import write_rows

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
GOOD = dict(duration_s=5.0, brightness=0.5, quality_flags=[], aesthetic_score=6.0,
            ocr_coverage_mean=0.0, decode_error_count=0, best_caption="a red car",
            nsfw_score=0.01)
# Clip -> what differs from a good clip, and the default profile's verdict on it.
CLIPS = {
    "good": ({}, None),
    "damaged_and_dark": ({"decode_error_count": 3, "brightness": 0.02}, "damaged"),
    "short": ({"duration_s": 1.5}, "too_short"),
    "uncaptioned": ({"best_caption": "  "}, "no_caption"),
    "still": ({"quality_flags": ["static", "letterboxed"]}, "static"),
    "dark": ({"brightness": 0.05}, "too_dark"),
    "dim": ({"brightness": 0.12}, None),  # above the default 0.1
    "glaring": ({"brightness": 0.95}, "overexposed"),
    "slide": ({"ocr_coverage_mean": 0.5}, "text_heavy"),
    "plain": ({"aesthetic_score": 4.0}, "low_aesthetic"),
    "unscored": ({"aesthetic_score": None}, None),  # unmeasured: if_null = keep
    "letterboxed": ({"quality_flags": ["letterboxed", "subtitles"]}, None),
    "explicit": ({"nsfw_score": 0.95}, "nsfw"),  # above Yahoo's 0.8
    "undecided": ({"nsfw_score": 0.5}, None),  # the model's undecided band: kept
}


def write_output(out: Path, clips: dict[str, dict]) -> None:
    """A complete output (one run, one video) whose clips have the given columns."""
    write_rows(str(out), "runs", "r1", [dict(run_id="r1", status="complete", started_at=NOW,
                                             finished_at=NOW, options_json="{}",
                                             versions_json="{}")])
    write_rows(str(out), "videos", "r1", [dict(
        video_id="v", source_uri="file:///v.mp4", status="ok", duration_s=60.0,
        width=640, height=360, run_id="r1", title="known values")])
    rows = []
    for i, (name, values) in enumerate(clips.items()):
        rows.append({"clip_id": name, "video_id": "v", "source_uri": "file:///v.mp4",
                     "clip_index": i, "start_s": float(i), "end_s": i + 1.0,
                     "run_id": "r1", **values})
    write_rows(str(out), "clips", "r1", rows)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    write_output(out, {name: GOOD | changes for name, (changes, _) in CLIPS.items()})
    return out


def _verdicts(out: Path) -> dict[str, str | None]:
    return dict(connect(str(out)).sql("SELECT clip_id, dropped_by FROM curation").fetchall())


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_funnel_adds_up_and_the_first_failing_rule_is_recorded(out):
    proc = run_cli("curate", str(out))
    assert proc.returncode == 0, proc.stderr
    assert _verdicts(out) == {name: rule for name, (_, rule) in CLIPS.items()}
    con = connect(str(out))
    kept = {c for (c,) in con.sql("SELECT clip_id FROM clips_curated").fetchall()}
    assert kept == {name for name, (_, rule) in CLIPS.items() if rule is None}
    summary = json.loads(con.sql("SELECT summary_json FROM passes WHERE kind = 'curate'"
                                 ).fetchall()[0][0])
    steps = summary["funnel"]
    assert sum(s["dropped"] for s in steps) + summary["kept"] == summary["clips"] == len(CLIPS)
    assert steps[-1]["kept_after"] == summary["kept"] == len(kept)
    for before, after in zip(steps, steps[1:], strict=False):
        assert after["reached"] == before["kept_after"] == before["reached"] - before["dropped"]
    by_rule = {s["rule"]: s for s in steps}
    assert by_rule["damaged"]["dropped"] == 1  # the dark damaged clip counts once
    assert by_rule["too_dark"]["dropped"] == 1
    # The clip without an aesthetic score reached the rule unmeasured and was kept.
    assert by_rule["low_aesthetic"]["unmeasured"] == 1
    assert con.sql("SELECT unmeasured FROM curation WHERE clip_id = 'unscored'"
                   ).fetchall() == [(["low_aesthetic", "duplicate"],)]
    # dedup never ran: the duplicate rule judged nobody and says so.
    assert by_rule["duplicate"]["unmeasured"] == by_rule["duplicate"]["reached"]
    note = next(line for line in proc.stdout.splitlines() if line.startswith("note:"))
    assert note.endswith(": duplicate (keep)")  # the only rule that judged nobody
    # The printed funnel: one line per rule, in the profile's order, with its numbers.
    lines = [line.split() for line in proc.stdout.splitlines()]
    printed = [row[0] for row in lines if row and row[0] in by_rule]
    assert printed == [s["rule"] for s in steps]
    for row in lines:
        if row and row[0] in by_rule:
            s = by_rule[row[0]]
            assert row[1:4] == [str(s["reached"]), str(s["dropped"]), str(s["kept_after"])]
    assert f"kept {len(kept)} of {len(CLIPS)} clips" in proc.stdout
    rows = con.sql("SELECT DISTINCT profile, profile_sha256, pass_id FROM curation").fetchall()
    assert len(rows) == 1 and rows[0][0] == "default" and rows[0][2] == summary["pass_id"]


def test_one_threshold_moves_exactly_its_clips_and_reruns_replace(out):
    assert run_cli("curate", str(out)).returncode == 0
    before = _verdicts(out)
    proc = run_cli("curate", str(out), "--set", "min_brightness=0.15")
    assert proc.returncode == 0, proc.stderr
    after = _verdicts(out)
    changed = {c: (before[c], after[c]) for c in before if before[c] != after[c]}
    assert changed == {"dim": (None, "too_dark")}  # 0.12 is under 0.15; nothing else moves
    con = connect(str(out))
    assert "dim" not in {c for (c,) in con.sql("SELECT clip_id FROM clips_curated").fetchall()}
    hashes = [h for (h,) in con.sql("SELECT DISTINCT profile_sha256 FROM raw_curation")
              .fetchall()]
    assert len(hashes) == 2  # another threshold is another profile hash
    params = json.loads(con.sql("SELECT params_json FROM passes WHERE kind = 'curate' "
                                "ORDER BY created_at DESC LIMIT 1").fetchall()[0][0])
    assert params["params"]["min_brightness"] == 0.15
    assert params["overrides"] == {"min_brightness": 0.15}
    # Back to the default: the same verdicts as the first pass (the view follows it).
    assert run_cli("curate", str(out)).returncode == 0
    assert _verdicts(out) == before


def _dedup_pass(out: Path, duplicates: dict[str, str]) -> None:
    write_rows(str(out), "duplicates", "p1", [
        dict(pass_id="p1", created_at=NOW, clip_id=c, duplicate_of=d)
        for c, d in duplicates.items()])
    write_rows(str(out), "passes", "p1", [dict(pass_id="p1", kind="dedup", created_at=NOW)])


DUPS = 'name = "dups"\n[[rules]]\nname = "duplicate"\nkeep = "NOT is_duplicate"\n'


def test_a_rule_can_use_the_dedup_result(tmp_path):
    out = tmp_path / "out"  # clips with embeddings: dedup compared every one of them
    write_output(out, {name: GOOD | changes | {"clip_embedding": [1.0, float(i)]}
                       for i, (name, (changes, _)) in enumerate(CLIPS.items())})
    profile = tmp_path / "dups.toml"
    profile.write_text(DUPS + 'if_null = "drop"\n')
    _dedup_pass(out, {"dim": "good"})
    assert run_cli("curate", str(out), "--profile", str(profile)).returncode == 0
    verdicts = _verdicts(out)
    assert verdicts.pop("dim") == "duplicate" and set(verdicts.values()) == {None}


def test_a_clip_without_embedding_is_not_measured_by_dedup(tmp_path):
    """Dedup compares embeddings: a clip without one is neither unique nor a duplicate
    for curate, even when a dedup pass exists (issue 29)."""
    out = tmp_path / "out"
    write_output(out, {"a": GOOD | {"clip_embedding": [1.0, 0.0]},
                       "b": GOOD | {"clip_embedding": [1.0, 0.0]},
                       "c": GOOD | {"clip_embedding": [0.0, 1.0]}, "no_vector": GOOD})
    _dedup_pass(out, {"b": "a"})
    profile = tmp_path / "dups.toml"
    profile.write_text(DUPS + 'if_null = "keep"\n')
    proc = run_cli("curate", str(out), "--profile", str(profile))
    assert proc.returncode == 0, proc.stderr
    con = connect(str(out))
    rows = dict(con.sql("SELECT clip_id, unmeasured FROM curation").fetchall())
    assert rows == {"a": [], "b": [], "c": [], "no_vector": ["duplicate"]}
    assert _verdicts(out) == {"a": None, "b": "duplicate", "c": None, "no_vector": None}


def test_a_rule_on_a_signal_no_clip_has_stops_curate_naming_the_option(tmp_path):
    """open_sora drops a clip without an aesthetic score, and the aesthetic head is off by
    default: on such an output it kept 0 clips with exit 0 (issue 29). Now it stops,
    names the run option that measures the signal, and writes nothing."""
    out = tmp_path / "out"
    write_output(out, {name: GOOD | changes | {"aesthetic_score": None}
                       for name, (changes, _) in CLIPS.items()})
    before = _files(out)
    for args in (["--profile", "open_sora"],
                 ["--profile", "open_sora", "--set", "min_aesthetic=5"]):
        proc = run_cli("curate", str(out), *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "rule aesthetic" in proc.stderr and "--aesthetic-model" in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert _files(out) == before
    # A rule that keeps unmeasured clips (default's low_aesthetic) judges nobody: curate
    # goes on, says how to measure the signal, and records it in the pass.
    proc = run_cli("curate", str(out))
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("note: no clip has aesthetic_score, so rule low_aesthetic")
               and "--aesthetic-model" in line for line in proc.stdout.splitlines())
    summary = json.loads(connect(str(out)).sql(
        "SELECT summary_json FROM passes WHERE kind = 'curate'").fetchall()[0][0])
    assert set(summary["missing_signals"]) == {"low_aesthetic", "duplicate"}
    assert "--aesthetic-model" in summary["missing_signals"]["low_aesthetic"]["aesthetic_score"]
    assert "vidcurate dedup" in summary["missing_signals"]["duplicate"]["is_duplicate"]


BAD_RULES = {
    "unknown column": ('keep = "no_such_signal > 1"', "no_such_signal"),
    "syntax error": ('keep = "brightness >>> = 0.1"', "not a SQL expression"),
    "not boolean": ('keep = "brightness + 1"', "must be a boolean expression"),
    "reads a file": ("keep = \"(SELECT count(*) FROM read_text('/etc/passwd')) > 0\"",
                     "subqueries are not allowed"),
    "smuggled FROM": ("keep = \"true) FROM read_csv('/etc/passwd') WHERE (true\"",
                      "no FROM, WHERE"),
    "second statement": ("keep = \"true); COPY clips TO '{leak}'; SELECT (true\"",
                         "one boolean expression, not a statement"),
    "undefined parameter": ('keep = "brightness > $nope"', "$nope not defined"),
    "no if_null": ('keep = "true"\nif_null = "maybe"', "`if_null` must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_bad_profiles_fail_clearly_and_change_nothing(out, tmp_path, case):
    rule, message = BAD_RULES[case]
    leak = tmp_path / "leak.csv"
    profile = tmp_path / "bad.toml"
    body = rule.replace("{leak}", str(leak))
    if "if_null" not in body:
        body += '\nif_null = "keep"'
    profile.write_text(f'name = "bad"\n[[rules]]\nname = "broken_rule"\n{body}\n')
    before = _files(out)
    proc = run_cli("curate", str(out), "--profile", str(profile))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert _files(out) == before and not leak.exists()


@pytest.mark.parametrize("args, message", [
    (["--profile", "missing.toml"], "no such file"),
    (["--profile", "nonesuch"], "no shipped profile"),
    (["--set", "no_such_threshold=1"], "has no parameter 'no_such_threshold'"),
    (["--set", "min_brightness=dark"], "expected a value like 0.1"),
    (["--set", "min_brightness"], "write NAME=VALUE"),
])
def test_bad_arguments_fail_clearly_and_change_nothing(out, args, message):
    before = _files(out)
    proc = run_cli("curate", str(out), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert _files(out) == before


def test_export_of_the_curated_view(out, tmp_path):
    assert run_cli("curate", str(out)).returncode == 0
    dest = tmp_path / "wds"
    proc = run_cli("export", str(out), str(dest), "--view", "clips_curated")
    assert proc.returncode == 0, proc.stderr
    keys = set()
    for shard in dest.glob("shard-*.tar"):
        with tarfile.open(shard) as tar:
            keys |= {m.name.rsplit(".", 1)[0] for m in tar.getmembers()}
    assert keys == {name for name, (_, rule) in CLIPS.items() if rule is None}


def test_export_and_publish_carry_camera_motion_and_safety_signals(tmp_path):
    """The columns this round added (camera motion, NSFW score, personal data kinds)
    travel in the exported samples' JSON and in the published clips table."""
    out = tmp_path / "out"
    values = {"pan": {"camera_motion": "pan_left", "camera_pan": -0.12, "camera_tilt": 0.0,
                      "camera_zoom": 0.01, "subject_motion": 0.3, "nsfw_score": 0.02,
                      "personal_data": ["email"]},
              "still": {"camera_motion": "static", "camera_pan": 0.0, "camera_tilt": 0.0,
                        "camera_zoom": 0.0, "subject_motion": 1.5, "nsfw_score": 0.4,
                        "personal_data": []}}
    write_output(out, {name: GOOD | v for name, v in values.items()})
    for shard in (out / "videos").glob("*.parquet"):  # publish wants known licences
        t = pq.read_table(shard)
        pq.write_table(t.set_column(t.column_names.index("license"), "license",
                                    pa.array(["CC-BY-4.0"] * len(t))), shard)
    columns = ["camera_motion", "camera_pan", "camera_tilt", "camera_zoom", "subject_motion",
               "nsfw_score", "personal_data"]
    assert run_cli("export", str(out), str(tmp_path / "wds"), "--no-keyframes").returncode == 0
    seen = {}
    for shard in (tmp_path / "wds").glob("shard-*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    seen[meta["clip_id"]] = {c: meta[c] for c in columns}
    # float32 columns: equal to the written values to float32 precision.
    expected = {name: {c: (pytest.approx(v, rel=1e-6) if isinstance(v, float) else v)
                       for c, v in row.items()} for name, row in values.items()}
    assert seen == expected
    proc = run_cli("publish", str(out), str(tmp_path / "pub"), "--media", "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    published = connect(str(tmp_path / "pub")).sql(
        f"SELECT clip_id, {', '.join(columns)} FROM clips").fetchall()
    assert {r[0]: dict(zip(columns, r[1:], strict=True)) for r in published} == expected


def test_a_profile_keeps_or_drops_clips_by_camera_motion(tmp_path):
    """camera_motion is a curation signal: a profile rule on it (here: no shaky camera,
    and a pan only when slow) decides, and a clip with no measurement follows if_null."""
    out = tmp_path / "out"
    write_output(out, {
        "pan": GOOD | {"camera_motion": "pan_right", "camera_pan": 0.05},
        "fast_pan": GOOD | {"camera_motion": "pan_left", "camera_pan": -0.4},
        "shaky": GOOD | {"camera_motion": "shaky", "camera_pan": 0.0},
        "unmeasured": GOOD | {"camera_motion": None}})
    profile = tmp_path / "steady.toml"
    profile.write_text('name = "steady"\ndescription = "steady camera"\n'
                       "[params]\nmax_pan = 0.2\n"
                       '[[rules]]\nname = "shaky"\nkeep = "camera_motion <> \'shaky\'"\n'
                       'if_null = "keep"\n'
                       '[[rules]]\nname = "fast_pan"\nkeep = "abs(camera_pan) <= $max_pan"\n'
                       'if_null = "keep"\n')
    proc = run_cli("curate", str(out), "--profile", str(profile))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(out) == {"pan": None, "fast_pan": "fast_pan", "shaky": "shaky",
                              "unmeasured": None}


def test_report_plots_the_funnel_of_the_newest_pass(out, tmp_path):
    from vidcurate.pipeline.report import write_report

    page = Path(write_report(str(out), str(tmp_path / "before"))).read_text()
    assert "Curation funnel" not in page  # no curate pass yet: no plot
    assert run_cli("curate", str(out), "--set", "min_brightness=0.15").returncode == 0
    page = Path(write_report(str(out), str(tmp_path / "after"))).read_text()
    assert "Curation funnel" in page
    section = page[page.index("Curation funnel"):].split("</section>")[0]
    assert "js-plotly-plot" in section or "plotly-graph-div" in section
    steps = json.loads(connect(str(out)).sql(
        "SELECT summary_json FROM passes WHERE kind = 'curate'").fetchall()[0][0])["funnel"]
    for s in steps:
        assert f'"{s["rule"]}' in section  # every rule is a bar of the plot
