"""Curation profiles: parsing, the expression check, overrides, the verdict query and the
funnel arithmetic, without an output (the e2e tests run the command)."""

from __future__ import annotations

import random

import duckdb
import pytest

from vidcurate.pipeline.curate import check_rules, load_profile, shipped_profiles
from vidcurate.pipeline.query import connect
from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.curate import (
    Rule,
    check_expression,
    funnel,
    measured_by,
    parse_override,
    parse_profile,
    rule_columns,
    verdict_sql,
    with_overrides,
)
from vidcurate.transforms.sinks import write_rows

PROFILE = """
name = "tiny"
description = "two rules"
[params]
min_x = 1.0
[[rules]]
name = "low_x"
keep = "x >= $min_x"
if_null = "keep"
[[rules]]
name = "flagged"
keep = "NOT list_contains(flags, 'bad')"
if_null = "drop"
"""


def test_shipped_profiles_bind_against_the_clips_schema(tmp_path):
    """Every shipped rule names real columns, gives a boolean and uses its parameters:
    checked against an output with no rows (the views still have every column)."""
    con = connect(str(tmp_path), sandbox=True)
    assert {"default", "open_sora"} <= set(shipped_profiles())
    for name in shipped_profiles():
        profile, path = load_profile(name)
        assert profile.name == name and path.endswith(f"{name}.toml")
        used = check_rules(con, profile)
        assert set().union(*used.values()) == set(profile.params)
    assert load_profile("open_sora")[0].source.startswith("https://github.com/hpcaitech")


def _verdicts(rules: list[Rule], rows: list[tuple], params: dict) -> list[tuple]:
    con = duckdb.connect()
    con.sql("CREATE TABLE t (clip_id VARCHAR, video_id VARCHAR, run_id VARCHAR, x DOUBLE, "
            "flags VARCHAR[])")
    con.executemany("INSERT INTO t VALUES (?, 'v', 'r', ?, ?)", rows)
    return con.sql(verdict_sql("SELECT * FROM t", rules), params=params).fetchall()


def test_the_first_failing_rule_drops_and_null_follows_if_null():
    rules = list(parse_profile(PROFILE, "test").rules)
    rows = [("a", 2.0, []), ("b", 0.5, ["bad"]), ("c", 2.0, ["bad"]), ("d", None, []),
            ("e", None, None), ("f", 2.0, None)]
    got = {c: (i, u) for c, _, _, i, u in _verdicts(rules, rows, {"min_x": 1.0})}
    assert got == {
        "a": (None, []),
        "b": (0, []),  # fails both: the first rule is the one recorded
        "c": (1, []),
        "d": (None, ["low_x"]),  # unmeasured x: kept (if_null = keep)
        "e": (1, ["low_x", "flagged"]),  # unmeasured flags: dropped (if_null = drop)
        "f": (1, ["flagged"]),
    }


def test_funnel_arithmetic():
    rules = [Rule(f"r{i}", "true", "keep") for i in range(4)]
    rng = random.Random(3)
    drops = [rng.choice([None, 0, 1, 1, 3]) for _ in range(200)]
    steps = funnel(rules, drops, [[] for _ in drops])
    assert [s.dropped for s in steps] == [drops.count(i) for i in range(4)]
    assert sum(s.dropped for s in steps) + steps[-1].kept_after == len(drops)
    assert steps[0].reached == len(drops)
    for before, after in zip(steps, steps[1:], strict=False):
        assert after.reached == before.kept_after == before.reached - before.dropped
    assert steps[-1].kept_after == drops.count(None)
    nulls = funnel(rules[:2], [None, 1], [["r0"], ["r0", "r1"]])
    assert [s.unmeasured for s in nulls] == [2, 1]


@pytest.mark.parametrize("keep", [
    "x >= $min_x", "list_contains(flags, 'static') IS NOT TRUE",
    "len(list_filter(flags, lambda f: f IN ('dark', 'blurry'))) = 0",
    "coalesce(x, 0) BETWEEN 0.1 AND 0.9", "(x > 1) OR (x < -1)",
])
def test_expressions_that_are_allowed(keep):
    assert check_expression(duckdb.connect(), Rule("ok", keep, "keep")) <= {"min_x"}


@pytest.mark.parametrize("keep, message", [
    ("(SELECT 1) = 1", "subqueries"),
    ("x IN (SELECT * FROM read_csv('/etc/passwd'))", "subqueries"),
    ("EXISTS (FROM glob('/*'))", "subqueries"),
    ("true) FROM read_text('/etc/passwd') WHERE (true", "no FROM"),
    ("true) ORDER BY (1", "no FROM"),
    ("true); DROP TABLE clips; SELECT (1", "not a statement"),
    ("row_number() OVER () < 10", "window functions"),
    ("x > ?", "parameters are named"),
    ("x >>>", "not a SQL expression"),
])
def test_expressions_that_are_refused(keep, message):
    with pytest.raises(ConfigError, match=message):
        check_expression(duckdb.connect(), Rule("bad", keep, "keep"))


