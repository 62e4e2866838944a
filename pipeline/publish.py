"""`vidcurate publish`: a clean, self-contained snapshot of an output's current rows.

An output folder holds every run's shards, committed or not, superseded or not; only
the DuckDB views (pipeline/query.py) know which rows are current. publish writes the
rows of one view (the clips, their captions and their videos, plus the runs rows they
come from) into a new folder laid out like an output, so that the views, `vidcurate
export`, `search` and `report` still work on it, while a plain Parquet reader (Hugging
Face `datasets`, DuckDB's read_parquet, Polars, Spark) sees exactly those rows and no
others. The clip files and keyframes go along (copied or linked) with their paths
rewritten relative to the folder, and a README.md dataset card carries the Hugging Face
YAML header (configs, licence, size category) and the provenance of the rows.

publish only reads the output. It writes into DEST only, refuses a DEST that holds
anything, and follows a media path only when it resolves to a file inside the output.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from vidcurate.pipeline.commands import EXPORT_VIEWS
from vidcurate.pipeline.options import ConfigError
from vidcurate.pipeline.output_files import OutputFiles, Refused, new_or_empty_folder
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.redaction import TextRedactor, run_regions
from vidcurate.schemas.tables import TABLES, table_schema
from vidcurate.transforms.core import is_local
from vidcurate.transforms.sinks import ROWS_PER_SHARD

MEDIA_MODES = ("copy", "link", "none")
# The tables a published folder holds; clips is the dataset's default configuration.
PUBLISHED = ("clips", "captions", "videos")

# The rows of each table that belong with the view's clips.
TABLE_SQL = {
    "clips": "SELECT * FROM {view} ORDER BY video_id, clip_index, clip_id",
    "captions": "SELECT k.* FROM captions k SEMI JOIN {view} c USING (clip_id, run_id) "
                "ORDER BY k.video_id, k.clip_id, k.rank, k.teacher",
    "videos": "SELECT v.* FROM videos v SEMI JOIN {view} c USING (video_id, run_id) "
              "ORDER BY v.video_id",
    "runs": "SELECT r.* FROM runs r SEMI JOIN {view} c USING (run_id) ORDER BY r.run_id",
}

VIEW_MEANING = {
    "clips": "every current clip (the latest complete run of each video)",
    "clips_unique": "current clips that the newest `vidcurate dedup` pass did not mark as "
                    "near-duplicates",
    "clips_balanced": "current clips kept by the newest `vidcurate balance` pass",
    "clips_curated": "current clips kept by the newest `vidcurate curate` pass",
}
VIEW_PASS = {"clips_unique": "dedup", "clips_balanced": "balance", "clips_curated": "curate"}


@dataclass
class MediaCopier:
    """Finds each referenced file inside the output and puts it into DEST once.

    A path is followed only when it resolves (symlinks included) to a regular file
    inside the output folder: the tables are data, and a path in them must not make
    publish read /etc/passwd or a neighbour's folder."""

    output: str  # the output folder, resolved
    dest: str
    mode: str
    recorded: dict[str, str]  # run_id -> the output path that run wrote its uris under
    placed: dict[str, str] = field(default_factory=dict)  # source file -> relative path
    missing: list[str] = field(default_factory=list)  # uris not found inside the output
    bytes: int = 0

    def __post_init__(self) -> None:
        self.files = OutputFiles(self.output, self.recorded)

    def locate(self, uri: str, run_id: str) -> str | None:
        """The file inside the output that a uri names, or None: the rule that export,
        report and search follow too (pipeline/output_files.py). A uri is the run's
        --output joined with media/... or keyframes/...; the output may have moved since
        (or been given relative), so the part after the recorded --output is looked up
        in the output first, then the uri as written."""
        try:
            return self.files.locate(uri, run_id)
        except Refused:
            return None

    def place(self, uri: str | None, run_id: str) -> str | None:
        """The uri rewritten relative to DEST after its file went there; None when the
        mode is none or the file is not in the output (counted in `missing`)."""
        if uri is None or self.mode == "none":
            return None
        source = self.locate(uri, run_id)
        if source is None:
            self.missing.append(uri)
            return None
        if source in self.placed:
            return self.placed[source]
        relative = os.path.relpath(source, self.output)
        target = os.path.join(self.dest, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if self.mode == "copy":
            shutil.copyfile(source, target)
        else:
            os.symlink(source, target)
        self.bytes += os.path.getsize(source)
        self.placed[source] = relative
        return relative


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """A batch in the table's own schema (column order, types, the vidcurate.schema
    metadata); a column missing from every shard (an older version wrote them) is null."""
    columns = []
    for f in schema:
        if f.name in batch.schema.names:
            columns.append(batch.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(batch.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _write(con: duckdb.DuckDBPyConnection, sql: str, folder: str, schema_of: Callable[
        [pa.Schema], pa.Schema], rewrite: Callable[[pa.RecordBatch], pa.RecordBatch] | None
           = None) -> int:
    """Stream a query into <folder>/part-NNNNN.parquet files of ROWS_PER_SHARD rows at
    most (one empty file when there are no rows, so the table exists); returns rows."""
    os.makedirs(folder)
    reader = con.sql(sql).to_arrow_reader(4096)
    schema = schema_of(reader.schema)
    rows = part = in_part = 0
    writer: pq.ParquetWriter | None = None

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            yield rewrite(batch) if rewrite else batch

    for batch in batches():
        start = 0
        while start < batch.num_rows:
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(folder, f"part-{part:05d}.parquet"),
                                          schema, compression="zstd")
            take = min(batch.num_rows - start, ROWS_PER_SHARD - in_part)
            writer.write_table(_conform(batch.slice(start, take), schema))
            start, in_part, rows = start + take, in_part + take, rows + take
            if in_part == ROWS_PER_SHARD:
                writer.close()
                writer, part, in_part = None, part + 1, 0
    if writer is not None:
        writer.close()
    elif rows == 0:
        # No row group at all: `datasets` reads a zero-row row group as a batch size of 0.
        pq.ParquetWriter(os.path.join(folder, "part-00000.parquet"), schema).close()
    return rows


def _clips_schema(result: pa.Schema) -> pa.Schema:
    kind = result.field("clip_embedding").type
    dim = kind.list_size if isinstance(kind, pa.FixedSizeListType) else None
    return table_schema("clips", dim)


def _rewrite_media(copier: MediaCopier) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    def rewrite(batch: pa.RecordBatch) -> pa.RecordBatch:
        runs = batch.column("run_id").to_pylist()
        media = [copier.place(u, r) for u, r in
                 zip(batch.column("media_uri").to_pylist(), runs, strict=True)]
        frames = []
        for uris, run in zip(batch.column("keyframe_uris").to_pylist(), runs, strict=True):
            placed = [copier.place(u, run) for u in uris or []]
            frames.append([p for p in placed if p is not None] if uris is not None else None)
        names = batch.schema.names
        columns = list(batch.columns)
        columns[names.index("media_uri")] = pa.array(media, pa.string())
        columns[names.index("keyframe_uris")] = pa.array(frames, pa.list_(pa.string()))
        return pa.RecordBatch.from_arrays(columns, names=names)

    return rewrite


def publish(output: str, dest: str, view: str = "clips", media: str = "copy",
            redact_text: bool = False, allow_unknown_license: bool = False
            ) -> dict[str, Any]:
    """Write the published folder; returns a summary (rows per table, media files).
    redact_text: personal data masked in every published text field
    (pipeline/redaction.py), the count by kind in the card. Clips whose video has no
    licence are refused (ConfigError) unless allow_unknown_license."""
    if view not in EXPORT_VIEWS:
        raise ConfigError(f"--view must be one of {', '.join(EXPORT_VIEWS)}: {view}")
    if media not in MEDIA_MODES:
        raise ConfigError(f"--media must be one of {', '.join(MEDIA_MODES)}: {media}")
    if not is_local(output):
        raise ConfigError("publish reads a local output folder (copy a remote one here "
                          f"first): {output!r}")
    con = connect(output)  # before DEST is touched: a wrong OUT leaves no empty DEST
    if not con.sql(f"SELECT count(*) FROM {view}").fetchall()[0][0]:
        raise ConfigError(f"view {view} of {output!r} holds no clips: nothing to publish")
    unlicensed = unlicensed_clips(con, view)
    if unlicensed and not allow_unknown_license:
        total = con.sql(f"SELECT count(*) FROM {view}").fetchall()[0][0]
        raise ConfigError(
            f"{unlicensed} of {total} clips in view {view} come from videos without a "
            "licence (videos.license is empty): give their videos one (a `license` column "
            "in the manifest; yt-dlp fills it where the site states one), or pass "
            "--allow-unknown-license to publish them, listed as unknown in the dataset card")
    out_real = os.path.realpath(output.removeprefix("file://"))
    dest = os.path.abspath(dest.removeprefix("file://"))
    if dest == out_real or out_real.startswith(os.path.realpath(dest) + os.sep):
        raise ConfigError("DEST must not be the output folder or hold it")
    created = new_or_empty_folder(dest, "publish",
                                  "it never deletes or overwrites files")
    try:
        recorded = dict(con.sql("SELECT run_id, output FROM runs").fetchall())
        copier = MediaCopier(out_real, dest, media, recorded)
        redactor = TextRedactor(run_regions([r[0] for r in con.sql(
            "SELECT options_json FROM runs").fetchall()])) if redact_text else None

        def rewrite(table: str) -> Callable[[pa.RecordBatch], pa.RecordBatch] | None:
            media_rewrite = _rewrite_media(copier) if table == "clips" else None
            if redactor is None or table == "runs":
                return media_rewrite
            text_rewrite = redactor.rewrite(table)
            if media_rewrite is None:
                return text_rewrite
            return lambda batch: text_rewrite(media_rewrite(batch))

        counts = {
            "clips": _write(con, TABLE_SQL["clips"].format(view=view),
                            os.path.join(dest, "clips"), _clips_schema, rewrite("clips")),
        }
        for table in ("captions", "videos", "runs"):
            counts[table] = _write(con, TABLE_SQL[table].format(view=view),
                                   os.path.join(dest, table), lambda _, t=table: TABLES[t],
                                   rewrite(table))
        card = dataset_card(con, view, media, dest, counts, copier, redactor)
        tmp = os.path.join(dest, ".README.md.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(card)
        os.replace(tmp, os.path.join(dest, "README.md"))  # written last: the folder is whole
    except BaseException:
        # DEST was new or empty: everything in it is ours to take back.
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for name in os.listdir(dest):
                path = os.path.join(dest, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        raise
    return {"dest": dest, "view": view, "media": media, **counts,
            "media_files": len(copier.placed), "media_bytes": copier.bytes,
            "missing_media": len(copier.missing), "unlicensed_clips": unlicensed,
            "redacted": None if redactor is None else dict(redactor.counts)}


# ------------------------------------------------------------------ the dataset card
# Hugging Face's licence identifiers that a videos.license text may name; anything else
# makes the card say `other` and list the licences in its body.
HF_LICENSES = frozenset({
    "apache-2.0", "mit", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0",
    "cc-by-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "odc-by", "odbl", "pddl", "unlicense",
    "gpl-3.0", "bsd-3-clause"})
# Names sites and manifests use for licences that have an identifier.
LICENSE_ALIASES = {
    # YouTube's Creative Commons option is CC BY 3.0.
    "creative commons attribution license (reuse allowed)": "cc-by-3.0",
    "cc0": "cc0-1.0", "public domain dedication (cc0)": "cc0-1.0",
    "apache license 2.0": "apache-2.0", "mit license": "mit",
}


def unlicensed_clips(con: duckdb.DuckDBPyConnection, view: str) -> int:
    """Clips of the view whose video states no licence (or has no videos row)."""
    return con.sql(f"""SELECT count(*) FROM {view} c LEFT JOIN videos v
                       USING (video_id, run_id)
                       WHERE coalesce(trim(v.license), '') = ''""").fetchall()[0][0]


def license_id(text: str | None) -> str | None:
    """The Hugging Face identifier of a licence text ('unknown' for none), or None when
    it names no licence on the list."""
    if text is None or not text.strip():
        return "unknown"
    lowered = " ".join(text.lower().split())
    if lowered in LICENSE_ALIASES:
        return LICENSE_ALIASES[lowered]
    slug = lowered.replace("creative commons", "cc").replace("attribution", "by")
    for word, short in (("sharealike", "sa"), ("share-alike", "sa"), ("noncommercial", "nc"),
                        ("non-commercial", "nc"), ("noderivatives", "nd"),
                        ("noderivs", "nd")):
        slug = slug.replace(word, short)
    slug = slug.replace("licence", "").replace("license", "").replace("international", "")
    slug = "-".join("".join(ch if ch.isalnum() or ch == "." else " " for ch in slug).split())
    return slug if slug in HF_LICENSES else None


def size_category(n: int) -> str:
    """Hugging Face's size_categories bucket for n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
              (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((name for bound, name in bounds if n < bound), "n>1T" if n >= 10**12
                else "1B<n<10B")


def _cell(value: Any) -> str:
    """Text for a Markdown table cell: data, never markup that breaks the table."""
    text = "" if value is None else str(value)
    return " ".join(text.replace("|", "\\|").replace("<", "&lt;").split())


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _yaml_header(licences: list[str | None], counts: dict[str, int]) -> str:
    ids = sorted({license_id(t) or "other" for t in licences} or {"unknown"})
    if "other" in ids:
        ids = ["other"]  # the card's licence section names them
    lines = ["---"]
    lines += [f"license: {ids[0]}"] if len(ids) == 1 else ["license:", *(f"- {i}" for i in ids)]
    lines += ["size_categories:", f"- {size_category(counts['clips'])}",
              "task_categories:", "- text-to-video", "- video-text-to-text",
              "tags:", "- video", "- video-text", "- vidcurate", "configs:"]
    for table in PUBLISHED:
        if not counts[table]:
            continue  # `datasets` cannot load an empty split: the card says it is empty
        lines += [f"- config_name: {table}"]
        if table == "clips":
            lines += ["  default: true"]
        lines += ["  data_files:", "  - split: train", f"    path: {table}/*.parquet"]
    lines.append("---")
    return "\n".join(lines)


def _run_lines(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    # One line per run: a run made in batches has a runs row per batch (batch_of).
    rows = con.sql(f"""SELECT coalesce(r.batch_of, r.run_id) AS run,
                             max(r.finished_at) AS finished_at,
                             arg_max(r.runner, r.finished_at), arg_max(r.clip_model, r.finished_at),
                             arg_max(r.notes, r.finished_at),
                             arg_max(r.options_json, r.finished_at),
                             arg_max(r.versions_json, r.finished_at), count(*) AS clips
                      FROM runs r JOIN {view} c USING (run_id) GROUP BY run
                      ORDER BY finished_at, run""").fetchall()
    lines = []
    for run_id, finished, runner, clip_model, notes, options, versions, clips in rows:
        cfg = json.loads(options or "{}").get("config", {})
        version = json.loads(versions or "{}").get("vidcurate", "?")
        asr, ocr = cfg.get("asr", {}), cfg.get("ocr", {})
        split = cfg.get("split", {}) or {}
        stitch = split.get("stitch")
        teachers = cfg.get("teachers", {}) or {}
        lines += [
            f"### Run `{_cell(run_id)}` ({clips} clips)", "",
            f"- finished {_cell(finished)} on {_cell(runner)}, vidcurate {_cell(version)}",
            f"- CLIP: {_cell(clip_model or 'off')}",
            f"- ASR: {_cell(asr.get('model') if asr.get('enabled') else 'off')}"
            + (f" (no-speech threshold {_cell(asr.get('no_speech_threshold'))})"
               if asr.get("enabled") and "no_speech_threshold" in asr else ""),
            f"- OCR: {'on' if ocr.get('enabled') else 'off'}"
            + (f" (min confidence {_cell(ocr.get('min_confidence'))})"
               if ocr.get("enabled") and "min_confidence" in ocr else ""),
            f"- caption teachers: {_cell(', '.join(teachers.get('names') or []) or 'none')}",
            "- scene cuts: " + ", ".join(
                f"{k} {_cell(split.get(k))}" for k in (
                    "detector", "threshold", "min_scene_len", "min_clip_s", "max_clip_s",
                    "max_cut_len", "force_cut_after", "trim_fraction") if k in split),
            "- semantic stitching: " + ("off" if not stitch else ", ".join(
                f"{k} {_cell(v)}" for k, v in sorted(stitch.items())
                if not isinstance(v, dict | list))),
        ]
        lines += [f"- note: {_cell(n)}" for n in notes or []]
        lines += ["", "<details><summary>every option of this run</summary>", "", "```json",
                  json.dumps(cfg, indent=1, sort_keys=True).replace("```", "'''"), "```", "",
                  "</details>", ""]
    return lines


def _funnel_lines(con: duckdb.DuckDBPyConnection, view: str, published: int) -> list[str]:
    videos = con.sql("SELECT count(*), count(*) FILTER (status = 'ok'), "
                     "count(*) FILTER (status = 'skipped'), count(*) FILTER (status = "
                     "'failed') FROM videos").fetchall()[0]
    rows: list[list[Any]] = [
        ["input videos (latest complete run of each)", videos[0]],
        ["  processed (status ok)", videos[1]], ["  skipped", videos[2]],
        ["  failed", videos[3]],
        ["clips (view `clips`)", con.sql("SELECT count(*) FROM clips").fetchall()[0][0]]]
    for name, kind in VIEW_PASS.items():
        if con.sql(f"SELECT count(*) FROM passes WHERE kind = '{kind}'").fetchall()[0][0]:
            rows.append([f"clips in `{name}`",
                         con.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]])
    rows.append([f"published (view `{view}`)", published])
    lines = ["## Funnel", "", _md_table(["step", "count"], rows), ""]
    for name, kind in VIEW_PASS.items():
        found = con.sql("SELECT pass_id, created_at, params_json, summary_json FROM passes "
                        "WHERE kind = $kind ORDER BY created_at DESC, pass_id DESC LIMIT 1",
                        params={"kind": kind}).fetchall()
        if not found:
            continue
        pass_id, created, params, summary = found[0]
        params, summary = json.loads(params or "{}"), json.loads(summary or "{}")
        shown = ", ".join(f"{k} {_cell(v)}" for k, v in sorted(params.items()))
        lines += [f"### {kind} pass `{_cell(pass_id)}` ({_cell(created)})", "",
                  f"- parameters: {shown}", f"- defines view `{name}`"
                  + (" (the published one)" if name == view else "")]
        if kind == "curate" and summary.get("funnel"):
            lines += ["", f"Curation profile `{_cell(summary.get('profile'))}`: kept "
                      f"{_cell(summary.get('kept'))} of {_cell(summary.get('clips'))} "
                      "clips; each rule in order:", "",
                      _md_table(["rule", "dropped", "kept after", "unmeasured", "if null"],
                                [[s.get("rule"), s.get("dropped"), s.get("kept_after"),
                                  s.get("unmeasured"), s.get("if_null")]
                                 for s in summary["funnel"]])]
        lines.append("")
    return lines


def _safety_lines(con: duckdb.DuckDBPyConnection, view: str,
                  redactor: TextRedactor | None) -> list[str]:
    """What the safety signals found in the published clips, and what was masked."""
    nsfw = con.sql(f"""SELECT count(nsfw_score), count(*) FILTER (list_contains(
                         quality_flags, 'nsfw')), max(nsfw_score) FROM {view}""").fetchall()[0]
    kinds = con.sql(f"""SELECT k, count(*) FROM (SELECT unnest(personal_data) AS k
                        FROM {view}) GROUP BY k ORDER BY 2 DESC, 1""").fetchall()
    scanned = con.sql(f"SELECT count(personal_data) FROM {view}").fetchall()[0][0]
    lines = ["## Safety signals", "",
             "What vidcurate measured (docs: Publishing responsibly); no signal is proof "
             "either way.", ""]
    if nsfw[0]:
        lines.append(f"- NSFW (Open-NSFW, a 2016 image model): {nsfw[0]} clips scored, "
                     f"{nsfw[1]} flagged `nsfw`, highest score {nsfw[2]:.3f}.")
    else:
        lines.append("- NSFW: not scored (the runs had no `safety` extra, or --no-nsfw).")
    if scanned:
        found = ", ".join(f"{_cell(k)} in {n} clips" for k, n in kinds) or "none found"
        lines.append(f"- Personal data in the clips' texts ({scanned} clips scanned): "
                     f"{found}.")
    else:
        lines.append("- Personal data: not scanned (rows older than the column).")
    if redactor is None:
        lines.append("- Text was published as found (no `--redact-text`).")
    else:
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(redactor.counts.items()))
        lines.append(f"- `--redact-text`: {redactor.total} values masked in the published "
                     "text fields (captions, transcripts and their words, on-screen text, "
                     "titles, descriptions, metadata)"
                     + (f": {by_kind}" if by_kind else "")
                     + "; a value repeated in several fields counts in each.")
    return [*lines, ""]


def dataset_card(con: duckdb.DuckDBPyConnection, view: str, media: str, dest: str,
                 counts: dict[str, int], copier: MediaCopier,
                 redactor: TextRedactor | None = None) -> str:
    """README.md: the Hugging Face YAML header, then what the folder holds, how to load
    it, the licences and where the rows came from."""
    # Per licence text: its videos and its clips (a clip's licence is its video's).
    licences = con.sql(f"""SELECT nullif(trim(v.license), '') AS licence,
                                  count(DISTINCT c.video_id), count(*)
                           FROM {view} c LEFT JOIN videos v USING (video_id, run_id)
                           GROUP BY 1 ORDER BY 3 DESC, 1""").fetchall()
    hours = con.sql(f"SELECT round(coalesce(sum(duration_s), 0) / 3600, 3) FROM {view}"
                    ).fetchall()[0][0]
    name = os.path.basename(dest.rstrip(os.sep)) or "dataset"
    media_text = {
        "copy": f"{len(copier.placed)} clip and keyframe files are copied into `media/` and "
                "`keyframes/`;",
        "link": f"{len(copier.placed)} clip and keyframe files are symbolic links into the "
                "output folder (`media/`, `keyframes/`): copy them before moving this folder;",
        "none": "no clip files or keyframes were published (`--media none`): `media_uri` and "
                "`keyframe_uris` are null;",
    }[media]
    lines = [
        _yaml_header([t for t, _, _ in licences], counts), "",
        f"# {_cell(name)}", "",
        f"A video-text dataset curated with vidcurate: "
        f"{counts['clips']} clips ({hours} hours) from {counts['videos']} videos, the "
        f"view `{view}`: {VIEW_MEANING[view]}.", "",
        "## Files", "",
        _md_table(["table", "rows", "what"], [
            ["clips/", counts["clips"], "one row per clip: span, media and keyframe paths, "
             "transcript, on-screen text, CLIP embedding, selected caption, quality signals"],
            ["captions/", counts["captions"], "every candidate caption of these clips, with "
             "its teacher, model, CLIP score and rank"],
            ["videos/", counts["videos"], "the source videos of these clips: probe results, "
             "licence, shot boundaries, language"],
            ["runs/", counts["runs"], "the runs that made these rows (options, versions)"]]),
        "",
        f"Paths in `media_uri` and `keyframe_uris` are relative to this folder; {media_text} "
        + (f"{len(copier.missing)} referenced files were not found inside the output and "
           "their paths are null." if copier.missing else "every referenced file is here."),
        "",
        *([f"Empty tables ({', '.join(t for t in PUBLISHED if not counts[t])}) have no "
           "configuration in the header: `datasets` cannot load an empty split.", ""]
          if not all(counts[t] for t in PUBLISHED) else []),
        "## Loading", "",
        "```python",
        "from datasets import load_dataset",
        f'path = "{name}"  # this folder, or its repository id once on the Hugging Face Hub',
        'clips = load_dataset(path, split="train")  # the default configuration: clips',
        'captions = load_dataset(path, "captions", split="train")',
        'videos = load_dataset(path, "videos", split="train")',
        "```", "",
        "```sql",
        f"SELECT clip_id, best_caption FROM read_parquet('{name}/clips/*.parquet');",
        "```", "",
        f"`vidcurate export {name} wds/` writes WebDataset shards of the same clips, and "
        f"`vidcurate search {name} \"a text\"` finds clips by what they show.", "",
        "## Licences", "",
        "The licence of each clip is its source video's (`videos.license`, from the "
        "manifest's `license` column or the video site's metadata).", "",
        _md_table(["licence", "identifier", "videos", "clips"],
                  [[t if t is not None else "(none given: published with "
                    "--allow-unknown-license)", license_id(t) or "other", v, n]
                   for t, v, n in licences]), "",
        *_safety_lines(con, view, redactor),
        *_funnel_lines(con, view, counts["clips"]),
        "## How the clips were made", "",
        *_run_lines(con, view),
    ]
    return "\n".join(lines).rstrip() + "\n"
