"""`vidcurate curate`: apply a curation profile to an output's clips, as a pass.

Like dedup and balance: it reads the current rows through the views, decodes nothing,
writes <output>/curation/<pass_id>.parquet (every clip's verdict and the first rule that
dropped it) and then the pass's `passes` row, which commits it. The views `curation`
and `clips_curated` follow the newest curate pass, so a rerun with other thresholds
replaces the previous curation for every reader. The profile is checked completely
(TOML, rules, parameters, columns, types) before anything is written: a bad profile
leaves the output as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from typing import Any

import duckdb

from vidcurate.pipeline.options import ConfigError, new_run_id
from vidcurate.pipeline.query import connect, require_output
from vidcurate.transforms.curate import (
    NAME,
    Param,
    Profile,
    Step,
    check_expression,
    check_parameters,
    funnel,
    measured_by,
    parse_profile,
    rule_columns,
    verdict_sql,
    with_overrides,
)
from vidcurate.transforms.sinks import write_arrow, write_rows

PROFILE_DIR = os.path.join(os.path.dirname(__file__), "profiles")
MAX_PROFILE_BYTES = 1 << 20

# What a rule can read: the current clips, and beside their own columns the results of
# the newest dedup and balance passes and the video's resolution. is_duplicate and
# balance_kept are NULL when that pass never ran (or did not see the clip), so a rule
# on them follows its if_null instead of treating "not checked" as "unique". Dedup
# compares embeddings only: a clip without one was not checked, whatever the pass says.
INPUT_SQL = """
    SELECT c.*,
           CASE WHEN NOT EXISTS (SELECT 1 FROM passes WHERE kind = 'dedup')
                     OR c.clip_embedding IS NULL THEN NULL
                ELSE c.clip_id IN (SELECT clip_id FROM duplicates) END AS is_duplicate,
           b.kept AS balance_kept,
           v.width AS video_width, v.height AS video_height, v.fps AS video_fps
    FROM clips c JOIN videos v USING (video_id)
    LEFT JOIN balance b ON b.clip_id = c.clip_id"""


def shipped_profiles() -> list[str]:
    return sorted(f.removesuffix(".toml") for f in os.listdir(PROFILE_DIR)
                  if f.endswith(".toml"))


def load_profile(spec: str) -> tuple[Profile, str]:
    """A shipped profile by name, or a TOML file by path; returns it and where it came
    from. A bare name (letters, digits, _) is a shipped profile; write ./name for a file
    of that name in the current folder."""
    if NAME.match(spec):
        if spec not in shipped_profiles():
            raise ConfigError(f"--profile {spec}: no shipped profile of that name (shipped: "
                              f"{', '.join(shipped_profiles())}); give a file as a path, "
                              f"e.g. ./{spec}.toml")
        path = os.path.join(PROFILE_DIR, f"{spec}.toml")
        where = f"{spec} (shipped)"
    else:
        path, where = spec, spec
        if not os.path.isfile(path):
            raise ConfigError(f"--profile {spec}: no such file (shipped profiles: "
                              f"{', '.join(shipped_profiles())})")
    try:
        # A profile is a page of rules: a huge file named by mistake is refused unread.
        if os.path.getsize(path) > MAX_PROFILE_BYTES:
            raise ConfigError(f"--profile {spec}: over {MAX_PROFILE_BYTES // 1024} KiB; a "
                              "profile is a short TOML file of rules")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--profile {spec}: cannot read it: {e}") from e
    return parse_profile(text, where), os.path.abspath(path)


def _error(e: duckdb.Error) -> str:
    return " ".join(str(e).split())


def check_rules(con: duckdb.DuckDBPyConnection, profile: Profile) -> dict[str, set[str]]:
    """Parse every rule, then bind it against the clip columns: unknown columns, wrong
    types and non-boolean results fail here, by rule name, before any output."""
    used = {r.name: check_expression(con, r) for r in profile.rules}
    check_parameters(profile, used)
    for rule in profile.rules:
        params = {p: profile.params[p] for p in used[rule.name]}
        try:
            description = con.execute(
                f"WITH input AS ({INPUT_SQL}) SELECT ({rule.keep}) AS v FROM input LIMIT 0",
                params).description
        except duckdb.Error as e:
            raise ConfigError(f"rule {rule.name}: {_error(e)}") from e
        kind = str(description[0][1])
        if kind != "BOOLEAN":
            raise ConfigError(f"rule {rule.name}: `keep` must be a boolean expression; "
                              f"`{rule.keep}` gives {kind}")
    return used


@dataclasses.dataclass(frozen=True)
class Curation:
    pass_id: str
    profile: Profile
    profile_sha256: str
    clips: int
    kept: int
    steps: list[Step]
    # rule -> the signals it reads that no clip has: it judged nobody on them
    missing: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"pass_id": self.pass_id, "profile": self.profile.name,
                "profile_sha256": self.profile_sha256, "clips": self.clips,
                "kept": self.kept, "funnel": [dataclasses.asdict(s) for s in self.steps],
                "missing_signals": {r: {c: measured_by(c) for c in cols}
                                    for r, cols in self.missing.items()}}


def missing_signals(con: duckdb.DuckDBPyConnection, profile: Profile) -> dict[str, list[str]]:
    """Per rule, the input columns it reads that are NULL on every clip: a signal no run
    (or pass) of this output measured. Empty for an output without clips."""
    names = set(con.sql(f"SELECT * FROM ({INPUT_SQL}) LIMIT 0").columns)
    reads = {r.name: sorted(rule_columns(con, r) & names) for r in profile.rules}
    columns = sorted(set().union(*map(set, reads.values())))
    if not columns:
        return {}
    counts = con.sql(f"SELECT count(*), {', '.join(f'count({c})' for c in columns)} "
                     f"FROM ({INPUT_SQL})").fetchall()[0]
    if not counts[0]:
        return {}
    absent = {c for c, n in zip(columns, counts[1:], strict=True) if n == 0}
    return {r: [c for c in cols if c in absent] for r, cols in reads.items()
            if absent & set(cols)}


def _refuse_blind_drops(profile: Profile, steps: list[Step],
                        missing: dict[str, list[str]]) -> None:
    """A rule that drops clips on a signal no clip has judges nobody and keeps nobody
    (open_sora's aesthetic rule on a run without the aesthetic head kept 0 clips): stop
    before anything is written and say which option measures the signal."""
    for step in steps:
        if step.rule in missing and step.dropped:
            signals = missing[step.rule]
            how = "; ".join(f"{c} with {measured_by(c)}" for c in signals)
            raise ConfigError(
                f"profile {profile.name}, rule {step.rule}: no clip has "
                f"{' or '.join(signals)}, so the rule would drop {step.dropped} of the "
                f"{step.reached} clips that reach it unjudged (if_null = {step.if_null}). "
                f"Measure {how}; or curate with a profile that keeps unmeasured clips "
                "(e.g. --profile default). Nothing was written.")


def curate(output: str, profile_spec: str = "default",
           overrides: list[tuple[str, Param]] | None = None) -> Curation:
    """Judge every current clip with the profile; write and commit the pass."""
    require_output(output)
    con = connect(output, sandbox=True)  # profile SQL runs with no access outside output
    profile, path = load_profile(profile_spec)
    profile = with_overrides(profile, overrides or [])
    used = check_rules(con, profile)
    all_used = set().union(*used.values())
    params = {p: v for p, v in profile.params.items() if p in all_used}
    try:
        table = con.sql(verdict_sql(INPUT_SQL, profile.rules), params=params).to_arrow_table()
    except duckdb.Error as e:  # e.g. a cast that fails on some clip's value
        raise ConfigError(f"profile {profile.name}: evaluating the rules failed: "
                          f"{_error(e)}") from e
    drop_index = table.column("drop_index").to_pylist()
    steps = funnel(profile.rules, drop_index, table.column("unmeasured").to_pylist())
    missing = missing_signals(con, profile)
    _refuse_blind_drops(profile, steps, missing)
    pass_id, now, digest = new_run_id(), dt.datetime.now(dt.UTC), profile.sha256()
    names = [r.name for r in profile.rules]
    rows = {
        "pass_id": [pass_id] * table.num_rows,
        "created_at": [now] * table.num_rows,
        "clip_id": table.column("clip_id"),
        "video_id": table.column("video_id"),
        "run_id": table.column("run_id"),
        "kept": [i is None for i in drop_index],
        "dropped_by": [None if i is None else names[i] for i in drop_index],
        "unmeasured": table.column("unmeasured"),
        "profile": [profile.name] * table.num_rows,
        "profile_sha256": [digest] * table.num_rows,
    }
    write_arrow(output, "curation", pass_id, rows)
    result = Curation(pass_id, profile, digest, table.num_rows,
                      sum(i is None for i in drop_index), steps, missing)
    write_rows(output, "passes", pass_id, [{
        "pass_id": pass_id, "kind": "curate", "created_at": now,
        "params_json": json.dumps({"profile": profile.name, "file": path,
                                   "overrides": dict(overrides or []),
                                   "description": profile.description,
                                   "source": profile.source, **profile.canonical()},
                                  sort_keys=True),
        "summary_json": json.dumps(result.summary(), sort_keys=True)}])
    return result


def describe(result: Curation) -> list[str]:
    """The funnel as text lines: per rule in order, clips that reached it, dropped, kept
    after it and unmeasured; then a note for each rule that judged nobody, and the
    total."""
    header = ["rule", "reached", "dropped", "kept after", "unmeasured (if_null)"]
    rows = [["(all clips)", "", "", str(result.clips), ""]]
    rows += [[s.rule, str(s.reached), str(s.dropped), str(s.kept_after),
              f"{s.unmeasured} ({s.if_null})" if s.unmeasured else "0"] for s in result.steps]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"curate {result.pass_id}: profile {result.profile.name} "
             f"(sha256 {result.profile_sha256[:12]}), {result.clips} clips", ""]
    for i, row in enumerate([header, *rows]):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    blind = [f"{s.rule} ({s.if_null})" for s in result.steps
             if s.reached and s.unmeasured == s.reached]
    if blind:  # a signal no run measured: say so rather than let if_null decide quietly
        lines.append(f"note: these rules could judge none of the clips that reached them (the "
                     f"signal is NULL for all; if_null decided): {', '.join(blind)}")
    for rule, signals in result.missing.items():  # no clip has it: say how to get it
        for column in signals:
            lines.append(f"note: no clip has {column}, so rule {rule} judged nobody; "
                         f"measure it with {measured_by(column)}")
    lines.append(f"kept {result.kept} of {result.clips} clips (view clips_curated)")
    return lines
