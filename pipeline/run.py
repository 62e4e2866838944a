"""run(): validate options, build and run the graph, then commit the run with its `runs` row
(or, with --batch-videos, one graph and one commit per batch of the listing)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import logging
import os
import shutil
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from vidcurate.pipeline.dag import build
from vidcurate.pipeline.dead_runs import in_progress, remove_dead_runs
from vidcurate.pipeline.environment import check_environment
from vidcurate.pipeline.options import ConfigError, FetchConfig, RunConfig, check_flags
from vidcurate.pipeline.runs import (
    Batch,
    RunOutcome,
    StageStats,
    add_stats,
    completed_runs,
    runs_row,
    stage_stats,
)
from vidcurate.schemas.redact import redact_url
from vidcurate.transforms.core import is_local, is_remote
from vidcurate.transforms.manifest import ListedBatch

log = logging.getLogger("vidcurate")


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None, *,
        exit_on_interrupt: bool = False) -> RunOutcome:
    """Run the curation pipeline; raises ConfigError before any work on bad options, and
    Interrupted on Ctrl-C. exit_on_interrupt (the command line): a Ctrl-C the pipeline
    does not unwind from within INTERRUPT_GRACE_S, or a second one, cleans up and ends
    the process at once (exit 130)."""
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
    show = test_pipeline is None
    previous = None if cfg.force else completed_runs(cfg.output, cfg.outputs_hash)
    try:
        with _progress(cfg.run_id, show), (
                _stop_when_stuck(cfg) if exit_on_interrupt else contextlib.nullcontext()):
            if test_pipeline is not None or cfg.batch_videos == 0:
                one = _commit_pipeline(test_pipeline or beam.Pipeline(options=options), cfg,
                                       options, previous)
                outcome = dataclasses.replace(one, started_at=started)
            else:
                outcome = _run_in_batches(cfg, options, previous, started)
    except BaseException as e:
        if not is_interrupt(e):
            raise
        # Ctrl-C: the marker and the tally folder went with their context managers;
        # the downloads would never be read again (a rerun gets a folder of its own).
        _clean_scratch(cfg.output)
        if not cfg.fetch.keep_downloads:
            _remove_run_work(cfg.fetch)
        raise Interrupted(cfg.run_id, _committed_run_ids(cfg)) from None
    _clean_scratch(cfg.output)
    if not cfg.fetch.keep_downloads:
        _remove_run_work(cfg.fetch)
    return outcome


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; `committed` holds the run ids it had committed (batches
    done before it, or the run itself when the signal came after its commit)."""

    def __init__(self, run_id: str, committed: list[str]) -> None:
        super().__init__(run_id)
        self.run_id, self.committed = run_id, committed

    def __str__(self) -> str:
        if not self.committed:
            return "interrupted; nothing of this run was committed; rerun to resume"
        if self.committed == [self.run_id]:
            return f"interrupted after run {self.run_id} was committed; nothing was lost"
        n = len(self.committed)
        done = (self.committed[0] if n == 1
                else f"{self.committed[0]} … {self.committed[-1]}")
        return (f"interrupted; {n} batch{'es' if n > 1 else ''} of this run "
                f"({done}) committed, the batch in progress was not; rerun to resume")


def is_interrupt(e: BaseException) -> bool:
    """Ctrl-C, also as Beam's DirectRunner reports it from inside a transform: a
    RuntimeError("KeyboardInterrupt [while running 'Step']")."""
    return isinstance(e, KeyboardInterrupt) or (
        isinstance(e, RuntimeError) and str(e).startswith("KeyboardInterrupt"))


# How long a Ctrl-C may take to unwind the pipeline before the launcher ends itself.
INTERRUPT_GRACE_S = 10.0


