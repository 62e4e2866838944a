"""The `vidcurate` command: run | query | stats."""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

USAGE = """vidcurate <command> ...

  run    --input IN --output OUT [options] [Beam flags]   curate videos into tables
  query  OUTPUT "SQL" [--format table|csv|json|parquet]   SQL over the tables (DuckDB)
  reselect OUTPUT --teachers a,b [--format ...]         best caption among some teachers
  stats  OUTPUT                                          summary of an output
  report OUTPUT [--out DIR]                              static HTML report (offline)
  dedup  OUTPUT [--threshold 0.95]                       mark near-duplicate clips (CLIP)
  balance OUTPUT --vocabulary FILE --cap T               MetaCLIP-style balanced subset
  curate OUTPUT [--profile NAME|FILE] [--set NAME=VALUE]  quality rules -> clips_curated
  curate OUTPUT --calibrate                             fit the rules' thresholds to labels
  review OUTPUT [--port N]                              label clips in the browser (local)
  label  OUTPUT --from FILE.csv                         import labels (clip_id,label,reason)
  export OUTPUT DEST [--shard-clips N|--shard-bytes B]   WebDataset tar shards
  publish OUTPUT DEST [--view V] [--media copy|link|none] clean dataset folder + card
  search OUTPUT "TEXT" [-k 20] [--image FILE]            find clips by what they show
  demo   [--output DIR] [run options]                     run on bundled sample footage

`vidcurate run --help` lists every option; any other Beam flag (--runner, ...) passes through.
"""


def run_parser() -> argparse.ArgumentParser:
    # Beam parses a run's flags (PipelineOptions); this parser is for --help and the docs.
    from vidcurate.pipeline.options import CurationOptions

    parser = argparse.ArgumentParser(
        prog="vidcurate run",
        description="Curate videos into Parquet tables. Unknown flags go to Apache Beam "
        "(e.g. --runner DataflowRunner, --direct_num_workers 2).")
    CurationOptions._add_argparse_args(parser)
    return parser


def _run(argv: list[str]) -> int:
    from vidcurate.pipeline.options import ConfigError
    from vidcurate.pipeline.run import run
    from vidcurate.pipeline.runs import STAGES

    if any(a in ("-h", "--help") for a in argv):
        parser = run_parser()
        # Defaults in --help only: the docs' CLI reference has a column of its own.
        parser.formatter_class = _DefaultsFormatter
        parser.print_help()
        return 0
    try:
        outcome = run(argv, exit_on_interrupt=True)
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
                     f"{lat['count'] * lat['mean'] / 1000:.1f}" if lat else "",
                     f"{lat['mean']:.0f}" if lat else "", f"{lat['max']:.0f}" if lat else ""])
    took = (outcome.finished_at - outcome.started_at).total_seconds()
    print(f"\nrun {cfg.run_id} finished in {took:.1f} s; output: {cfg.output}")
    _print_rows(["stage", "processed", "skipped", "failed", "busy s", "mean ms", "max ms"],
                rows)
    if len(outcome.run_ids) > 1:
        print(f"made in {len(outcome.run_ids)} batches (--batch-videos "
              f"{cfg.batch_videos}), committed as runs {outcome.run_ids[0]} … "
              f"{outcome.run_ids[-1]}")
    _print_run_summary(cfg.output, outcome.run_ids)
    code = _print_listing_notes(outcome)
    from vidcurate.pipeline.demo import command_name

    print(f"\nexplore: {command_name()} stats {cfg.output}")
    return code


# Where to look when the listing passed files over, by why.
PASSED_OVER_HINTS = {"symlink": "--no-follow-symlinks", "hidden": "hidden files and folders",
                     "output": "inside a vidcurate output"}


