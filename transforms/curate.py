"""Curation profiles: named keep-rules over clip columns, checked before anything runs,
and the funnel they make.

A profile is a TOML file (tomllib is in the standard library):

    name = "default"
    description = "..."
    [params]                      # thresholds, each overridable with --set NAME=VALUE
    min_brightness = 0.08
    [[rules]]                     # in order: a clip is dropped by the first rule it fails
    name = "too_dark"
    keep = "brightness >= $min_brightness"   # a DuckDB boolean expression over one clip
    if_null = "keep"              # what an unmeasured signal (NULL result) means

Rule expressions come from files a user may have been handed, so they are checked as
data, not trusted as SQL: each must parse as exactly one expression (no second
statement, no FROM / WHERE smuggled in after a closing parenthesis), with no subquery
(so no table function such as read_text / read_csv, which only exist in a FROM), and
with parameters only by name. The command then evaluates them in the sandboxed,
read-only connection that `vidcurate query` uses, so even an expression this check
missed cannot read or write a file outside the output.

NULL: SQL comparisons with a NULL signal give NULL, which is neither keep nor drop.
Every rule says with `if_null` which it means, and the funnel counts, per rule, the
clips that reached it with a NULL result: a signal that was never measured shows up as
"unmeasured N" instead of silently keeping or dropping everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from vidcurate.transforms.core import ConfigError

STAGE = "curate"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
IF_NULL = ("keep", "drop")
PROFILE_KEYS = {"name", "description", "source", "params", "rules"}
RULE_KEYS = {"name", "keep", "if_null", "why"}

Scalar = bool | int | float | str
Param = Scalar | list[Scalar]


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    keep: str  # boolean SQL expression: true keeps the clip (at this rule)
    if_null: str  # "keep" or "drop": the verdict when `keep` evaluates to NULL
    why: str = ""


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    rules: tuple[Rule, ...]
    params: Mapping[str, Param]
    description: str = ""
    source: str = ""  # where the recipe comes from (paper, repository)

    def canonical(self) -> dict[str, Any]:
        """What decides the verdicts: rules and effective parameters (not the prose)."""
        return {"rules": [dataclasses.asdict(r) | {"why": None} for r in self.rules],
                "params": dict(sorted(self.params.items()))}

    def sha256(self) -> str:
        """Same rules and thresholds, same hash, whatever file or overrides gave them."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _known_keys(label: str, table: dict[str, Any], allowed: set[str],
                what: str) -> None:
    unknown = set(table) - set(allowed)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}; {what} "
                          f"has {', '.join(sorted(allowed))}")


def _checked_name(label: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{label}: `name` must be lower-case letters, digits and _ "
                          f"(got {name!r})")
    return name


def _param(where: str, value: Any) -> Param:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not a finite number")
        return value
    if isinstance(value, list):
        items = [_param(where, v) for v in value]
        if any(isinstance(v, list) for v in items) or len({type(v) for v in items}) > 1:
            raise ConfigError(f"{where}: a list parameter holds values of one type")
        return items
    raise ConfigError(f"{where}: a parameter is a number, a boolean, a string or a list "
                      f"of them, not {type(value).__name__}")


def parse_profile(text: str, where: str) -> Profile:
    """A profile from TOML text; `where` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"profile {where}: not valid TOML: {e}") from e
    _known_keys(f"profile {where}", data, PROFILE_KEYS, "a profile")
    name = _checked_name(f"profile {where}", data.get("name"))
    raw_params = data.get("params", {})
    if not isinstance(raw_params, dict):
        raise ConfigError(f"profile {where}: [params] must be a table of name = value")
    params: dict[str, Param] = {}
    for key, value in raw_params.items():
        if not NAME.match(key):
            raise ConfigError(f"profile {where}: parameter name {key!r} must be lower-case "
                              "letters, digits and _")
        params[key] = _param(f"profile {where}: parameter {key}", value)
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f"profile {where}: no rules (write them as [[rules]] tables)")
    rules = []
    for i, raw in enumerate(raw_rules, 1):
        label = f"profile {where}: rule {i}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{label}: must be a [[rules]] table")
        _known_keys(label, raw, RULE_KEYS, "a rule")
        rule_name = _checked_name(label, raw.get("name"))
        keep = raw.get("keep")
        if not isinstance(keep, str) or not keep.strip():
            raise ConfigError(f"{label} ({rule_name}): `keep` must be a SQL boolean "
                              "expression")
        if_null = raw.get("if_null")
        if if_null not in IF_NULL:
            raise ConfigError(f"{label} ({rule_name}): `if_null` must be \"keep\" or \"drop\" "
                              f"(what a NULL result, an unmeasured signal, means); got "
                              f"{if_null!r}")
        why = raw.get("why", "")
        if not isinstance(why, str):
            raise ConfigError(f"{label} ({rule_name}): `why` must be text")
        rules.append(Rule(rule_name, keep.strip(), if_null, why))
    names = [r.name for r in rules]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"profile {where}: rule names must be unique: {', '.join(twice)}")
    description, source = data.get("description", ""), data.get("source", "")
    if not isinstance(description, str) or not isinstance(source, str):
        raise ConfigError(f"profile {where}: `description` and `source` are text")
    return Profile(name, tuple(rules), params, description, source)


def parse_override(text: str) -> tuple[str, Param]:
    """`NAME=VALUE` from --set; VALUE is read as a TOML value (4.5, true, ["a"], "x"),
    and as a plain string when it is not one (--set flag=static)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not NAME.match(name):
        raise ConfigError(f"--set {text!r}: write NAME=VALUE, e.g. --set min_aesthetic=5")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return name, _param(f"--set {name}", parsed)


