"""`vidcurate curate OUTPUT --calibrate`: fit each rule's threshold to people's labels.

For every rule of the profile, on its own (not after the rules before it):
- its verdicts on the labelled clips at the current threshold: precision and recall
  of "drop" (transforms/calibrate.py says which labels speak about which rule);
- the threshold with the highest F1 of "drop" on those labels, when the rule compares
  one signal with one threshold and has at least --min-labels labelled drop and keep
  clips (otherwise it says so and fits nothing);
- its keep-rate curve: the share of all current clips it keeps at each candidate
  threshold.
A rule on a quality flag (`NOT list_contains(quality_flags, 'static')`) is calibrated
on the signal behind the flag: the flag's threshold is a run option (--flag-static-
motion), so the fitted profile replaces the rule by the signal comparison it stands for
(`motion_score >= $static_motion`), which keeps and drops exactly the same clips at the
run's threshold.

The result is written as a `calibrate` row of `passes` (the report draws it) and a new
profile, <output>/calibration/<pass_id>.toml, with the fitted thresholds and, beside
each, the label counts it rests on. Nothing else changes: curate with that profile to
apply it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import os
import re
from collections.abc import Callable
from typing import Any

import duckdb

from vidcurate.pipeline.curate import INPUT_SQL, check_rules, load_profile
from vidcurate.pipeline.options import ConfigError, new_run_id
from vidcurate.pipeline.query import connect, require_output
from vidcurate.transforms.calibrate import (
    MIN_LABELS,
    best_threshold,
    candidate_thresholds,
    confusion,
    enough_labels,
    keep_rate,
    truth_for_rule,
)
from vidcurate.transforms.curate import (
    NAME,
    Param,
    Profile,
    Rule,
    parse_profile,
    rule_columns,
    with_overrides,
)
from vidcurate.transforms.judge_clips import QualityConfig
from vidcurate.transforms.sinks import write_rows

# The flags that stand for one signal and one threshold: flag -> (signal, the
# QualityConfig field / run option flag_<field>, the comparison that keeps a clip).
FLAG_SIGNALS: dict[str, tuple[str, str, str]] = {
    "static": ("motion_score", "static_motion", ">="),
    "dark": ("brightness", "dark_brightness", ">="),
    "overexposed": ("brightness", "overexposed_brightness", "<="),
    "blurry": ("sharpness", "blurry_sharpness", ">="),
    "text_heavy": ("ocr_coverage_mean", "text_heavy_coverage", "<="),
    "low_aesthetic": ("aesthetic_score", "low_aesthetic_score", ">="),
    "nsfw": ("nsfw_score", "nsfw_score", "<="),
}
_FLAG_RULE = re.compile(r"^\s*not\s+list_contains\s*\(\s*quality_flags\s*,\s*'([a-z_]+)'\s*\)"
                        r"\s*$", re.IGNORECASE)
_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|"
                      r"UBIGINT|FLOAT|REAL|DOUBLE|DECIMAL.*)$")


@dataclasses.dataclass(frozen=True)
class Tunable:
    """How a rule's threshold can move: the expression, its parameter and signal."""

    keep: str  # the expression evaluated (the signal comparison for a flag rule)
    param: str
    signal: str
    current: float
    integer: bool
    flag: str | None = None  # the flag the rule was written on, when it was


def _run_flag_threshold(con: duckdb.DuckDBPyConnection, field: str) -> float:
    """The flag threshold of the newest run (its options), or the default."""
    row = con.sql("SELECT options_json FROM runs ORDER BY finished_at DESC LIMIT 1").fetchall()
    default = float(getattr(QualityConfig(), field))
    if not row or not row[0][0]:
        return default
    try:
        value = json.loads(row[0][0]).get("pipeline_options", {}).get(f"flag_{field}")
    except (ValueError, AttributeError):
        return default
    return float(value) if isinstance(value, int | float) else default


def tunable(con: duckdb.DuckDBPyConnection, profile: Profile, rule: Rule,
            used: set[str], numeric: set[str]) -> Tunable | str:
    """The rule's one threshold on one signal, or why it has none to fit."""
    flag = _FLAG_RULE.match(rule.keep)
    if flag:
        if flag.group(1) not in FLAG_SIGNALS:
            return f"flag {flag.group(1)} is not one signal against one threshold"
        signal, field, op = FLAG_SIGNALS[flag.group(1)]
        param = field if field not in profile.params else f"{field}_fitted"
        return Tunable(f"{signal} {op} ${param}", param, signal,
                       _run_flag_threshold(con, field), False, flag.group(1))
    if len(used) != 1:
        return ("no threshold to fit" if not used
                else f"{len(used)} parameters ({', '.join(sorted(used))}); one is fitted")
    param = next(iter(used))
    value = profile.params[param]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"parameter {param} is not a number"
    signals = sorted(rule_columns(con, rule) & numeric)
    if len(signals) != 1:
        return f"reads {len(signals)} numeric signals; one is fitted"
    return Tunable(rule.keep, param, signals[0], float(value), isinstance(value, int))


