"""A run killed (SIGKILL) at any point leaves nothing half-visible, and a rerun ends
with the same tables as a run that was never interrupted. The kills are timed by events
in the output folder, not by the clock: at the first shard of any table, and once every
table is written but the `runs` row (the commit) is not."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.helpers import VOLATILE_COLUMNS, comparable_tables
from vidcurate.pipeline.query import connect

ARGS = ["--keyframes", "1", "--clip-media", "copy", "--no-ocr", "--no-asr"]
# Columns that differ between runs by design (ids of runs, times, where files went).
# The tables the pipeline writes; `runs` is written by the launcher, last.
TABLES = ("videos", "clips", "errors", "captions")


@pytest.fixture(scope="module")
def corpus(videos, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for p in (videos.cuts, videos.cuts30, videos.long_shot, videos.fade, videos.vfr):
        shutil.copy(p, d / p.name)
    (d / "broken.mp4").write_text("not a video")
    return d


def _cli(source: Path, out: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "vidcurate"
    # A work folder of the test's own: a killed run leaves its folder (and frame sample)
    # behind, which refuses a later run of the same --run-id in the same --work-dir.
    return subprocess.Popen([str(exe), "run", "--no-clip", "--input", str(source),
                             "--output", str(out), "--work-dir", f"{out}-work", *ARGS, *extra],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    assert _cli(corpus, out).wait(timeout=300) == 0
    return comparable_tables(out)


def _shards(out: Path, run_id: str = "") -> dict[str, list[str]]:
    """Each table's Parquet shards (of one run, when given); temporary files excluded."""
    return {t: sorted(p.name for p in (out / t).glob(f"{run_id}*.parquet"))
            for t in (*TABLES, "runs")}