def _same_kind(default: Param, value: Param) -> bool:
    def kind(v: Scalar) -> str:
        return "bool" if isinstance(v, bool) else "number" if isinstance(v, int | float) \
            else "str"

    if isinstance(default, list) or isinstance(value, list):
        return isinstance(default, list) and isinstance(value, list) and (
            not default or not value or kind(default[0]) == kind(value[0]))
    return kind(default) == kind(value)


def with_overrides(profile: Profile, overrides: Sequence[tuple[str, Param]]) -> Profile:
    """The profile with some thresholds replaced; only its own parameters, each by a
    value of the same kind (a number for a number, ...), so a typo fails loudly."""
    params = dict(profile.params)
    for name, value in overrides:
        if name not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ConfigError(f"--set {name}: profile {profile.name} has no parameter "
                              f"{name!r} (its parameters: {known})")
        if not _same_kind(params[name], value):
            raise ConfigError(f"--set {name}={value!r}: expected a value like "
                              f"{params[name]!r}")
        params[name] = value
    return dataclasses.replace(profile, params=params)


# ------------------------------------------------------------------ expression checks
def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


# The parts of a SELECT that the rule text must not reach: a rule is an expression, so
# the statement `SELECT (<rule>)` has nothing but its one select-list entry.
_CLAUSES = ("where_clause", "having", "qualify", "sample")


def check_expression(con: duckdb.DuckDBPyConnection, rule: Rule) -> set[str]:
    """Raise ConfigError unless the rule is one SQL expression without subqueries; returns
    the named parameters it uses. Parsing only (no table is read)."""
    label = f"rule {rule.name}"
    sql = f"SELECT ({rule.keep})"
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise ConfigError(f"{label}: not a SQL expression: {_first_line(e)}") from e
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ConfigError(f"{label}: must be one boolean expression, not a statement")
    tree = json.loads(con.execute("SELECT json_serialize_sql($sql)", {"sql": sql}
                                  ).fetchone()[0])
    if tree.get("error"):
        raise ConfigError(f"{label}: not a SQL expression: {tree.get('error_message')}")
    node = tree["statements"][0]["node"]
    extra = (node.get("type") != "SELECT_NODE" or len(node["select_list"]) != 1
             or node["from_table"].get("type") != "EMPTY" or node["modifiers"]
             or node["group_expressions"] or node["cte_map"]["map"]
             or any(node.get(k) for k in _CLAUSES))
    if extra:
        raise ConfigError(f"{label}: must be one boolean expression over a clip's columns "
                          "(no FROM, WHERE, GROUP BY, ORDER, LIMIT or CTE)")
    params: set[str] = set()
    for part in _walk(node["select_list"]):
        cls = part.get("class")
        if cls == "SUBQUERY" or "subquery" in part:
            raise ConfigError(f"{label}: subqueries are not allowed in a rule (a rule reads "
                              "one clip's columns, no table or file)")
        if cls == "WINDOW":
            raise ConfigError(f"{label}: window functions are not allowed in a rule (a rule "
                              "judges one clip on its own)")
        if cls == "PARAMETER":
            name = part.get("identifier", "")
            if not NAME.match(name):
                raise ConfigError(f"{label}: parameters are named: $min_aesthetic, not "
                                  f"${name or '?'}")
            params.add(name)
    return params


def rule_columns(con: duckdb.DuckDBPyConnection, rule: Rule) -> set[str]:
    """The column names a (checked) rule reads, from its parsed expression: the signals
    whose absence makes the rule blind. Lambda parameters parse as column references
    too; the caller keeps only names that are real input columns."""
    tree = json.loads(con.sql("SELECT json_serialize_sql($sql)",
                              params={"sql": f"SELECT ({rule.keep})"}).fetchall()[0][0])
    return {part["column_names"][-1]
            for part in _walk(tree["statements"][0]["node"]["select_list"])
            if part.get("class") == "COLUMN_REF" and part.get("column_names")}