def _drops(con: duckdb.DuckDBPyConnection, keep: str, if_null: str,
           params: dict[str, Param]) -> list[bool]:
    """Whether the expression drops each current clip (in clip_id order)."""
    null_keeps = "TRUE" if if_null == "keep" else "FALSE"
    sql = (f"WITH input AS ({INPUT_SQL}) SELECT NOT coalesce(({keep}), {null_keeps}) "
           "FROM input ORDER BY clip_id")
    try:
        return [bool(v) for (v,) in con.execute(sql, params).fetchall()]
    except duckdb.Error as e:
        raise ConfigError(f"evaluating `{keep}` failed: {' '.join(str(e).split())}") from e


def _number(value: float, integer: bool) -> int | float:
    # Six significant digits: a threshold written to a profile is read by people.
    return int(round(value)) if integer else float(f"{value:.6g}")


def _rule_result(con: duckdb.DuckDBPyConnection, profile: Profile, rule: Rule,
                 used: set[str], numeric: set[str], truth: dict[int, bool],
                 min_labels: int) -> dict[str, Any]:
    labelled = sorted(truth)
    truths = [truth[i] for i in labelled]
    params = {p: profile.params[p] for p in used}
    current = _drops(con, rule.keep, rule.if_null, params)
    at_current = confusion([current[i] for i in labelled], truths)
    result: dict[str, Any] = {
        "rule": rule.name, "keep": rule.keep, "if_null": rule.if_null,
        "labelled_drop": sum(truths), "labelled_keep": len(truths) - sum(truths),
        "at_current": at_current.as_dict(), "current_keep_rate": keep_rate(current),
        "fit": None, "curve": []}
    how = tunable(con, profile, rule, used, numeric)
    if isinstance(how, str):
        return result | {"status": "not fitted", "note": how}
    result |= {"param": how.param, "signal": how.signal, "flag": how.flag,
               "current": _number(how.current, how.integer), "tunable_keep": how.keep}
    values = [v for (v,) in con.sql(f"SELECT {how.signal} FROM ({INPUT_SQL}) "
                                    f"WHERE {how.signal} IS NOT NULL").fetchall()]
    thresholds = candidate_thresholds(values, how.current, how.integer)
    drops = [_drops(con, how.keep, rule.if_null,
                    {**params, how.param: _number(t, True) if how.integer else t})
             for t in thresholds]
    result["curve"] = [[_number(t, how.integer), keep_rate(d)]
                       for t, d in zip(thresholds, drops, strict=True)]
    if not enough_labels(truths, min_labels):
        return result | {"status": "too few labels",
                         "note": f"{sum(truths)} drop and {len(truths) - sum(truths)} keep "
                                 f"labels speak about this rule; fitting needs {min_labels} "
                                 "of each"}
    fit = best_threshold(thresholds, [[d[i] for i in labelled] for d in drops], truths)
    if fit is None:
        return result | {"status": "not fitted", "note": "no threshold has a defined F1"}
    index = thresholds.index(fit.threshold)
    result["fit"] = {"threshold": _number(fit.threshold, how.integer),
                     **fit.counts.as_dict(), "tied": fit.tied,
                     "keep_rate": keep_rate(drops[index])}
    return result | {"status": "fitted", "note": "highest F1 of drop on the labels"}


@dataclasses.dataclass(frozen=True)
class Calibration:
    pass_id: str
    profile: Profile
    labels: int  # current clips with a label
    clips: int
    rules: list[dict[str, Any]]
    fitted_profile: str | None  # path of the profile file written; None: nothing fitted

    def summary(self) -> dict[str, Any]:
        return {"pass_id": self.pass_id, "profile": self.profile.name,
                "labels": self.labels, "clips": self.clips, "rules": self.rules,
                "fitted_profile": self.fitted_profile,
                "criterion": "highest F1 of drop on the labelled clips; ties: the middle "
                             "threshold"}


