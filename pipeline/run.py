"""run(): validate options, build and run the graph, then commit the run with its `runs` row."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import logging
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from vidcurate.pipeline import __version__
from vidcurate.pipeline.dag import build
from vidcurate.pipeline.options import ConfigError, FetchConfig, RunConfig, check_flags
from vidcurate.schemas.redact import redact_options, redact_url
from vidcurate.schemas.tables import SCHEMA_VERSION
from vidcurate.transforms.core import is_local, is_remote
from vidcurate.transforms.manifest import input_kind
from vidcurate.transforms.media.tools import ffmpeg_version

log = logging.getLogger("vidcurate")

# Stages in graph order, for reports.
STAGES = ("manifest", "resume", "fetch", "probe", "detect_scenes", "stitch", "clip_rules",
          "plan_clips", "cut_clips", "ocr", "asr", "clip_embed", "judge", "teachers",
          "score_captions")
_PACKAGES = ("apache-beam", "scenedetect", "pyarrow", "duckdb", "numpy",
             "opencv-python-headless", "rapidocr", "onnxruntime", "faster-whisper",
             "ctranslate2", "openai-whisper", "torch", "open_clip_torch")


@dataclass
class StageStats:
    counters: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # count, mean, max


@dataclass
class RunOutcome:
    config: RunConfig
    result: PipelineResult | None
    stages: dict[str, StageStats]
    started_at: dt.datetime
    finished_at: dt.datetime

    @property
    def run_id(self) -> str:
        return self.config.run_id

    def counter(self, stage: str, name: str) -> int:
        return self.stages.get(stage, StageStats()).counters.get(name, 0)


def check_environment(cfg: RunConfig) -> RunConfig:
    """Fail before building the graph when the run cannot work at all; returns the
    config with the ASR model's local files resolved."""
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} is not on PATH: install ffmpeg (e.g. apt-get install "
                              f"ffmpeg) before running vidcurate")
    if cfg.ocr.enabled:
        from vidcurate.transforms.models import MissingExtra, import_rapidocr

        try:
            import_rapidocr()
        except MissingExtra as e:
            raise ConfigError(str(e)) from e
    path = cfg.input.removeprefix("file://")
    if is_local(cfg.input):
        if not os.path.exists(path):
            raise ConfigError(f"--input {cfg.input!r} does not exist")
    else:
        pattern = cfg.input.rstrip("/") + (
            "/**" if input_kind(cfg.input, cfg.video_extensions) == "folder" else "")
        try:
            found = FileSystems.match([pattern])[0].metadata_list
        except Exception as e:  # unknown scheme (http manifests) or missing extra
            raise ConfigError(f"--input {cfg.input!r} cannot be listed: {e}") from e
        if not found:
            raise ConfigError(f"--input {cfg.input!r} matches nothing")
    if is_local(cfg.output):
        out = cfg.output.removeprefix("file://")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ConfigError(f"--output {cfg.output!r} exists and is not a folder")
    work = cfg.fetch.work_dir
    if is_local(work) and os.path.lexists(work):
        # The run removes this folder afterwards: it must be the run's own.
        raise ConfigError(f"the run's download folder {work} already exists (--work-dir "
                          "holds a folder of this run id): choose another --run-id")
    # A run id names its shards: reusing one would mix two runs' files.
    try:
        taken = FileSystems.match([f"{cfg.output}/*/{cfg.run_id}*.parquet"])[0].metadata_list
    except Exception:
        taken = []
    if taken:
        raise ConfigError(f"--run-id {cfg.run_id!r} was already used in {cfg.output}; "
                          "choose another (or leave it out)")
    if cfg.asr.enabled:
        from vidcurate.transforms.models import MissingExtra
        from vidcurate.transforms.models.whisper import resolve_model

        try:
            cfg = dataclasses.replace(cfg, asr=resolve_model(cfg.asr))
        except MissingExtra as e:
            raise ConfigError(str(e)) from e
        log.info("ASR: %s (%s)", cfg.asr.model_id, cfg.asr.model_path or "by name")
    if cfg.clip.enabled:
        from vidcurate.transforms.models import MissingExtra
        from vidcurate.transforms.models.clip import resolve_clip

        try:
            cfg = cfg.with_clip(resolve_clip(cfg.clip))
        except MissingExtra as e:
            raise ConfigError(str(e)) from e
        log.info("CLIP: %s (%s)", cfg.clip.model_id, cfg.clip.checkpoint_path or "by name")
    if cfg.aesthetic.enabled:
        from vidcurate.transforms.models.aesthetic import resolve_aesthetic

        clip = cfg.clip
        cfg = dataclasses.replace(cfg, aesthetic=resolve_aesthetic(
            cfg.aesthetic, clip.model if clip.enabled else None, clip.pretrained, clip.local,
            clip.embed_dim))
        log.info("aesthetic head: %s (%s)", cfg.aesthetic.model_id,
                 cfg.aesthetic.checkpoint_path)
    if "captioner" in cfg.teachers.names:
        from vidcurate.transforms.models import MissingExtra, import_transformers
        from vidcurate.transforms.teachers.captioner import resolve_captioner

        try:
            import_transformers()
        except MissingExtra as e:
            raise ConfigError(str(e)) from e
        cfg = dataclasses.replace(cfg, teachers=dataclasses.replace(
            cfg.teachers, captioner_path=resolve_captioner(cfg.teachers.captioner_model)))
    return cfg


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


