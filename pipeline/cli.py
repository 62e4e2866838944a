"""The `vidcurate` command: run | query | stats."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

USAGE = """vidcurate <command> ...

  run    --input IN --output OUT [options] [Beam flags]   curate videos into tables
  query  OUTPUT "SQL" [--format table|csv|json|parquet]   SQL over the tables (DuckDB)
  reselect OUTPUT --teachers a,b [--format ...]         best caption among some teachers
  stats  OUTPUT                                          summary of an output
  demo   [--output DIR] [run options]                     run on bundled sample footage

`vidcurate run --help` lists every option; any other Beam flag (--runner, ...) passes through.
"""


def _run(argv: list[str]) -> int:
    from pipeline.options import ConfigError, CurationOptions
    from pipeline.run import STAGES, run

    if any(a in ("-h", "--help") for a in argv):
        parser = argparse.ArgumentParser(
            prog="vidcurate run",
            description="Curate videos into Parquet tables. Unknown flags go to Apache Beam "
            "(e.g. --runner DataflowRunner, --direct_num_workers 2).")
        CurationOptions._add_argparse_args(parser)
        parser.print_help()
        return 0
    try:
        outcome = run(argv)
    except ConfigError as e:
        print(f"vidcurate: configuration error: {e}", file=sys.stderr)
        return 2
    cfg = outcome.config
    rows = []
    for stage in STAGES:
        st = outcome.stages.get(stage)
        if st is None:
            continue
        c, lat = st.counters, st.latency_ms
        rows.append([stage, c.get("processed", 0), c.get("skipped", 0), c.get("failed", 0),
                     f"{lat['mean']:.0f}" if lat else "", f"{lat['max']:.0f}" if lat else ""])
    took = (outcome.finished_at - outcome.started_at).total_seconds()
    print(f"\nrun {cfg.run_id} finished in {took:.1f} s; output: {cfg.output}")
    _print_rows(["stage", "processed", "skipped", "failed", "mean ms", "max ms"], rows)
    from pipeline.demo import command_name

    print(f"\nexplore: {command_name()} stats {cfg.output}")
    return 0


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in header]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, r in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _query(argv: list[str]) -> int:
    from pipeline.query import NotReadOnly, OutputNotFound, query

    parser = argparse.ArgumentParser(prog="vidcurate query")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("sql", help='SQL over the views videos, clips, captions, errors, runs')
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    parser.add_argument("--out", help="file to write (required for --format parquet)")
    parser.add_argument("--max-rows", type=int, default=40, help="rows shown as a table")
    args = parser.parse_args(argv)
    if args.format == "table" and args.out:
        print("vidcurate: --out needs --format csv, json or parquet", file=sys.stderr)
        return 2
    import duckdb

    try:
        rel = query(args.output, args.sql.strip().rstrip(";"))
    except OutputNotFound as e:
        print(f"vidcurate: {e}", file=sys.stderr)
        return 2
    except (duckdb.Error, NotReadOnly) as e:
        print(f"vidcurate: query failed: {e}", file=sys.stderr)
        return 1
    if rel is None:
        return 0
    if args.format == "parquet":
        if not args.out:
            print("vidcurate: --format parquet needs --out FILE", file=sys.stderr)
            return 2
        import pyarrow.parquet as pq

        pq.write_table(rel.to_arrow_table(), args.out)
        print(f"wrote {args.out}")
        return 0
    with contextlib.ExitStack() as stack:
        out = (stack.enter_context(open(args.out, "w", newline="", encoding="utf-8"))
               if args.out else sys.stdout)
        if args.format == "table":
            rel.show(max_rows=args.max_rows, max_width=200)
        elif args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(rel.columns)
            for row in rel.fetchall():
                writer.writerow([json.dumps(_jsonable(v)) if isinstance(v, list | dict) else v
                                 for v in row])
        else:
            for row in rel.fetchall():
                out.write(json.dumps(_jsonable(dict(zip(rel.columns, row, strict=True))),
                                     ensure_ascii=False) + "\n")
    return 0


def _reselect(argv: list[str]) -> int:
    from pipeline.options import DEFAULT_TEACHER_PRIORITY
    from pipeline.query import reselect_sql

    parser = argparse.ArgumentParser(
        prog="vidcurate reselect",
        description="Pick the best caption per clip among some teachers' candidates, from "
        "the stored CLIP scores: no model runs. Prints (or writes) one row per clip.")
    parser.add_argument("output")
    parser.add_argument("--teachers", required=True, help="comma-separated teacher names")
    parser.add_argument("--teacher-priority", default=DEFAULT_TEACHER_PRIORITY,
                        help="tie-breaks, and the order when candidates have no CLIP score")
    args, rest = parser.parse_known_args(argv)
    teachers = [t.strip() for t in args.teachers.split(",") if t.strip()]
    priority = [t.strip() for t in args.teacher_priority.split(",") if t.strip()]
    if not teachers:
        print("vidcurate: --teachers is empty", file=sys.stderr)
        return 2
    return _query([args.output, reselect_sql(teachers, priority), *rest])


def _stats(argv: list[str]) -> int:
    from pipeline.query import STATS_QUERIES, OutputNotFound, connect

    parser = argparse.ArgumentParser(prog="vidcurate stats")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    try:
        con = connect(args.output)
    except OutputNotFound as e:
        print(f"vidcurate: {e}", file=sys.stderr)
        return 2
    for title, sql in STATS_QUERIES.items():
        rel = con.sql(sql)
        print(f"\n{title}")
        _print_rows(rel.columns, [[_short(v) for v in r] for r in rel.fetchall()])
    return 0


def _short(value: Any, limit: int = 90) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def _demo(argv: list[str]) -> int:
    from pipeline.demo import demo
    from pipeline.options import ConfigError

    parser = argparse.ArgumentParser(prog="vidcurate demo")
    parser.add_argument("--output", default="demo-output")
    parser.add_argument("--media", help="folder with the extracted opencv-doc samples "
                        "(make demo passes build/media)")
    args, rest = parser.parse_known_args(argv)
    try:
        return demo(args.output, rest, args.media)
    except ConfigError as e:
        print(f"vidcurate: {e}", file=sys.stderr)
        return 2


COMMANDS = {"run": _run, "query": _query, "reselect": _reselect, "stats": _stats,
            "demo": _demo}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Importing Beam configures the root logger; take it back for our own format.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        # Beam warns about optional GCP client libraries on import, and RunInference about
        # memory metrics it cannot read here: not our users' concern.
        handler.addFilter(lambda r: "apitools not found" not in r.getMessage()
                          and "Resource module is not available" not in r.getMessage())
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
