"""Commands over a finished output: dedup, balance, export.

Each reads the current rows through the DuckDB views (latest complete run per video),
does its work, and writes its result atomically, so a killed command leaves the output
as it was. Dedup runs as a Beam pipeline (any runner, through the same flags as `run`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import shutil
import tarfile
import tempfile
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from vidcurate.pipeline.options import ConfigError, new_run_id
from vidcurate.pipeline.output_files import (
    MAX_IMAGE_BYTES,
    MAX_MEDIA_BYTES,
    OutputFiles,
    describe,
    new_or_empty_folder,
)
from vidcurate.pipeline.query import connect, require_output
from vidcurate.transforms.balance import Matcher, balance, read_entries
from vidcurate.transforms.dedup import DedupConfig, FindDuplicates, Item
from vidcurate.transforms.sinks import write_rows


def _commit(output: str, pass_id: str, kind: str, at: dt.datetime, params: dict[str, Any],
            summary: dict[str, Any]) -> None:
    """The pass's row in `passes`, written after its data: the views show a pass only
    once it is complete (a killed pass stays invisible)."""
    write_rows(output, "passes", pass_id, [{
        "pass_id": pass_id, "kind": kind, "created_at": at,
        "params_json": json.dumps(params, sort_keys=True),
        "summary_json": json.dumps(summary, sort_keys=True)}])


# ------------------------------------------------------------------ dedup
def _item(row: dict[str, Any]) -> Item:
    return Item(clip_id=row["clip_id"], order=(row["video_id"], row["clip_index"]),
                embedding=np.asarray(row["clip_embedding"], np.float32))


def dedup(output: str, cfg: DedupConfig, beam_args: list[str] | None = None
          ) -> dict[str, Any]:
    """Mark near-duplicate clips in <output>/duplicates/<pass_id>.parquet; returns a
    summary (clips compared, duplicates, pass id)."""
    if not -1 <= cfg.threshold <= 1:
        raise ConfigError(f"--threshold is a cosine similarity in [-1, 1], got {cfg.threshold}")
    if cfg.bands < 1 or not 1 <= cfg.bits <= 64:
        raise ConfigError("--bands must be >= 1 and --bits in [1, 64]")
    require_output(output)
    con = connect(output)
    dims = con.sql("SELECT DISTINCT len(clip_embedding) FROM clips "
                   "WHERE clip_embedding IS NOT NULL").fetchall()
    if not dims:
        # A pass that compared nothing would read as "no clip is a duplicate" to curate:
        # refuse, as search does, so "not measured" never becomes "measured".
        total = con.sql("SELECT count(*) FROM clips").fetchall()[0][0]
        raise ConfigError(f"no clip embeddings to compare in {output!r} ({total} clips): "
                          "its runs had no CLIP (--no-clip, or no weights); rerun with a "
                          "CLIP model to dedup")
    if len(dims) > 1:
        raise ConfigError(f"clips carry embeddings of {len(dims)} sizes (runs with different "
                          "CLIP models): dedup needs one model")
    pass_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="vidcurate-dedup-") as tmp:
        source = os.path.join(tmp, "embeddings.parquet")
        table = con.sql("SELECT clip_id, video_id, clip_index, "
                        "clip_embedding::FLOAT[] AS clip_embedding FROM clips "
                        "WHERE clip_embedding IS NOT NULL ORDER BY clip_id").to_arrow_table()
        pq.write_table(table, source, row_group_size=4096)  # row groups split the read
        found = os.path.join(tmp, "found")
        with beam.Pipeline(options=PipelineOptions(beam_args or [])) as p:
            _ = (p | "Read" >> beam.io.ReadFromParquet(source)
                 | "Items" >> beam.Map(_item)
                 | "Find" >> FindDuplicates(cfg, int(dims[0][0]))
                 | "Json" >> beam.Map(json.dumps)
                 | "Write" >> beam.io.WriteToText(found, file_name_suffix=".jsonl"))
        pairs = []
        for name in sorted(os.listdir(tmp)):
            if name.startswith("found") and name.endswith(".jsonl"):
                with open(os.path.join(tmp, name)) as f:
                    pairs += [json.loads(line) for line in f if line.strip()]
    video_of = dict(zip(table.column("clip_id").to_pylist(),
                        table.column("video_id").to_pylist(), strict=True))
    now = dt.datetime.now(dt.UTC)
    rows = [{"pass_id": pass_id, "created_at": now, "clip_id": c, "video_id": video_of.get(c),
             "duplicate_of": d, "similarity": s, "threshold": cfg.threshold}
            for c, d, s in sorted(pairs)]
    write_rows(output, "duplicates", pass_id, rows)
    summary = {"pass_id": pass_id, "clips": table.num_rows, "duplicates": len(rows),
               "skipped_without_embedding": con.sql(
                   "SELECT count(*) FROM clips WHERE clip_embedding IS NULL").fetchall()[0][0]}
    _commit(output, pass_id, "dedup", now, dataclasses.asdict(cfg), summary)
    return summary


# ------------------------------------------------------------------ balance
BALANCE_TEXT = """
    SELECT c.clip_id, concat_ws(' ', c.best_caption, c.transcript, v.title) AS text
    FROM clips c JOIN videos v USING (video_id) ORDER BY c.clip_id"""


def balance_output(output: str, vocabulary: str, cap: int, seed: int = 0,
                   keep_unmatched: bool = False) -> dict[str, Any]:
    """Write <output>/balance/ and balance_counts/ for one pass; returns a summary."""
    if cap < 1:
        raise ConfigError(f"--cap must be >= 1, got {cap}")
    if not os.path.isfile(vocabulary):
        raise ConfigError(f"--vocabulary {vocabulary!r} is not a file")
    with open(vocabulary, encoding="utf-8") as f:
        entries = read_entries(f)
    if not entries:
        raise ConfigError(f"--vocabulary {vocabulary!r} holds no entries")
    require_output(output)
    match = Matcher(entries)
    texts = connect(output).sql(BALANCE_TEXT).fetchall()
    matches = {clip_id: match(text or "") for clip_id, text in texts}
    kept, counts = balance(matches, cap, seed, keep_unmatched)
    pass_id, now = new_run_id(), dt.datetime.now(dt.UTC)
    write_rows(output, "balance_counts", pass_id, [
        {"pass_id": pass_id, "entry": e, "count_before": b, "count_after": a, "cap": cap}
        for e, (b, a) in counts.items()])
    write_rows(output, "balance", pass_id, [
        {"pass_id": pass_id, "created_at": now, "clip_id": c, "entries": matches[c],
         "kept": kept[c]} for c in sorted(matches)])
    summary = {"pass_id": pass_id, "clips": len(matches), "kept": sum(kept.values()),
               "matched": sum(bool(m) for m in matches.values()), "entries": len(counts)}
    _commit(output, pass_id, "balance", now, {
        "vocabulary": os.path.abspath(vocabulary), "cap": cap, "seed": seed,
        "keep_unmatched": keep_unmatched}, summary)
    return summary


# ------------------------------------------------------------------ export
EXPORT_QUERY = """
    SELECT c.clip_id, c.video_id, c.run_id, c.media_uri, c.keyframe_uris, c.start_s, c.end_s,
           c.duration_s, c.best_caption, c.best_teacher, c.clip_score, c.selection_method,
           c.transcript, c.ocr_text, c.ocr_coverage_max, c.caption_struct,
           c.caption_conflicts, c.camera_motion, c.camera_pan, c.camera_tilt, c.camera_zoom,
           c.subject_motion, c.nsfw_score, c.personal_data, c.quality_flags,
           v.source_uri, v.title, v.license,
           v.language, (SELECT list({'teacher': k.teacher, 'model': k.model,
                                     'text': k.text, 'clip_score': k.clip_score,
                                     'rank': k.rank} ORDER BY k.rank)
                        FROM captions k WHERE k.clip_id = c.clip_id) AS candidates
    FROM {clips} c JOIN videos v USING (video_id)
    ORDER BY c.video_id, c.clip_index"""


EXPORT_VIEWS = ("clips", "clips_unique", "clips_balanced", "clips_curated")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    dest: str
    shard_clips: int = 1000  # a shard closes at this many clips ...
    shard_bytes: int = 1 << 30  # ... or this many bytes, whichever comes first
    view: str = "clips"  # clips, clips_unique, clips_balanced or clips_curated
    keyframes: bool = True


def _sample(row: dict[str, Any], files: OutputFiles, keyframes: bool = True
            ) -> dict[str, bytes] | None:
    """One WebDataset sample: the clip file, its first keyframe, a caption and the rest
    as JSON; the member names share the key (the clip id). None when a file the clip
    names is refused (see output_files: regular files inside the output only); the
    refusal is recorded in files.refused."""
    meta = {k: v for k, v in row.items() if k not in ("media_uri", "keyframe_uris", "run_id")}
    out: dict[str, bytes] = {}
    run_id, what = row.get("run_id"), f"clip {row['clip_id']}"
    if row["media_uri"] is not None:  # a run with --clip-media none has no clip files
        data = files.fetch(row["media_uri"], run_id, what, MAX_MEDIA_BYTES)
        if data is None:
            return None
        ext = os.path.splitext(row["media_uri"])[1].lstrip(".") or "mp4"
        out[ext if ext.isalnum() else "mp4"] = data  # the extension names a tar member
    if keyframes and row["keyframe_uris"]:
        data = files.fetch(row["keyframe_uris"][0], run_id, what, MAX_IMAGE_BYTES)
        if data is None:
            return None
        out["jpg"] = data
    out["txt"] = (row["best_caption"] or "").encode()
    out["json"] = json.dumps(meta, ensure_ascii=False, default=str, sort_keys=True).encode()
    return out


class ShardWriter:
    """WebDataset tar shards, closed at a count or a size; each shard is written under a
    temporary name and renamed when complete, so a reader never sees half a shard."""

    def __init__(self, dest: str, max_clips: int, max_bytes: int) -> None:
        self.dest, self.max_clips, self.max_bytes = dest, max_clips, max_bytes
        self.shards: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp = ""
        self._count = self._bytes = 0

    def add(self, key: str, sample: dict[str, bytes]) -> None:
        size = sum(len(v) for v in sample.values())
        if self._tar is not None and (self._count >= self.max_clips
                                      or self._bytes + size > self.max_bytes):
            self.close()
        if self._tar is None:
            self._tmp = os.path.join(self.dest, f".shard-{len(self.shards):06d}.tar.tmp")
            self._tar = tarfile.open(self._tmp, "w")  # noqa: SIM115 - spans many calls
        for ext, data in sorted(sample.items()):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        self._bytes += size

    @property
    def pending(self) -> str:
        """The temporary file of the open shard ('' when none is open)."""
        return self._tmp if self._tar is not None else ""

    def abort(self) -> None:
        """Close the open shard without renaming it: a failed export keeps no part of it."""
        if self._tar is not None:
            self._tar.close()

    def close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        final = os.path.join(self.dest, f"shard-{len(self.shards):06d}.tar")
        os.replace(self._tmp, final)
        self.shards.append(final)
        self._tar, self._count, self._bytes = None, 0, 0


def shard_pattern(dest: str, shards: list[str]) -> str:
    """The path that reads exactly the shards written: WebDataset's brace range
    (shard-{000000..000003}.tar) for several, the one file for one."""
    names = [os.path.basename(s) for s in shards]
    if len(names) == 1:
        return os.path.join(dest, names[0])
    first, last = names[0][len("shard-"):-len(".tar")], names[-1][len("shard-"):-len(".tar")]
    return os.path.join(dest, f"shard-{{{first}..{last}}}.tar")


def export_webdataset(output: str, cfg: ExportConfig) -> dict[str, Any]:
    """Tar shards <dest>/shard-000000.tar ... of the chosen view, into a new or empty
    DEST; returns a summary: shards, clips, the reading pattern, and the clips skipped
    because a file they name was refused (outside the output, not a regular file, too
    large). Nothing to export is an error, and leaves DEST as it was."""
    if cfg.view not in EXPORT_VIEWS:
        raise ConfigError(f"--view must be one of {', '.join(EXPORT_VIEWS)}: {cfg.view}")
    if cfg.shard_clips < 1 or cfg.shard_bytes < 1:
        raise ConfigError("--shard-clips and --shard-bytes must be >= 1")
    con = connect(output)  # before DEST is touched: a wrong OUT leaves no empty DEST
    if not con.sql(f"SELECT count(*) FROM {cfg.view}").fetchall()[0][0]:
        raise ConfigError(f"view {cfg.view} of {output!r} holds no clips: nothing to export")
    files = OutputFiles.of(output, con)
    # Old shards in DEST would be read with the new ones (a reader globs shard-*.tar).
    created = new_or_empty_folder(cfg.dest, "export",
                                  "old shards there would be read with the new ones")
    dest = cfg.dest.removeprefix("file://")
    writer = ShardWriter(dest, cfg.shard_clips, cfg.shard_bytes)
    exported = skipped = 0
    try:
        reader = con.sql(EXPORT_QUERY.replace("{clips}", cfg.view)).to_arrow_reader(256)
        for batch in reader:  # streamed: an export never holds the whole table
            for row in batch.to_pylist():
                sample = _sample(row, files, cfg.keyframes)
                if sample is None:
                    skipped += 1
                    continue
                writer.add(row["clip_id"], sample)
                exported += 1
        writer.close()
        if not exported:
            raise ConfigError(f"nothing exported: every clip of view {cfg.view} names a "
                              "refused file\n" + describe(files.refused))
    except BaseException:
        # DEST was new or empty: what is in it now is ours to take back.
        writer.abort()
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for path in [*writer.shards, writer.pending]:
                if path and os.path.lexists(path):
                    os.unlink(path)
        raise
    return {"shards": writer.shards, "clips": exported, "skipped": skipped,
            "refused": files.refused, "pattern": shard_pattern(dest, writer.shards)}