def _print_listing_notes(outcome: Any) -> int:
    """What the listing passed over, and whether any input was usable at all: the run's
    exit code (1 when nothing was, even though the run committed its error rows)."""
    from vidcurate.pipeline.query import connect

    cfg = outcome.config
    counters = outcome.stages.get("manifest")
    counters = counters.counters if counters else {}
    passed = {k.split(":", 1)[1]: v for k, v in counters.items()
              if k.startswith("passed_over:") and v}
    if passed:
        n = sum(passed.values())
        kinds = ", ".join(f"{v} {k}" if len(passed) > 1 else k
                          for k, v in sorted(passed.items(), key=lambda kv: (-kv[1], kv[0])))
        hints = sorted({PASSED_OVER_HINTS.get(k, "see --video-extensions") for k in passed})
        print(f"\n{_plural(n, 'file')} passed over ({kinds}): {'; '.join(hints)}")
    inputs, failed = connect(cfg.output).execute(
        "SELECT count(*), count(*) FILTER (status = 'failed') FROM videos_all "
        "WHERE list_contains($runs, run_id)", {"runs": outcome.run_ids}).fetchone()
    done = outcome.counter("resume", "skipped")
    if done:
        print(f"\ninputs: {done} already done, {inputs} new")
    unusable = outcome.counter("manifest", "failed")
    if inputs == 0 and not done:
        why = (f"{_plural(unusable, 'unusable manifest row')} (see the errors table)"
               if unusable else "it lists no videos")
        print(f"vidcurate: no input was usable in {cfg.input}: {why}", file=sys.stderr)
        return 1
    if inputs and failed == inputs:
        print(f"vidcurate: no input was usable: all {_plural(inputs, 'video')} failed "
              "(see the top error reasons above)", file=sys.stderr)
        return 1
    return 0


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless the help speaks of its
    default already, or there is none to show (None, False, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # By identity: a default of 0 or 0.0 is worth showing (0 == False).
        if (default is None or default is False or default in ("", [], argparse.SUPPRESS)
                or "default" in text.lower() or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


RUN_SUMMARY = {
    "inputs": """
        SELECT count(*) AS inputs, count(*) FILTER (status = 'ok') AS ok,
               count(*) FILTER (status = 'skipped') AS skipped,
               count(*) FILTER (status = 'failed') AS failed,
               round(coalesce(sum(duration_s), 0) / 3600, 3) AS video_hours
        FROM videos_all WHERE list_contains($runs, run_id)""",
    "clips": """
        SELECT count(*) AS clips, round(coalesce(sum(duration_s), 0) / 3600, 3) AS clip_hours,
               count(*) FILTER (best_caption IS NOT NULL) AS captioned
        FROM clips_all WHERE list_contains($runs, run_id)""",
    # One example per reason: its source in full (which file failed), and its message
    # with that source written as <source> (the message is what gets shortened).
    "top error reasons": """
        WITH e AS (
            SELECT stage, error_type, coalesce(source_uri, '') AS source, message,
                   count(*) OVER (PARTITION BY stage, error_type) AS n,
                   row_number() OVER (PARTITION BY stage, error_type
                                      ORDER BY time, source_uri) AS k
            FROM errors_all WHERE list_contains($runs, run_id))
        SELECT stage, error_type, n, source AS example,
               CASE WHEN source = '' THEN message
                    ELSE replace(message, source, '<source>') END AS message
        FROM e WHERE k = 1 ORDER BY n DESC, stage, error_type LIMIT 5""",
}


def _print_run_summary(output: str, run_ids: list[str]) -> None:
    """What this run made, from its own rows (of every batch, when made in batches)."""
    from vidcurate.pipeline.query import connect

    con = connect(output)
    for title, sql in RUN_SUMMARY.items():
        rel = con.execute(sql, {"runs": run_ids})
        rows = rel.fetchall()
        if title == "top error reasons" and not rows:
            print("\nno errors")
            continue
        print(f"\n{title}")
        columns = [d[0] for d in rel.description]
        _print_rows(columns, [[v if c == "example" else _short(v)  # the path in full
                               for c, v in zip(columns, r, strict=True)] for r in rows])


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


def query_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate query",
        description="Run one read-only SQL query (DuckDB) over the views of an output.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("sql", help="SQL over the views videos, clips, captions, errors, runs "
                        "(and the passes' views)")
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                        help="table: printed; csv, json (one object per line) and parquet "
                        "are written to --out (csv and json print without it)")
    parser.add_argument("--out", help="file to write (required for --format parquet)")
    parser.add_argument("--max-rows", type=int, default=40, help="rows shown as a table")
    return parser