def calibrate(output: str, profile_spec: str = "default",
              overrides: list[tuple[str, Param]] | None = None,
              min_labels: int = MIN_LABELS) -> Calibration:
    """Fit the profile's thresholds to the output's labels; write the fitted profile
    and the pass row."""
    require_output(output)
    if min_labels < 1:
        raise ConfigError(f"--min-labels must be at least 1, got {min_labels}")
    con = connect(output, sandbox=True)  # profile SQL runs with no access outside output
    profile, _ = load_profile(profile_spec)
    profile = with_overrides(profile, overrides or [])
    used = check_rules(con, profile)
    described = con.sql(f"DESCRIBE ({INPUT_SQL})").fetchall()
    numeric = {name for name, kind, *_ in described if _NUMERIC.match(str(kind))}
    order = [c for (c,) in con.sql(f"SELECT clip_id FROM ({INPUT_SQL}) ORDER BY clip_id"
                                   ).fetchall()]
    position = {c: i for i, c in enumerate(order)}
    labels = con.sql("SELECT clip_id, label, reason FROM labels").fetchall()
    if not labels:
        raise ConfigError("no labels in this output: label clips with `vidcurate review "
                          f"{output}` or import them with `vidcurate label {output} --from "
                          "FILE.csv` first")
    rules = []
    for rule in profile.rules:
        truth = {position[c]: t for c, label, reason in labels if c in position
                 for t in [truth_for_rule(label, reason, rule.name)] if t is not None}
        rules.append(_rule_result(con, profile, rule, used[rule.name], numeric, truth,
                                  min_labels))
    pass_id, now = new_run_id(), dt.datetime.now(dt.UTC)
    fitted_path = None
    if any(r["status"] == "fitted" for r in rules):
        fitted_path = os.path.join(os.path.abspath(output), "calibration", f"{pass_id}.toml")
        text = fitted_profile_text(profile, rules, pass_id, len(labels))
        parse_profile(text, fitted_path)  # what we write must load as a profile
        os.makedirs(os.path.dirname(fitted_path), exist_ok=True)
        tmp = f"{fitted_path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, fitted_path)
    result = Calibration(pass_id, profile, len(labels), len(order), rules, fitted_path)
    write_rows(output, "passes", pass_id, [{
        "pass_id": pass_id, "kind": "calibrate", "created_at": now,
        "params_json": json.dumps({"profile": profile.name, "overrides": dict(overrides or []),
                                   "min_labels": min_labels, **profile.canonical()},
                                  sort_keys=True),
        "summary_json": json.dumps(result.summary(), sort_keys=True)}])
    return result


# ------------------------------------------------------------------ the fitted profile
def _toml(value: Param) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    # TOML basic strings take JSON's escapes; non-ASCII text stays as it is.
    return json.dumps(value, ensure_ascii=False)


def fitted_profile_text(profile: Profile, rules: list[dict[str, Any]], pass_id: str,
                        labels: int) -> str:
    """The profile with each fitted threshold replaced, as TOML, every fitted value
    with a comment naming the labels it rests on."""
    by_rule = {r["rule"]: r for r in rules}
    name = f"{profile.name}_calibrated"
    name = name if NAME.match(name) else "calibrated"
    params: dict[str, Param] = dict(profile.params)
    notes: dict[str, str] = {}
    new_rules = []
    for rule in profile.rules:
        r = by_rule[rule.name]
        keep = rule.keep
        if r["status"] == "fitted":
            fit = r["fit"]
            params[r["param"]] = fit["threshold"]
            keep = r["tunable_keep"]
            f1 = f"{fit['f1']:.3f}" if fit["f1"] is not None else "n/a"
            was = r["at_current"]["f1"]
            notes[r["param"]] = (f"fitted on {r['labelled_drop']} drop / {r['labelled_keep']} "
                                 f"keep labels: F1 {f1} (was "
                                 f"{'n/a' if was is None else f'{was:.3f}'} at {r['current']})")
        elif r.get("param") and r.get("flag") is None:
            notes[r["param"]] = f"not fitted: {r['note']}"
        new_rules.append(dataclasses.replace(rule, keep=keep))
    lines = [f"# Fitted by `vidcurate curate --calibrate` (pass {pass_id}) from profile "
             f"{profile.name} and {labels} labelled clips.",
             "# Criterion: per rule, the threshold with the highest F1 of drop on the labels "
             "(ties: the middle one).", "",
             f"name = {_toml(name)}",
             f"description = {_toml(f'{profile.description} Thresholds fitted to labels.')}",
             f"source = {_toml(profile.source or profile.name)}", "", "[params]"]
    for key, value in params.items():
        note = f"  # {notes[key]}" if key in notes else ""
        lines.append(f"{key} = {_toml(value)}{note}")
    for rule in new_rules:
        lines += ["", "[[rules]]", f"name = {_toml(rule.name)}", f"keep = {_toml(rule.keep)}",
                  f"if_null = {_toml(rule.if_null)}"]
        if rule.why:
            lines.append(f"why = {_toml(rule.why)}")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def describe(result: Calibration) -> list[str]:
    """The calibration as text: per rule the labels, precision / recall / F1 now, the
    fitted threshold with its F1, and the keep rate now and fitted."""
    header = ["rule", "threshold", "labels drop/keep", "precision", "recall", "F1",
              "fitted", "F1 fitted", "keep rate now", "fitted"]
    rows = []
    for r in result.rules:
        now, fit = r["at_current"], r["fit"] or {}
        threshold = f"{r['param']} {r['current']}" if r.get("param") else "-"
        rows.append([r["rule"], threshold, f"{r['labelled_drop']}/{r['labelled_keep']}",
                     _cell(now["precision"]), _cell(now["recall"]), _cell(now["f1"]),
                     _cell(fit.get("threshold")), _cell(fit.get("f1")),
                     _cell(r["current_keep_rate"]), _cell(fit.get("keep_rate"))])
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    lines = [f"calibrate {result.pass_id}: profile {result.profile.name}, "
             f"{result.labels} labelled of {result.clips} clips; criterion: highest F1 of "
             "drop on the labels (positive: labelled drop)", ""]
    for i, row in enumerate([header, *rows]):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for r in result.rules:
        if r["status"] != "fitted":
            lines.append(f"note: {r['rule']}: {r['status']}: {r['note']}")
    if result.fitted_profile:
        lines.append(f"fitted profile: {result.fitted_profile}")
    else:
        lines.append("no rule was fitted, so no profile was written")
    return lines



