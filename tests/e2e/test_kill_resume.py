"""A run killed (SIGKILL) at any point leaves nothing half-visible, and a rerun ends
with the same tables as a run that was never interrupted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.query import connect

ARGS = ["--keyframes", "1", "--clip-media", "copy", "--no-ocr", "--no-asr"]
# Columns that differ between runs by design (ids of runs, times, where files went).
VOLATILE = {"run_id", "time"}


@pytest.fixture(scope="module")
def corpus(videos, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for p in (videos.cuts, videos.cuts30, videos.long_shot, videos.fade, videos.vfr):
        shutil.copy(p, d / p.name)
    (d / "broken.mp4").write_text("not a video")
    return d


def _cli(corpus: Path, out: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "vidcurate"
    return subprocess.Popen([str(exe), "run", "--no-clip", "--input", str(corpus),
                             "--output", str(out), *ARGS], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _relative(value, out: str):
    """Paths under the output folder, made relative (outputs live in different folders)."""
    if isinstance(value, str):
        return value.replace(out, "<out>")
    if isinstance(value, list):
        return [_relative(v, out) for v in value]
    return value


def _tables(out: Path) -> dict[str, list[tuple]]:
    con = connect(str(out))
    tables = {}
    for name, key in (("videos", "video_id"), ("clips", "clip_id"),
                      ("errors", "video_id, stage, error_type")):
        rel = con.sql(f"SELECT * FROM {name} ORDER BY {key}")
        keep = [i for i, c in enumerate(rel.columns) if c not in VOLATILE]
        tables[name] = [tuple(_relative(row[i], str(out)) for i in keep)
                        for row in rel.fetchall()]
    return tables


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    assert _cli(corpus, out).wait(timeout=300) == 0
    return _tables(out)


@pytest.mark.parametrize("kill_after_s", [0.8, 2.5, 4.0])
def test_killed_run_then_rerun_equals_uninterrupted(corpus, reference, tmp_path, kill_after_s):
    out = tmp_path / "out"
    proc = _cli(corpus, out)
    time.sleep(kill_after_s)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ffmpeg children
    proc.wait(timeout=60)
    if kill_after_s < 1:
        assert killed  # the whole run takes several seconds: this one was cut off
    committed = (out / "runs").is_dir() and any((out / "runs").glob("*.parquet"))
    if killed and not committed and out.exists():
        # Cut off before its commit: whatever it wrote stays invisible.
        con = connect(str(out))
        assert con.sql("SELECT count(*) FROM videos").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM clips").fetchall() == [(0,)]
    rerun = _cli(corpus, out)
    assert rerun.wait(timeout=300) == 0
    tables = _tables(out)
    assert tables == reference
    con = connect(str(out))
    inputs = len(list(corpus.iterdir()))
    assert con.sql("SELECT count(*), count(DISTINCT video_id) FROM videos").fetchall() == [
        (inputs, inputs)]
    n, distinct = con.sql("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchall()[0]
    assert n == distinct


def test_rerun_with_nothing_new_does_no_model_work(videos, whisper_tiny_en, tmp_path):
    from pipeline.run import run

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
    from pipeline.run import run

    out = tmp_path / "mp"
    run(["--input", str(corpus), "--output", str(out), *ARGS, "--direct_num_workers", "2",
         "--no-clip", "--direct_running_mode", "multi_processing"])
    assert _tables(out) == reference


def test_dask_runner_gives_identical_tables(corpus, reference, tmp_path):
    """Beam's DaskRunner on a 2-worker dask.distributed LocalCluster: the same tables as
    DirectRunner in-memory. (Model stages are refused on Dask: see the next test.)"""
    from distributed import Client, LocalCluster

    from pipeline.run import run

    out = tmp_path / "dask"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        run(["--input", str(corpus), "--output", str(out), *ARGS, "--no-clip",
             "--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address])
    assert _tables(out) == reference


def test_model_stages_are_refused_on_dask(corpus, tmp_path):
    from pipeline.options import ConfigError
    from pipeline.run import run

    with pytest.raises(ConfigError, match="--no-asr --no-clip"):
        run(["--input", str(corpus), "--output", str(tmp_path / "o"), "--no-ocr",
             "--no-clip", "--runner", "DaskRunner", "--dask_client_address", "127.0.0.1:1"])
    assert not (tmp_path / "o").exists()