def _query(argv: list[str]) -> int:
    from vidcurate.pipeline.query import NotReadOnly, OutputNotFound, query

    args = query_parser().parse_args(argv)
    if args.format == "table" and args.out:
        print("vidcurate: --out needs --format csv, json or parquet", file=sys.stderr)
        return 2
    import duckdb

    if args.format == "parquet" and not args.out:
        print("vidcurate: --format parquet needs --out FILE", file=sys.stderr)
        return 2
    try:
        rel = query(args.output, args.sql.strip().rstrip(";"))
        if rel is not None:
            _write_result(rel, args)
    except OutputNotFound as e:
        print(f"vidcurate: {e}", file=sys.stderr)
        return 2
    except duckdb.PermissionException as e:
        # The sandbox said no (a file outside the output, duckdb_extensions(), ...): at
        # bind time or, for some functions (sniff_csv), only once the query runs.
        print(f"vidcurate: query refused: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except (duckdb.Error, NotReadOnly) as e:
        print(f"vidcurate: query failed: {e}", file=sys.stderr)
        return 1
    return 0


def _write_result(rel: Any, args: argparse.Namespace) -> None:
    """Run the query and write its rows. DuckDB runs a query lazily, so its errors come
    from here too; the rows are fetched before --out is opened, so a failed query leaves
    no half-written file."""
    if args.format == "parquet":
        import pyarrow.parquet as pq

        table = rel.to_arrow_table()
        pq.write_table(table, args.out)
        print(f"wrote {args.out}")
        return
    if args.format == "table":
        rel.show(max_rows=args.max_rows, max_width=200)
        return
    columns, rows = rel.columns, rel.fetchall()
    with contextlib.ExitStack() as stack:
        out = (stack.enter_context(open(args.out, "w", newline="", encoding="utf-8"))
               if args.out else sys.stdout)
        if args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(columns)
            for row in rows:
                # Lists, structs and fixed-size arrays (tuples, e.g. FLOAT[512]) as JSON.
                writer.writerow([json.dumps(_jsonable(v)) if isinstance(v, list | tuple | dict)
                                 else v for v in row])
        else:
            for row in rows:
                out.write(json.dumps(_jsonable(dict(zip(columns, row, strict=True))),
                                     ensure_ascii=False) + "\n")


def reselect_parser() -> argparse.ArgumentParser:
    from vidcurate.pipeline.options import DEFAULT_TEACHER_PRIORITY

    parser = argparse.ArgumentParser(
        prog="vidcurate reselect",
        description="Pick the best caption per clip among some teachers' candidates, from "
        "the stored CLIP scores: no model runs. Prints (or writes) one row per clip. "
        "The options of `vidcurate query` (--format, --out, --max-rows) apply too.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--teachers", required=True, help="comma-separated teacher names")
    parser.add_argument("--teacher-priority", default=DEFAULT_TEACHER_PRIORITY,
                        help="tie-breaks, and the order when candidates have no CLIP score")
    return parser


def _reselect(argv: list[str]) -> int:
    from vidcurate.pipeline.query import reselect_sql

    args, rest = reselect_parser().parse_known_args(argv)
    teachers = [t.strip() for t in args.teachers.split(",") if t.strip()]
    priority = [t.strip() for t in args.teacher_priority.split(",") if t.strip()]
    if not teachers:
        print("vidcurate: --teachers is empty", file=sys.stderr)
        return 2
    return _query([args.output, reselect_sql(teachers, priority), *rest])


def dedup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate dedup",
        description="Mark clips whose CLIP embedding is a near-duplicate of an earlier "
        "clip (within and across videos). Writes <output>/duplicates/; the view "
        "clips_unique leaves them out. Other flags go to Beam (--runner ...).")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--threshold", type=float, default=0.95,
                        help="cosine similarity at or above which a clip is a duplicate")
    parser.add_argument("--bands", type=int, default=32, help="LSH bands")
    parser.add_argument("--bits", type=int, default=12, help="hyperplanes per band")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random hyperplanes (the same seed, the same pairs)")
    return parser


def _dedup(argv: list[str]) -> int:
    from vidcurate.pipeline.commands import dedup
    from vidcurate.transforms.dedup import DedupConfig, recall

    args, beam_args = dedup_parser().parse_known_args(argv)
    cfg = DedupConfig(threshold=args.threshold, bands=args.bands, bits=args.bits,
                      seed=args.seed)
    summary = dedup(args.output, cfg, beam_args)
    print(f"dedup {summary['pass_id']}: {summary['duplicates']} of {summary['clips']} clips "
          f"are near-duplicates (cosine >= {cfg.threshold}); a pair at that similarity is "
          f"found with probability {recall(cfg.threshold, cfg):.4f}. "
          f"{summary['skipped_without_embedding']} clips have no embedding (not compared: "
          "curate's is_duplicate stays NULL for them).")
    print(f"unique clips: vidcurate query {args.output} \"SELECT * FROM clips_unique\"")
    return 0


