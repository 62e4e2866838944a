"""The `runs` table: stage metrics read back from the runner, the row that commits a
run, and the earlier complete runs a resumed run skips.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from vidcurate.pipeline.environment import versions
from vidcurate.pipeline.options import RunConfig
from vidcurate.schemas.redact import redact_options, redact_url
from vidcurate.schemas.tables import SCHEMA_VERSION

log = logging.getLogger("vidcurate")


# Stages in graph order, for reports.
STAGES = ("manifest", "resume", "fetch", "content_dedup", "probe", "detect_scenes", "stitch",
          "clip_rules", "plan_clips", "cut_clips", "ocr", "asr", "embed_clips", "nsfw",
          "judge_clips", "captioning", "score_captions", "personal_data")


@dataclass
class StageStats:
    counters: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # count, mean, max


@dataclass(frozen=True)
class Batch:
    """Where a pipeline stands in a run made in batches (--batch-videos)."""

    of: str  # the run's id; the batch commits as run id batch_run_id(of, index)
    index: int  # 1-based, in listing order
    count: int

    @property
    def run_id(self) -> str:
        return batch_run_id(self.of, self.index)


def batch_run_id(run_id: str, index: int) -> str:
    return f"{run_id}-b{index:05d}"


@dataclass
class RunOutcome:
    config: RunConfig
    result: PipelineResult | None
    stages: dict[str, StageStats]
    started_at: dt.datetime
    finished_at: dt.datetime
    batch: Batch | None = None  # the one batch this outcome is of
    # Every committed run id of the run: its own, or one per batch.
    run_ids: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.config.run_id

    def counter(self, stage: str, name: str) -> int:
        return self.stages.get(stage, StageStats()).counters.get(name, 0)


def stage_stats(result: PipelineResult) -> dict[str, StageStats]:
    """Beam metrics summed over steps, per stage namespace."""
    stats: dict[str, StageStats] = defaultdict(StageStats)
    try:
        metrics = result.metrics().query()
    except NotImplementedError:  # Beam's DaskRunner does not collect metrics (yet)
        log.warning("this runner reports no metrics: the runs row has no counts")
        return {}

    def value(m: Any) -> Any:
        return m.committed if m.committed is not None else m.attempted

    for m in metrics["counters"]:
        ns, name = m.key.metric.namespace, m.key.metric.name
        stats[ns].counters[name] = stats[ns].counters.get(name, 0) + int(value(m) or 0)
    dists: dict[str, list] = defaultdict(lambda: [0, 0, 0])  # latency_ms per stage
    for m in metrics["distributions"]:
        d = value(m)
        if d is None or not d.count:
            continue
        if m.key.metric.name != "latency_ms":
            continue
        acc = dists[m.key.metric.namespace]
        acc[0] += d.count
        acc[1] += d.sum
        acc[2] = max(acc[2], d.max)
    for ns, (count, total, biggest) in dists.items():
        stats[ns].latency_ms.update({"count": count, "mean": total / count, "max": biggest})
    return dict(stats)


def add_stats(total: dict[str, StageStats], more: dict[str, StageStats]) -> None:
    """Add one batch's stage stats to the run's: counters summed, latencies merged."""
    for stage, st in more.items():
        acc = total.setdefault(stage, StageStats())
        for name, value in st.counters.items():
            acc.counters[name] = acc.counters.get(name, 0) + value
        if st.latency_ms:
            count = acc.latency_ms.get("count", 0) + st.latency_ms["count"]
            busy = (acc.latency_ms.get("count", 0) * acc.latency_ms.get("mean", 0.0)
                    + st.latency_ms["count"] * st.latency_ms["mean"])
            acc.latency_ms.update({"count": count, "mean": busy / count if count else 0.0,
                                   "max": max(acc.latency_ms.get("max", 0.0),
                                              st.latency_ms["max"])})


def runs_row(outcome: RunOutcome, options: PipelineOptions, status: str) -> dict[str, Any]:
    cfg = outcome.config
    counts = [
        {"stage": stage, "name": name, "value": value}
        for stage, st in sorted(outcome.stages.items())
        for name, value in sorted(st.counters.items())
    ]
    all_options = {k: v for k, v in options.get_all_options(drop_default=False).items()
                   if _jsonable(v)}
    return {
        "run_id": cfg.run_id,
        "status": status,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        # Redacted: credentials in options (--s3_secret_access_key) and URL tokens.
        "input": redact_url(cfg.input),
        "output": redact_url(cfg.output),
        "runner": options.view_as(StandardOptions).runner or "DirectRunner",
        "split_params_hash": cfg.split.params_hash,
        "outputs_hash": cfg.outputs_hash,
        "options_json": json.dumps(redact_options(
            {"config": dataclasses.asdict(cfg), "pipeline_options": all_options}),
            sort_keys=True, default=str),
        "versions_json": json.dumps(versions(), sort_keys=True),
        "counts": counts,
        "schema_version": SCHEMA_VERSION,
        "clip_model": cfg.clip_model.model_id if cfg.clip_model.enabled else None,
        "device": device_label(cfg),
        "notes": run_notes(cfg),
        "batch_of": outcome.batch.of if outcome.batch else None,
        "batch": outcome.batch.index if outcome.batch else None,
        "batches": outcome.batch.count if outcome.batch else None,
    }


def device_label(cfg: RunConfig) -> str | None:
    """Where the models ran: "cpu", or "cuda:0 (NVIDIA L4)"; None for a config whose
    device was never resolved (tests that build a graph by hand)."""
    d = cfg.device
    if d.device is None:
        return None
    return f"{d.device} ({d.gpu_name})" if d.gpu_name else d.device


def run_notes(cfg: RunConfig) -> list[str]:
    """What someone reading this run's rows must know about how they were made."""
    notes = [*cfg.device.notes, *cfg.media.notes]
    if not cfg.clip_model.enabled:
        notes.append("CLIP was off (--no-clip or no weights): no semantic stitching, no clip "
                     "embeddings, no CLIP scores; captions were selected by teacher priority")
    elif cfg.split.stitch is None:
        notes.append("semantic stitching was off (--no-stitch): every cut-scene is an event")
    if not cfg.asr.enabled:
        notes.append("ASR was off (--no-asr): no transcripts")
    elif cfg.asr.concurrency > 1:
        notes.append(f"ASR transcribed up to {cfg.asr.concurrency} videos at once per worker, "
                     f"{cfg.asr.cpu_threads or 'library-chosen'} thread(s) each")
    if not cfg.ocr.enabled:
        notes.append("OCR was off (--no-ocr): no on-screen text")
    notes.append(f"caption teachers: {', '.join(cfg.teachers.names) or 'none'}; selection "
                 + ("by CLIP score, ties by teacher priority" if cfg.clip_model.enabled else
                    "by teacher priority") + f" ({', '.join(cfg.teachers.priority)})")
    return notes


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def completed_runs(output: str, outputs_hash: str) -> list[str]:
    """Earlier complete runs over this output with the same outputs hash, oldest first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        found = FileSystems.match([f"{output}/runs/*.parquet"])[0].metadata_list
    except Exception:
        return []
    rows = []
    for meta in found:
        with FileSystems.open(meta.path) as f:
            table = pq.read_table(pa.BufferReader(f.read()))
        if "outputs_hash" not in table.column_names:
            continue  # written by an older version: its rows are redone
        rows.extend(r for r in table.to_pylist()
                    if r["status"] == "complete" and r["outputs_hash"] == outputs_hash)
    return [r["run_id"] for r in sorted(rows, key=lambda r: (r["finished_at"], r["run_id"]))]
