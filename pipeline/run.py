"""run(): validate options, build and run the graph, then commit the run with its `runs` row."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from vidcurate.pipeline.dag import build
from vidcurate.pipeline.dead_runs import in_progress, remove_dead_runs
from vidcurate.pipeline.environment import check_environment
from vidcurate.pipeline.options import ConfigError, FetchConfig, RunConfig, check_flags
from vidcurate.pipeline.runs import RunOutcome, completed_runs, runs_row, stage_stats
from vidcurate.schemas.redact import redact_url
from vidcurate.transforms.core import is_local, is_remote

log = logging.getLogger("vidcurate")


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
    with in_progress(cfg.output, cfg.run_id) as check_still_ours:
        # Marked as in progress first, so that another run's sweep leaves this one be.
        remove_dead_runs(cfg.output, cfg.run_id)
        previous = [] if cfg.force else completed_runs(cfg.output, cfg.outputs_hash)
        build(p, cfg, previous)
        result = _run_with_progress(p, cfg, show=test_pipeline is None)
        outcome = RunOutcome(config=cfg, result=result, stages=stage_stats(result),
                             started_at=started, finished_at=dt.datetime.now(dt.UTC))
        check_still_ours()
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


def _remove_run_work(fetch: FetchConfig) -> None:
    """Remove the run's own download folder (run-<run id> inside --work-dir, and its
    local landing folder when the work dir is a shared store); never anything that was
    there before the run."""
    from vidcurate.transforms.fetch_config import local_work_dir

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