@pytest.mark.parametrize("text, message", [
    ("name = 'x'\n", "no rules"),
    ("name = 'x'\nrules = 3\n", "no rules"),
    ("name = 'X Y'\n[[rules]]\nname='a'\nkeep='true'\nif_null='keep'\n", "`name`"),
    ("name = 'x'\n[[rules]]\nname='a'\nkep='true'\nif_null='keep'\n", "unknown key"),
    ("name = 'x'\n[[rules]]\nname='a'\nkeep='true'\n", "`if_null`"),
    ("name = 'x'\n[[rules]]\nname='a'\nkeep='true'\nif_null='keep'\n"
     "[[rules]]\nname='a'\nkeep='true'\nif_null='keep'\n", "unique"),
    ("name = 'x'\n[params]\nwhen = 2024-01-01\n", "parameter"),
    ("name = 'x'\n[params]\nn = nan\n", "finite"),
    ("name = [\n", "not valid TOML"),
])
def test_malformed_profiles(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_profile(text, "bad.toml")


def test_overrides_keep_the_kind_of_each_threshold():
    profile = parse_profile(PROFILE, "test")
    assert parse_override("min_x=2") == ("min_x", 2)
    assert parse_override("flag=static") == ("flag", "static")
    assert parse_override('flags=["a", "b"]') == ("flags", ["a", "b"])
    changed = with_overrides(profile, [parse_override("min_x=2.5")])
    assert changed.params["min_x"] == 2.5 and profile.params["min_x"] == 1.0
    assert changed.sha256() != profile.sha256()
    # The hash is the rules and thresholds, not the prose around them.
    reworded = parse_profile(PROFILE.replace("two rules", "other words"), "test")
    assert reworded.sha256() == profile.sha256()
    with pytest.raises(ConfigError, match="no parameter 'nope'"):
        with_overrides(profile, [("nope", 1)])
    with pytest.raises(ConfigError, match="expected a value like"):
        with_overrides(profile, [("min_x", "high")])
    with pytest.raises(ConfigError, match="expected a value like"):
        with_overrides(profile, [("min_x", True)])


def test_profile_files_by_path(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text(PROFILE)
    assert load_profile(str(mine))[0].name == "tiny"
    with pytest.raises(ConfigError, match="no such file"):
        load_profile(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_profile(str(tmp_path))  # a folder is not a profile
    big = tmp_path / "big.toml"
    big.write_text(PROFILE + "#" * (2 << 20))
    with pytest.raises(ConfigError, match="KiB"):
        load_profile(str(big))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="cannot read it"):
        load_profile(str(binary))


def test_rules_run_sandboxed_even_past_the_expression_check(tmp_path, monkeypatch):
    """Defence in depth: with the parse check switched off, a rule that reads a file
    outside the output still fails, because curate runs the rules in the sandboxed
    connection, and nothing is written."""
    import vidcurate.pipeline.curate as curate_module

    secret = tmp_path / "secret.txt"
    secret.write_text("canary")
    out = tmp_path / "out"  # an output with a run and no clips: curate refuses a non-output
    write_rows(str(out), "runs", "r1", [dict(run_id="r1", status="complete")])
    profile = tmp_path / "leak.toml"
    profile.write_text(f"name = 'leak'\n[[rules]]\nname = 'reads'\nkeep = \"(SELECT count(*) "
                       f"FROM read_text('{secret}')) > 0\"\nif_null = 'keep'\n")
    monkeypatch.setattr(curate_module, "check_expression", lambda con, rule: set())
    with pytest.raises(ConfigError, match="rule reads: .*(Permission|disabled)"):
        curate_module.curate(str(out), str(profile))
    assert [p.name for p in out.iterdir()] == ["runs"]


def test_a_rule_knows_the_signals_it_reads_and_what_measures_them():
    con = duckdb.connect()
    rule = Rule("r", "aesthetic_score >= $min AND len(list_filter(quality_flags, "
                "lambda f: f = 'static')) = 0 AND c.is_duplicate IS NOT TRUE", "keep")
    # The lambda's parameter parses as a column too; curate keeps real input columns.
    assert rule_columns(con, rule) == {"aesthetic_score", "quality_flags", "f", "is_duplicate"}
    assert "--aesthetic-model" in measured_by("aesthetic_score")
    assert "vidcurate dedup" in measured_by("is_duplicate")
    assert "--no-ocr" in measured_by("ocr_coverage_mean")