def balance_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate balance",
        description="MetaCLIP-style balancing: cap every vocabulary entry at --cap clips "
        "(deterministic sampling). Writes <output>/balance/ and balance_counts/; the view "
        "clips_balanced holds the kept clips.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--vocabulary", required=True, help="one entry per line")
    parser.add_argument("--cap", type=int, required=True, help="clips kept per entry, t")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the deterministic draw (a hash of seed, clip id, entry)")
    parser.add_argument("--keep-unmatched", action="store_true",
                        help="keep clips that match no entry (MetaCLIP drops them)")
    return parser


def _balance(argv: list[str]) -> int:
    from vidcurate.pipeline.commands import balance_output

    args = balance_parser().parse_args(argv)
    summary = balance_output(args.output, args.vocabulary, args.cap, args.seed,
                             args.keep_unmatched)
    print(f"balance {summary['pass_id']}: kept {summary['kept']} of {summary['clips']} clips "
          f"({summary['matched']} matched one of {summary['entries']} entries).")
    print(f"per entry: vidcurate query {args.output} \"SELECT * FROM balance_counts ORDER BY "
          "count_before DESC\"")
    return 0


def curate_parser() -> argparse.ArgumentParser:
    from vidcurate.pipeline.curate import shipped_profiles

    parser = argparse.ArgumentParser(
        prog="vidcurate curate",
        description="Judge every clip with a profile of named SQL rules (no decoding). "
        "Writes <output>/curation/ (each clip's verdict and the first rule that dropped "
        "it); the view clips_curated holds the kept clips. A rerun replaces the "
        "previous curation.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--profile", default="default",
                        help=f"a shipped profile ({', '.join(shipped_profiles())}) or a "
                        "TOML file (default: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="override one of the profile's [params], e.g. "
                        "--set min_aesthetic=5 (repeatable)")
    parser.add_argument("--calibrate", action="store_true",
                        help="instead of curating, fit each rule's threshold to the labels "
                        "(`vidcurate review`, `vidcurate label`): precision and recall now, "
                        "the threshold with the highest F1 of drop, keep-rate curves, and a "
                        "fitted profile under <output>/calibration/")
    parser.add_argument("--min-labels", type=int, default=5, metavar="N",
                        help="with --calibrate: fit a rule only with at least N labelled "
                        "drop and N labelled keep clips that speak about it (default: 5)")
    return parser


def _curate(argv: list[str]) -> int:
    from vidcurate.pipeline.curate import curate, describe
    from vidcurate.transforms.curate import parse_override

    args = curate_parser().parse_args(argv)
    overrides = [parse_override(o) for o in args.overrides]
    if args.calibrate:
        from vidcurate.pipeline.calibrate import calibrate
        from vidcurate.pipeline.calibrate import describe as describe_calibration

        fitted = calibrate(args.output, args.profile, overrides, args.min_labels)
        print("\n".join(describe_calibration(fitted)))
        if fitted.fitted_profile:
            print(f"\nApply it: vidcurate curate {args.output} --profile "
                  f"{fitted.fitted_profile}; the report draws the keep-rate curves")
        return 0
    result = curate(args.output, args.profile, overrides)
    print("\n".join(describe(result)))
    print(f"\nCurated set: vidcurate query {args.output} \"SELECT * FROM clips_curated\"; "
          "why each clip went: \"SELECT * FROM curation\"")
    return 0


def review_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate review",
        description="Label clips in the browser: a local web app (127.0.0.1 only, a "
        "random token in its URL) showing the clips as a grid of playing thumbnails with "
        "their flags, signals and caption, filters, and keyboard labels (keep / drop, "
        "with a reason) written to the labels table as you go. Ctrl-C stops it.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--who", default=None,
                        help="the reviewer's name stored with each label (default: the user)")
    parser.add_argument("--profile", default="default",
                        help="the profile whose rule names are offered as reasons "
                        "(default: default)")
    parser.add_argument("--max-clips", type=int, default=5000, metavar="N",
                        help="show at most N clips (default: 5000)")
    parser.add_argument("--open", action="store_true",
                        help="open the page in the default browser")
    return parser