# ------------------------------------------------------------------ the report
def calibration_figures(con: duckdb.DuckDBPyConnection, html_of: Callable[..., str]
                        ) -> list[tuple[str, str, str | None]]:
    """The report's sections for the newest calibrate pass: the labelled-vs-predicted
    table, and per rule with a threshold its keep-rate curve over all clips with the
    current and fitted thresholds marked. Empty when no calibration ran."""
    import plotly.graph_objects as go

    row = con.sql("SELECT summary_json FROM passes WHERE kind = 'calibrate' "
                  "ORDER BY created_at DESC, pass_id DESC LIMIT 1").fetchall()
    if not row:
        return []
    summary = json.loads(row[0][0])
    columns = ["rule", "labels drop / keep", "TP / FP / FN / TN now", "precision", "recall",
               "F1", "threshold now", "fitted", "F1 fitted", "keep rate now", "fitted",
               "status"]
    body, notes = [], []
    for r in summary["rules"]:
        now, fit = r["at_current"], r["fit"] or {}
        cells = [r["rule"], f"{r['labelled_drop']} / {r['labelled_keep']}",
                 f"{now['tp']} / {now['fp']} / {now['fn']} / {now['tn']}", now["precision"],
                 now["recall"], now["f1"],
                 f"{r['param']} = {r['current']}" if r.get("param") else None,
                 fit.get("threshold"), fit.get("f1"), r["current_keep_rate"],
                 fit.get("keep_rate"), r["status"]]
        body.append("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in cells)
                    + "</tr>")
        if r["status"] != "fitted":
            notes.append(f"<li>{html.escape(r['rule'])}: {html.escape(r['note'])}</li>")
    table = ('<table id="calibration-table" style="font-size: .75rem"><tr>'
             + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
             + "".join(body) + "</table>"
             + f'<p class="note">{summary["labels"]} labelled of {summary["clips"]} clips; '
             f'{html.escape(summary["criterion"])}; fitted profile: '
             f'{html.escape(summary["fitted_profile"] or "none (nothing fitted)")}</p>'
             + (f'<ul class="note" style="font-size: .75rem">{"".join(notes)}</ul>'
                if notes else ""))
    out: list[tuple[str, str, str | None]] = [
        (f"Calibration: labels vs rules (profile {summary['profile']})", table, None)]
    for r in summary["rules"]:
        if not r["curve"]:
            continue
        fig = go.Figure(go.Scatter(x=[p[0] for p in r["curve"]], y=[p[1] for p in r["curve"]],
                                   mode="lines", line_shape="hvh", name="keep rate"))
        fig.add_vline(x=r["current"], line_dash="dot", annotation_text="now")
        if r["fit"]:
            fig.add_vline(x=r["fit"]["threshold"], line_color="green",
                          annotation_text="fitted", annotation_position="bottom right")
        fig.update_layout(xaxis_title=f"{r['param']} ({r['signal']})",
                          yaxis_title="share of clips kept", yaxis_range=[0, 1.05])
        out.append((f"Calibration: keep rate of {r['rule']} as {r['param']} moves",
                    html_of(fig), None))
    return out