# What fills a signal that can be missing from a whole output, so that a rule blind for
# want of it can name the option to use. Columns not listed come from every run.
_CLIP = "CLIP in `vidcurate run` (leave out --no-clip; offline: --clip-pretrained FILE)"
_OCR = "OCR in `vidcurate run` (leave out --no-ocr)"
_ASR = "speech recognition in `vidcurate run` (leave out --no-asr; offline: --asr-model PATH)"
SIGNAL_SOURCES: dict[str, str] = {
    "aesthetic_score": "`vidcurate run --aesthetic-model sac+logos+ava1-l14-linearMSE "
                       "--clip-model ViT-L-14 --clip-pretrained openai` (the aesthetic head "
                       "is off by default)",
    "nsfw_score": "the Open-NSFW score of `vidcurate run` (pip install 'vidcurate[safety]'; "
                  "leave out --no-nsfw)",
    "clip_score": _CLIP, "clip_embedding": _CLIP, "clip_model": _CLIP,
    "ocr_text": _OCR, "ocr_lines": _OCR, "ocr_coverage_max": _OCR, "ocr_coverage_mean": _OCR,
    "transcript": _ASR, "transcript_segments": _ASR, "transcript_words": _ASR,
    "best_caption": "the caption teachers of `vidcurate run` (--teachers, e.g. "
                    "metadata,speech,ocr; speech and ocr need ASR and OCR on)",
    "is_duplicate": "`vidcurate dedup OUTPUT` (over clip embeddings: a run with CLIP)",
    **dict.fromkeys(("camera_motion", "camera_pan", "camera_tilt", "camera_zoom",
                     "subject_motion"),
                    "a `vidcurate run` of this version (camera motion is fitted to the "
                    "cut-detection decode's flow; outputs made before it have none)"),
    "balance_kept": "`vidcurate balance OUTPUT --vocabulary FILE --cap N`",
}


def measured_by(column: str) -> str:
    return SIGNAL_SOURCES.get(column, "`vidcurate run` (no run of this output filled it)")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_parameters(profile: Profile, used: Mapping[str, set[str]]) -> None:
    """Every parameter a rule names is defined, and every defined one is used (an unused
    threshold is almost always a typo in a rule)."""
    for rule in profile.rules:
        missing = ", ".join(f"${m}" for m in sorted(used[rule.name] - set(profile.params)))
        if missing:
            raise ConfigError(f"rule {rule.name}: parameter(s) {missing} not defined in "
                              f"[params] of profile {profile.name}")
    unused = sorted(set(profile.params) - set().union(*used.values()))
    if unused:
        raise ConfigError(f"profile {profile.name}: parameter(s) {', '.join(unused)} are not "
                          "used by any rule")


# ------------------------------------------------------------------ verdicts and funnel
def verdict_sql(input_sql: str, rules: Sequence[Rule]) -> str:
    """One query: per clip, the index of the first rule that drops it (NULL: kept) and the
    rules that reached it with a NULL result. A rule drops a clip when its expression is
    false, or NULL with if_null = "drop"."""
    values = ",\n".join(f"({r.keep}) AS r{i}" for i, r in enumerate(rules))
    first = " ".join(f"WHEN NOT coalesce(r{i}, {str(r.if_null == 'keep').upper()}) THEN {i}"
                     for i, r in enumerate(rules))
    unmeasured = ", ".join(
        f"CASE WHEN r{i} IS NULL AND coalesce(drop_index, {len(rules)}) >= {i} "
        f"THEN '{r.name}' END" for i, r in enumerate(rules))  # names are [a-z0-9_]
    return f"""
        WITH input AS ({input_sql}),
        judged AS (SELECT clip_id, video_id, run_id, {values} FROM input),
        verdict AS (SELECT *, CASE {first} END AS drop_index FROM judged)
        SELECT clip_id, video_id, run_id, drop_index,
               list_filter([{unmeasured}], lambda x: x IS NOT NULL) AS unmeasured
        FROM verdict ORDER BY clip_id"""


@dataclasses.dataclass(frozen=True)
class Step:
    rule: str
    reached: int  # clips that got to this rule (kept by every earlier one)
    dropped: int
    kept_after: int
    unmeasured: int  # of `reached`, clips whose expression was NULL
    if_null: str


def funnel(rules: Sequence[Rule], drop_index: Sequence[int | None],
           unmeasured: Sequence[Sequence[str]]) -> list[Step]:
    """Per rule in order: clips that reached it, how many it dropped, how many it left.
    Each clip is counted as dropped by one rule at most (the first), so the drops plus
    the last rule's kept_after add up to the clip count."""
    drops = [0] * len(rules)
    for index in drop_index:
        if index is not None:
            drops[index] += 1
    nulls = dict.fromkeys((r.name for r in rules), 0)
    for names in unmeasured:
        for name in names:
            nulls[name] += 1
    steps, remaining = [], len(drop_index)
    for rule, dropped in zip(rules, drops, strict=True):
        steps.append(Step(rule.name, remaining, dropped, remaining - dropped,
                          nulls[rule.name], rule.if_null))
        remaining -= dropped
    return steps