def _review(argv: list[str]) -> int:
    from vidcurate.pipeline.review import serve

    args = review_parser().parse_args(argv)
    return serve(args.output, port=args.port, who=args.who, profile=args.profile,
                 max_clips=args.max_clips, open_browser=args.open)


def label_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate label",
        description="Import labels made elsewhere into the labels table: a CSV file with "
        "a header naming clip_id, label (keep or drop) and optionally reason. Checked "
        "whole before anything is written: unknown clip ids are refused with their count.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--from", dest="source", required=True, metavar="FILE.csv",
                        help="the CSV file of labels")
    parser.add_argument("--who", default=None,
                        help="who labelled them (default: the user running the command)")
    return parser


def _label(argv: list[str]) -> int:
    from vidcurate.pipeline.labels import default_who, read_csv, write_labels

    args = label_parser().parse_args(argv)
    labels = read_csv(args.source)
    written = write_labels(args.output, labels, args.who or default_who(), "import")
    print(f"imported {_plural(written, 'label')} into {args.output}/labels; latest per clip: "
          f"vidcurate query {args.output} \"SELECT * FROM labels\"")
    return 0


def export_parser() -> argparse.ArgumentParser:
    from vidcurate.pipeline.commands import EXPORT_VIEWS

    parser = argparse.ArgumentParser(
        prog="vidcurate export",
        description="Write the clips as WebDataset tar shards (clip file, first keyframe, "
        "caption .txt, everything else .json). For Hugging Face datasets, write a clean "
        "folder with `vidcurate publish` and load that.")
    parser.add_argument("output", help="the --output folder of a run, or a published folder")
    parser.add_argument("dest", help="folder the shards are written to")
    parser.add_argument("--format", choices=("webdataset",), default="webdataset",
                        help="shard format")
    parser.add_argument("--shard-clips", type=int, default=1000, help="clips per shard")
    parser.add_argument("--shard-bytes", type=float, default=1 << 30,
                        help="bytes per shard (a shard closes at whichever comes first)")
    parser.add_argument("--view", default="clips",
                        choices=EXPORT_VIEWS,
                        help="which clips: every current clip, or a pass's subset")
    parser.add_argument("--no-keyframes", action="store_true",
                        help="leave the first keyframe (.jpg) out of each sample")
    return parser