def _wait_for(event: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll the output fast until the event, failing if the run ends first."""
    deadline = time.monotonic() + 120  # an uninterrupted run takes ~10 s
    while not event():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after 120 s"
        time.sleep(0.002)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ffmpeg children
    proc.wait(timeout=60)


def _waiting_on_a_fifo(pid: int) -> bool:
    """Whether the process sleeps opening a FIFO that has no reader (Linux names that
    wait `wait_for_partner`). True without /proc: the FIFO holds the commit back anyway,
    the kill then comes somewhere between the last shard and the commit."""
    wchan = Path(f"/proc/{pid}/wchan")
    if not Path("/proc/self").exists():
        return True
    try:
        return wchan.read_text().strip() == "wait_for_partner"
    except OSError:
        return False


def _rerun_equals_reference(corpus: Path, out: Path, reference) -> None:
    rerun = _cli(corpus, out)
    assert rerun.wait(timeout=300) == 0
    assert comparable_tables(out) == reference
    con = connect(str(out))
    inputs = len(list(corpus.iterdir()))
    assert con.sql("SELECT count(*), count(DISTINCT video_id) FROM videos").fetchall() == [
        (inputs, inputs)]
    n, distinct = con.sql("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchall()[0]
    assert n == distinct


def test_killed_at_its_first_shard_then_rerun_equals_uninterrupted(corpus, reference,
                                                                    tmp_path):
    out = tmp_path / "out"
    proc = _cli(corpus, out)
    _wait_for(lambda: any(_shards(out)[t] for t in TABLES), proc, "a first shard")
    _kill(proc)
    written = _shards(out)
    assert written["runs"] == [], "a runs row before the tables were written"
    # Shards of the killed run are on disk, and none of their rows is visible.
    assert any(written[t] for t in TABLES)
    assert comparable_tables(out) == {"videos": [], "clips": [], "errors": []}
    _rerun_equals_reference(corpus, out, reference)


def test_killed_just_before_its_commit_then_rerun_equals_uninterrupted(corpus, reference,
                                                                       tmp_path):
    out = tmp_path / "out"
    # A complete run over one of the videos first: the state the killed run must leave.
    assert _cli(corpus / "cuts.mp4", out).wait(timeout=300) == 0
    before = comparable_tables(out)
    assert len(before["videos"]) == 1 and before["clips"]
    proc = _cli(corpus, out, "--run-id", "killed")
    # The launcher writes its runs row to <run_id>.parquet.tmp-<pid>, then renames it
    # (transforms/sinks.py _put). A FIFO in that place holds the commit back: opening
    # it for writing waits for a reader, and the test kills the run meanwhile.
    fifo = out / "runs" / f"killed.parquet.tmp-{proc.pid}"
    os.mkfifo(fifo)
    _wait_for(lambda: all(_shards(out, "killed-")[t] for t in TABLES)
              and _waiting_on_a_fifo(proc.pid), proc, "every table's shards and the commit")
    _kill(proc)
    assert _shards(out, "killed")["runs"] == []
    # Every table of the killed run is on disk; the views still show the earlier run only.
    assert comparable_tables(out) == before
    assert connect(str(out)).sql("SELECT count(*) FROM runs").fetchall() == [(1,)]
    fifo.unlink()
    fifo.write_bytes(b"PAR1 torn")  # what a kill in the middle of the write leaves
    _rerun_equals_reference(corpus, out, reference)


def test_rerun_with_nothing_new_does_no_model_work(videos, whisper_tiny_en, tmp_path):
    from vidcurate.pipeline.run import run

    shutil.copy(videos.cuts, tmp_path / "cuts.mp4")
    args = ["--no-clip", "--input", str(tmp_path / "cuts.mp4"), "--output", str(tmp_path / "out"),
            "--asr-model", str(whisper_tiny_en), "--clip-media", "none", "--keyframes", "1"]
    first = run(args)
    assert first.counter("asr", "processed") == 1 and first.counter("ocr", "processed") == 5
    again = run(args)
    assert again.counter("resume", "skipped") == 1
    for stage in ("fetch", "probe", "detect_scenes", "cut_clips", "ocr", "asr"):
        assert again.counter(stage, "processed") == 0, stage
    # RunInference's own count of model calls.
    assert again.counter("asr_model", "num_inferences") == 0
    assert first.counter("asr_model", "num_inferences") == 1


def test_multi_processing_gives_identical_tables(corpus, reference, tmp_path):
    """DirectRunner in-memory (the reference) and multi_processing with 2 workers."""
    from vidcurate.pipeline.run import run

    out = tmp_path / "mp"
    run(["--input", str(corpus), "--output", str(out), *ARGS, "--direct_num_workers", "2",
         "--no-clip", "--direct_running_mode", "multi_processing"])
    assert comparable_tables(out) == reference


def test_dask_runner_gives_identical_tables(corpus, reference, tmp_path):
    """Beam's DaskRunner (ours: pipeline/dask_runner.py) on a 2-worker dask.distributed
    LocalCluster: the same tables as DirectRunner in-memory."""
    from distributed import Client, LocalCluster

    from vidcurate.pipeline.run import run

    out = tmp_path / "dask"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        run(["--input", str(corpus), "--output", str(out), *ARGS, "--no-clip",
             "--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address])
    assert comparable_tables(out) == reference


# Whisper's numbers, which move by a 20 ms step between processes: faster-whisper's
# features go through numpy's BLAS, whose sums follow its thread count (Dask starts its
# workers with OMP_NUM_THREADS=1). The words themselves must match.
WHISPER_TOLERANCE = {"start": 0.021, "end": 0.021, "probability": 0.02, "avg_logprob": 0.02,
                     "no_speech_prob": 0.02, "compression_ratio": 0.02}


def _difference(a, b, where: str = "") -> str | None:
    """Where a and b differ, or None. Other floats match to 1e-5: CLIP's batches differ
    between runners (RunInference's BatchElements, a GroupByKey on Dask), and a batched
    matmul rounds differently in the last bits."""
    if isinstance(a, float) and isinstance(b, float):
        tolerance = WHISPER_TOLERANCE.get(where.rsplit(".", 1)[-1], 1e-6)
        return None if math.isclose(a, b, rel_tol=1e-5, abs_tol=tolerance) \
            else f"{where}: {a} != {b}"
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b, strict=True))
                     if (d := _difference(x, y, f"{where}[{i}]"))), None)
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a if (d := _difference(a[k], b[k], f"{where}.{k}"))), None)
    return None if a == b else f"{where}: {a!r} != {b!r}"


def _model_tables(out: Path) -> dict[str, list]:
    tables = comparable_tables(out)
    con = connect(str(out))
    rel = con.sql("SELECT * FROM captions ORDER BY clip_id, teacher, text")
    keep = [i for i, c in enumerate(rel.columns) if c not in VOLATILE_COLUMNS]
    tables["captions"] = [tuple(row[i] for i in keep) for row in rel.fetchall()]
    return tables


def test_model_stages_give_the_same_tables_on_every_runner(videos, speech, clip_args,
                                                           whisper_tiny_en, tmp_path):
    """Stitching, ASR, embeddings and caption scoring (tiny CLIP, Whisper tiny.en) on
    DirectRunner in-memory, multi_processing with 2 workers, and Dask with 2 workers."""
    from distributed import Client, LocalCluster

    from vidcurate.pipeline.run import run

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(videos.cuts, corpus / "cuts.mp4")
    shutil.copy(speech.video, corpus / "speech.mp4")
    (corpus / "broken.mp4").write_text("not a video")
    args = ["--input", str(corpus), "--keyframes", "2", "--clip-media", "none", "--no-ocr",
            "--asr-model", str(whisper_tiny_en), *clip_args]
    run([*args, "--output", str(tmp_path / "direct")])
    reference = _model_tables(tmp_path / "direct")
    con = connect(str(tmp_path / "direct"))
    # The comparison covers real model output: transcripts, embeddings, scored captions.
    assert con.sql("SELECT count(*) FROM clips WHERE transcript <> '' AND clip_embedding "
                   "IS NOT NULL").fetchall()[0][0] >= 1
    assert con.sql("SELECT count(DISTINCT teacher) FROM captions WHERE clip_score IS NOT "
                   "NULL").fetchall()[0][0] >= 2
    assert len(reference["errors"]) == 1
    run([*args, "--output", str(tmp_path / "mp"), "--direct_num_workers", "2",
         "--direct_running_mode", "multi_processing"])
    assert _difference(_model_tables(tmp_path / "mp"), reference) is None
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        run([*args, "--output", str(tmp_path / "dask"), "--runner", "DaskRunner",
             "--dask_client_address", cluster.scheduler_address])
    assert _difference(_model_tables(tmp_path / "dask"), reference) is None