@contextlib.contextmanager
def _stop_when_stuck(cfg: RunConfig) -> Iterator[None]:
    """A Ctrl-C raises KeyboardInterrupt wherever the main thread is, and Beam does not
    always unwind from there: one raised in a weakref callback of gc.collect() is
    printed and dropped (the run goes on), one raised inside a runner's lock can leave
    it waiting forever. So the first Ctrl-C also starts a timer, and that timer or a
    second Ctrl-C cleans up and ends the process as a kill would (the next run sweeps
    uncommitted shards). An interrupt that was swallowed is raised again at the end."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    timers: list[threading.Timer] = []

    def on_sigint(signum: int, frame: object) -> None:
        if timers:
            _exit_interrupted(cfg)
        timer = threading.Timer(INTERRUPT_GRACE_S, _exit_interrupted, (cfg,))
        timer.daemon = True
        timers.append(timer)
        timer.start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for timer in timers:
            timer.cancel()
    if timers:  # interrupted, but the interrupt got lost on the way
        raise KeyboardInterrupt


def _exit_interrupted(cfg: RunConfig) -> None:
    """End the process now: the run's downloads, its in-progress markers and its tally
    folder go (what the unwinding would have removed), then exit 130."""
    import glob
    import json
    import sys

    from vidcurate.transforms import progress

    with contextlib.suppress(Exception):
        if not cfg.fetch.keep_downloads:
            _remove_run_work(cfg.fetch)
        if is_local(cfg.output):
            active = os.path.join(cfg.output.removeprefix("file://"), ".active")
            for path in glob.glob(os.path.join(glob.escape(active), f"{cfg.run_id}*.json")):
                with contextlib.suppress(OSError, ValueError), open(path) as f:
                    if json.load(f).get("pid") == os.getpid():
                        os.unlink(path)
        if tally := os.environ.get(progress.ENV):
            shutil.rmtree(tally, ignore_errors=True)
        sys.stderr.write(f"\nvidcurate: {Interrupted(cfg.run_id, _committed_run_ids(cfg))}\n")
        sys.stderr.flush()
    os._exit(130)


def _committed_run_ids(cfg: RunConfig) -> list[str]:
    """This run's commits (its own runs row, or its batches'), found by name: run ids
    are never reused in one output."""
    import re

    try:
        found = FileSystems.match([f"{cfg.output}/runs/{cfg.run_id}*.parquet"])[0]
    except Exception:  # no runs folder yet, or an unreachable store: nothing to report
        return []
    mine = re.compile(re.escape(cfg.run_id) + r"(-b\d{5})?")
    names = (os.path.basename(m.path).removesuffix(".parquet") for m in found.metadata_list)
    return sorted(n for n in names if mine.fullmatch(n))


def _commit_pipeline(p: beam.Pipeline, cfg: RunConfig, options: PipelineOptions,
                     previous: list[str] | None, batch: Batch | None = None,
                     listed: ListedBatch | None = None, earlier_batches: tuple[str, ...] = ()
                     ) -> RunOutcome:
    """Build and run one pipeline (the whole run, or one batch of it: cfg.run_id is then
    the batch's), then commit it with its `runs` row."""
    from vidcurate.transforms.sinks import write_rows

    started = dt.datetime.now(dt.UTC)
    with in_progress(cfg.output, cfg.run_id) as check_still_ours:
        # Marked as in progress first, so that another run's sweep leaves this one be.
        remove_dead_runs(cfg.output, cfg.run_id)
        build(p, cfg, previous, listed, earlier_batches)
        result = _run_pipeline(p)
        outcome = RunOutcome(config=cfg, result=result, stages=stage_stats(result),
                             started_at=started, finished_at=dt.datetime.now(dt.UTC),
                             batch=batch, run_ids=[cfg.run_id])
        check_still_ours()
        # The runs row is written last: it is the commit marker that makes this run's
        # shards visible to the query views.
        write_rows(cfg.output, "runs", cfg.run_id, [runs_row(outcome, options, "complete")])
    return outcome


def _run_in_batches(cfg: RunConfig, options: PipelineOptions, previous: list[str] | None,
                    started: dt.datetime) -> RunOutcome:
    """List --input once, cut it into batches of cfg.batch_videos videos in listing
    order, and run and commit one pipeline per batch. Each batch is a run of its own in
    the tables (run id <run id>-bNNNNN, batch_of = the run id), so a run killed in batch
    7 leaves batches 1-6 committed and the next run's resume skips their videos. A
    listing that fits one batch runs as a plain run under the run id itself."""
    from vidcurate.transforms.core import private_dir
    from vidcurate.transforms.fetch_config import run_folder
    from vidcurate.transforms.manifest import listed_batches

    # The listing waits on disk, one file per batch, so the launcher holds one batch; as
    # JSON lines in the run's private folder, written and read without following links.
    folder = private_dir(os.path.join(run_folder(cfg.fetch), "listing"), what="run folder")
    try:
        count = 0
        for count, listed in enumerate(listed_batches(
                cfg.input, cfg.video_extensions, cfg.output, cfg.batch_videos,
                cfg.follow_symlinks), start=1):
            _write_lines(os.path.join(folder, f"{count:05d}.jsonl"), listed.to_lines())
        stages: dict[str, StageStats] = {}
        outcome = None
        run_ids = []
        for index in range(1, count + 1):
            listed = ListedBatch.from_lines(
                _read_lines(os.path.join(folder, f"{index:05d}.jsonl")))
            batch = Batch(cfg.run_id, index, count) if count > 1 else None
            if batch is not None:
                log.info("batch %d of %d (%s): %d videos", index, count, batch.run_id,
                         len(listed.sources))
            outcome = _commit_pipeline(
                beam.Pipeline(options=options),
                dataclasses.replace(cfg, run_id=batch.run_id) if batch else cfg,
                options, previous, batch, listed, tuple(run_ids))
            add_stats(stages, outcome.stages)
            run_ids.append(outcome.config.run_id)
            # A finished pipeline leaves reference cycles (its graph, the runner's state)
            # that the collector reaches only later: the next batch would start on top.
            gc.collect()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert outcome is not None  # listed_batches yields at least one batch
    return RunOutcome(config=cfg, result=outcome.result, stages=stages, started_at=started,
                      finished_at=outcome.finished_at, run_ids=run_ids)


def _write_lines(path: str, lines: Iterator[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def _read_lines(path: str) -> Iterator[str]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as f:
        yield from (line for line in f if line.strip())


def _run_pipeline(p: beam.Pipeline) -> PipelineResult:
    from vidcurate.transforms import progress

    result = p.run()
    result.wait_until_finish()
    progress.flush()
    return result


@contextlib.contextmanager
def _progress(run_id: str, show: bool) -> Iterator[None]:
    """Over the whole run (every batch): the stage counters' tally folder, and on a
    terminal a live status line from it."""
    import sys
    import tempfile

    from vidcurate.transforms import progress

    folder = tempfile.mkdtemp(prefix=f"vidcurate-progress-{run_id}-")
    previous = os.environ.get(progress.ENV)
    os.environ[progress.ENV] = folder  # worker processes inherit it
    progress.reset()
    try:
        with progress.Display(folder, sys.stderr) if show else contextlib.nullcontext():
            yield
    finally:
        if previous is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


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