def _export(argv: list[str]) -> int:
    from vidcurate.pipeline.commands import ExportConfig, export_webdataset
    from vidcurate.pipeline.output_files import describe

    args = export_parser().parse_args(argv)
    cfg = ExportConfig(dest=args.dest, shard_clips=args.shard_clips,
                       shard_bytes=int(args.shard_bytes), view=args.view,
                       keyframes=not args.no_keyframes)
    summary = export_webdataset(args.output, cfg)
    shards = len(summary["shards"])
    print(f"exported {_plural(summary['clips'], 'clip')} into {_plural(shards, 'shard')} "
          f"in {args.dest}")
    if summary["skipped"]:
        print(f"vidcurate: skipped {_plural(summary['skipped'], 'clip')} whose files were "
              f"refused; {describe(summary['refused'])}", file=sys.stderr)
    print(f"read it: wds.WebDataset({summary['pattern']!r})")
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def publish_parser() -> argparse.ArgumentParser:
    from vidcurate.pipeline.commands import EXPORT_VIEWS
    from vidcurate.pipeline.publish import MEDIA_MODES

    parser = argparse.ArgumentParser(
        prog="vidcurate publish",
        description="Write a clean, self-contained copy of the current rows of one view: "
        "the clips, their captions and videos (and the runs that made them) as Parquet, "
        "the clip files and keyframes they reference with paths relative to DEST, and a "
        "README.md dataset card with the Hugging Face header and the provenance. "
        "datasets.load_dataset(DEST), DuckDB's read_parquet('DEST/clips/*.parquet') and "
        "`vidcurate export DEST` then see exactly these rows. The output is only read.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("dest", help="the folder to write; must be new or empty")
    parser.add_argument("--view", choices=EXPORT_VIEWS, default="clips",
                        help="which clips: every current clip (clips), or those a dedup, "
                        "balance or curate pass kept (default: clips)")
    parser.add_argument("--media", choices=MEDIA_MODES, default="copy",
                        help="copy the clip files and keyframes into DEST, link them "
                        "(symbolic links into the output: DEST then needs the output), or "
                        "publish the tables only (default: copy)")
    parser.add_argument("--redact-text", action="store_true",
                        help="mask e-mail addresses, phone numbers, URLs, payment-card "
                        "numbers and IBANs in every published text field (captions, "
                        "transcripts, on-screen text, titles, descriptions) as [EMAIL], "
                        "[PHONE], ...; the count goes into the dataset card")
    parser.add_argument("--allow-unknown-license", action="store_true",
                        help="publish clips whose video states no licence too (refused "
                        "otherwise, exit 2); the card lists them as unknown")
    return parser


def _publish(argv: list[str]) -> int:
    from vidcurate.pipeline.publish import publish

    args = publish_parser().parse_args(argv)
    summary = publish(args.output, args.dest, args.view, args.media,
                      redact_text=args.redact_text,
                      allow_unknown_license=args.allow_unknown_license)
    print(f"published {summary['clips']} clips, {summary['captions']} captions and "
          f"{summary['videos']} videos of view {args.view} into {summary['dest']}; "
          f"{summary['media_files']} media files ({summary['media_bytes'] / 1e6:.1f} MB, "
          f"{args.media})")
    if summary["unlicensed_clips"]:
        print(f"vidcurate: {summary['unlicensed_clips']} published clips come from videos "
              "without a licence (--allow-unknown-license); the card lists them as unknown",
              file=sys.stderr)
    if summary["redacted"] is not None:
        print(f"--redact-text: {sum(summary['redacted'].values())} personal data values "
              "masked (counts by kind in the dataset card)")
    if summary["missing_media"]:
        print(f"vidcurate: {summary['missing_media']} referenced media files were not "
              "found inside the output; their paths are null in the published tables",
              file=sys.stderr)
    print(f"load it: datasets.load_dataset({summary['dest']!r})")
    return 0


def search_parser() -> argparse.ArgumentParser:
    from vidcurate.pipeline.commands import EXPORT_VIEWS

    parser = argparse.ArgumentParser(
        prog="vidcurate search",
        description="Find clips by what they show: embed a text (or an example image) with "
        "the CLIP model that embedded the clips (the one recorded in the runs table, "
        "resolved as `run` resolves it, local weights included) and rank the clips by "
        "cosine similarity with clips.clip_embedding. Refuses (exit 2) when the clips "
        "have no embeddings or the model cannot be loaded here.")
    parser.add_argument("output", help="the --output folder of a run, or a published folder")
    parser.add_argument("text", nargs="?", help='what to look for, e.g. "a cyclist crossing '
                        'a street" (or give --image)')
    parser.add_argument("--image", metavar="FILE",
                        help="search by an example image instead of a text")
    parser.add_argument("-k", type=int, default=20, help="how many clips (default: 20)")
    parser.add_argument("--view", choices=EXPORT_VIEWS, default="clips",
                        help="which clips to search (default: clips, every current clip)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="a table for reading, JSON lines or CSV for programs")
    parser.add_argument("--clip-pretrained", metavar="PATH",
                        help="the run's CLIP checkpoint, where it lies on this machine when "
                        "the recorded path does not (checked against the recorded sha256)")
    parser.add_argument("--clip-model-config", metavar="JSON",
                        help="the run's --clip-model-config, where it lies on this machine")
    return parser


def _search(argv: list[str]) -> int:
    from vidcurate.pipeline.output_files import describe
    from vidcurate.pipeline.search import search

    args = search_parser().parse_args(argv)
    hits = search(args.output, args.text, args.image, args.k, args.view,
                  args.clip_pretrained, args.clip_model_config)
    columns = ["clip_id", "start_s", "end_s", "score", "caption", "keyframe", "video_id",
               "media_uri"]
    if args.format == "json":
        for hit in hits:
            print(json.dumps({c: _jsonable(hit[c]) for c in columns}, ensure_ascii=False))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([hit[c] for c in columns] for hit in hits)
    else:
        _print_rows(["clip_id", "span s", "score", "caption", "keyframe"], [
            [h["clip_id"], f"{h['start_s']:.2f}-{h['end_s']:.2f}", f"{h['score']:.4f}",
             _short(h["caption"] or "", 60), h["keyframe"] or ""] for h in hits])
    refused = [r for h in hits for r in h["refused"]]
    if refused:  # their paths are left empty above
        print(f"vidcurate: {describe(refused)}", file=sys.stderr)
    return 0


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate report",
        description="Write a static HTML report (plots, dataset card, clip gallery) that "
        "opens offline from disk.")
    parser.add_argument("output", help="the --output folder of a run")
    parser.add_argument("--out", help="report folder (default: OUTPUT/report)")
    parser.add_argument("--max-clips", type=int, default=500,
                        help="clips in the gallery, best CLIP score first")
    return parser


def _report(argv: list[str]) -> int:
    from vidcurate.pipeline.output_files import describe
    from vidcurate.pipeline.query import require_output
    from vidcurate.pipeline.report import build_report

    args = report_parser().parse_args(argv)
    require_output(args.output)  # the report is written into it: refuse a non-output
    summary = build_report(args.output, args.out, args.max_clips)
    if summary["refused"]:
        print(f"vidcurate: {describe(summary['refused'])}", file=sys.stderr)
    print(f"report: {summary['index']}  (open it in a browser; no server needed)")
    return 0


def stats_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate stats",
        description="Summarise an output: inputs, ok / skipped / failed, clips, hours, clip "
        "length percentiles, teachers, top errors.")
    parser.add_argument("output", help="the --output folder of a run")
    return parser