def versions() -> dict[str, str]:
    found = {"vidcurate": __version__, "ffmpeg": ffmpeg_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


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
        "clip_model": cfg.clip.model_id if cfg.clip.enabled else None,
        "notes": run_notes(cfg),
    }


def run_notes(cfg: RunConfig) -> list[str]:
    """What someone reading this run's rows must know about how they were made."""
    notes = []
    if not cfg.clip.enabled:
        notes.append("CLIP was off (--no-clip or no weights): no semantic stitching, no clip "
                     "embeddings, no CLIP scores; captions were selected by teacher priority")
    elif cfg.split.stitch is None:
        notes.append("semantic stitching was off (--no-stitch): every cut-scene is an event")
    if not cfg.asr.enabled:
        notes.append("ASR was off (--no-asr): no transcripts")
    if not cfg.ocr.enabled:
        notes.append("OCR was off (--no-ocr): no on-screen text")
    notes.append(f"caption teachers: {', '.join(cfg.teachers.names) or 'none'}; selection "
                 + ("by CLIP score, ties by teacher priority" if cfg.clip.enabled else
                    "by teacher priority") + f" ({', '.join(cfg.teachers.priority)})")
    return notes


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> RunOutcome:
    """Run the curation pipeline; raises ConfigError before any work on bad options."""
    from vidcurate.transforms.sinks import write_rows

    if argv is not None:
        argv = _runner_aliases(argv)
        if DASK_RUNNER in argv or f"--runner={DASK_RUNNER}" in argv:
            try:  # registers DaskOptions (--dask_client_address, ...) before parsing
                import vidcurate.pipeline.dask_runner  # noqa: F401
            except ImportError as e:
                raise ConfigError(f"DaskRunner needs dask: pip install 'dask[distributed]' "
                                  f"({e})") from e
        check_flags(argv)
    options = (test_pipeline.options if test_pipeline is not None and argv is None
               else PipelineOptions(argv))
    cfg = RunConfig.from_options(options)
    cfg = check_environment(cfg)
    started = dt.datetime.now(dt.UTC)
    log.info("run %s: %s -> %s", cfg.run_id, redact_url(cfg.input),
             redact_url(cfg.output))
    p = test_pipeline if test_pipeline is not None else beam.Pipeline(options=options)
    previous = [] if cfg.force else completed_runs(cfg.output, cfg.outputs_hash)
    build(p, cfg, previous)
    result = _run_with_progress(p, cfg, show=test_pipeline is None)
    outcome = RunOutcome(config=cfg, result=result, stages=stage_stats(result),
                         started_at=started, finished_at=dt.datetime.now(dt.UTC))
    # The runs row is written last: it is the commit marker that makes this run's
    # shards visible to the query views.
    write_rows(cfg.output, "runs", cfg.run_id, [runs_row(outcome, options, "complete")])
    _clean_scratch(cfg.output)
    if not cfg.fetch.keep_downloads:
        _remove_run_work(cfg.fetch)
    return outcome


def _run_with_progress(p: beam.Pipeline, cfg: RunConfig, show: bool) -> PipelineResult:
    """Run the pipeline; on a terminal, a live status line from the stage counters."""
    import sys
    import tempfile

    from vidcurate.transforms import progress

    folder = tempfile.mkdtemp(prefix=f"vidcurate-progress-{cfg.run_id}-")
    previous = os.environ.get(progress.ENV)
    os.environ[progress.ENV] = folder  # worker processes inherit it
    progress.reset()
    try:
        with progress.Display(folder, sys.stderr) if show else contextlib.nullcontext():
            result = p.run()
            result.wait_until_finish()
            progress.flush()
    finally:
        if previous is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)
    return result


DASK_RUNNER = "vidcurate.pipeline.dask_runner.DaskRunner"


def _runner_aliases(argv: list[str]) -> list[str]:
    """`--runner DaskRunner` (or Beam's path to it) runs ours, pipeline/dask_runner.py,
    whose partitions stay bounded. Beam knows runners outside its own package by module
    path only, and the Dask options (--dask_client_address, ...) exist once the module
    is imported."""
    out = list(argv)
    for i, arg in enumerate(out):
        name = arg.split("=", 1)[1] if arg.startswith("--runner=") else (
            out[i + 1] if arg == "--runner" and i + 1 < len(out) else None)
        if name in ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"):
            full = DASK_RUNNER
            if arg.startswith("--runner="):
                out[i] = f"--runner={full}"
            else:
                out[i + 1] = full
    return out


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


def _remove_run_work(fetch: FetchConfig) -> None:
    """Remove the run's own download folder (run-<run id> inside --work-dir, and its
    local landing folder when the work dir is a shared store); never anything that was
    there before the run."""
    from vidcurate.transforms.fetch import local_work_dir

    if is_remote(fetch.work_dir):
        with contextlib.suppress(Exception):  # already empty, or never created
            # A path ending in "/" deletes what lies under it (Beam's object stores).
            FileSystems.delete([fetch.work_dir.rstrip("/") + "/"])
    shutil.rmtree(local_work_dir(fetch), ignore_errors=True)


def _clean_scratch(output: str) -> None:
    # Each clip removes its own scratch folder; drop the parent only when empty, since
    # another run may be writing to the same output.
    if is_local(output):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(output.removeprefix("file://"), ".tmp"))