def _stats(argv: list[str]) -> int:
    from vidcurate.pipeline.query import STATS_QUERIES, OutputNotFound, connect, require_output

    args = stats_parser().parse_args(argv)
    try:
        require_output(args.output)  # an input or empty folder is not an output: say so
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


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcurate demo",
        description="Run the pipeline on the bundled sample footage, print what it made, "
        "curate it and write the report. Other flags are options of `vidcurate run`.")
    parser.add_argument("--output", default="demo-output", help="output folder")
    parser.add_argument("--media", help="folder with the extracted opencv-doc samples "
                        "(make demo passes build/media)")
    return parser


def _demo(argv: list[str]) -> int:
    from vidcurate.pipeline.demo import demo
    from vidcurate.pipeline.options import ConfigError

    args, rest = demo_parser().parse_known_args(argv)
    try:
        return demo(args.output, rest, args.media)
    except ConfigError as e:
        print(f"vidcurate: {e}", file=sys.stderr)
        return 2


COMMANDS = {"run": _run, "query": _query, "reselect": _reselect, "stats": _stats,
            "report": _report, "dedup": _dedup, "balance": _balance, "curate": _curate,
            "export": _export, "publish": _publish, "search": _search,
            "demo": _demo, "review": _review, "label": _label}

# Each command's argparse parser, built without running anything: the commands parse
# with them, and the documentation's CLI reference is generated from them (docs/hooks.py),
# so a command missing here is missing from the docs (tests/e2e/test_docs.py checks).
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "run": run_parser, "query": query_parser, "reselect": reselect_parser,
    "stats": stats_parser, "report": report_parser, "dedup": dedup_parser,
    "balance": balance_parser, "curate": curate_parser, "export": export_parser,
    "publish": publish_parser, "search": search_parser, "demo": demo_parser,
    "review": review_parser, "label": label_parser}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Importing Beam configures the root logger; take it back for our own format.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        near = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        print(f"vidcurate: unknown command {argv[0]!r}{hint}\n\n{USAGE}", file=sys.stderr)
        return 2
    from vidcurate.pipeline.options import ConfigError
    from vidcurate.pipeline.query import OutputNotFound

    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ConfigError, OutputNotFound) as e:  # the user's input, not a bug: no traceback
        print(f"vidcurate: {e}", file=sys.stderr)
        return 2
    except BaseException as e:
        from vidcurate.pipeline.run import Interrupted, is_interrupt

        if not is_interrupt(e):
            raise
        # Ctrl-C: one line, and the shell's code for SIGINT (128 + 2), not a traceback.
        print(f"vidcurate: {e if isinstance(e, Interrupted) else 'interrupted'}",
              file=sys.stderr)
        return 130


def _quiet(record: logging.LogRecord) -> bool:
    """Log lines that are not our users' concern: Beam's warnings about optional GCP
    client libraries on import, RunInference's about memory metrics it cannot read here,
    its note that no --runner was given (the DirectRunner is the documented default), and
    its traceback of a Ctrl-C (the launcher says it was interrupted, in one line)."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[0] and issubclass(record.exc_info[0],
                                                            KeyboardInterrupt):
        return False
    return not (message.startswith(("KeyboardInterrupt", "Missing pipeline option (runner)"))
                or "apitools not found" in message
                or "Resource module is not available" in message)


if __name__ == "__main__":
    sys.exit(main())
