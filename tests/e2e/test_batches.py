"""A run in bounded batches (--batch-videos, for the in-memory DirectRunner) makes the
same rows as a run in one pass, counts the listing once, and a run killed after some
batches resumes after them without redoing them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import comparable_tables, run_cli
from tests.support.media import Clip, make_cuts_video
from vidcurate.pipeline.query import connect

# Split only: the batching is the launcher's, and every stage runs the same per batch.
ARGS = ["--no-clip", "--no-asr", "--no-ocr", "--keyframes", "1"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Five distinct tiny videos, a broken file, a copy of the first under another name,
    a row without a uri and the first video listed twice: with --batch-videos 2 the
    distinct sources a, b | c, broken | d, e | a-copy fall into four batches, so the
    copy meets its original across batches."""
    d = tmp_path_factory.mktemp("batch-corpus")
    pairs = [("testsrc2", "mandelbrot"), ("smpte", "cellauto"), ("zoom", "slate"),
             ("mandelbrot", "smpte"), ("cellauto", "testsrc2")]
    for name, (first, second) in zip("abcde", pairs, strict=True):
        make_cuts_video(d / f"{name}.mp4", [Clip(first, 2.6), Clip(second, 2.6)],
                        size=(128, 72), fps=15, audio=False, gop=15)
    (d / "broken.mp4").write_text("not a video")
    shutil.copy(d / "a.mp4", d / "a-copy.mp4")
    rows = ["uri", "a.mp4", "b.mp4", "  ", "a.mp4", "c.mp4", "broken.mp4", "d.mp4", "e.mp4",
            "a-copy.mp4"]
    (d / "manifest.csv").write_text("\n".join(rows) + "\n")
    return d / "manifest.csv"


def _run(manifest: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # A work folder of the test's own (a killed run leaves its folder behind).
    done = run_cli("run", "--input", str(manifest), "--output", str(out), "--work-dir",
                   f"{out}-work", *ARGS, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _tables(out: Path, without: str | None = None) -> dict[str, list[tuple]]:
    """comparable_tables, without the rows of the video whose source ends so."""
    left_out = [r[0] for r in connect(str(out)).sql(
        "SELECT video_id FROM videos_all WHERE source_uri LIKE '%/' || $name",
        params={"name": without}).fetchall()] if without else []
    return comparable_tables(out, left_out)


def _counts(out: Path) -> dict[tuple[str, str], int]:
    """Every counter summed over the runs rows of the output."""
    rows = connect(str(out)).sql(
        "SELECT c.stage, c.name, sum(c.value) FROM (SELECT unnest(counts) AS c FROM runs) "
        "GROUP BY ALL").fetchall()
    return {(stage, name): int(n) for stage, name, n in rows}


@pytest.fixture(scope="module")
def one_pass(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one-pass") / "out"
    _run(manifest, out, "--batch-videos", "0")
    return out


@pytest.fixture(scope="module")
def batched(manifest, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("batched") / "out"
    return out, _run(manifest, out, "--batch-videos", "2", "--run-id", "batched").stdout


def test_batched_run_makes_the_same_rows_as_one_pass(one_pass, batched):
    out, _ = batched
    reference = _tables(one_pass)
    assert _tables(out) == reference
    # What the comparison covers: every input has its row, the copy across batches is a
    # skipped duplicate of its original, and both error kinds are there.
    videos = {Path(r[1]).name: r for r in connect(str(out)).sql(
        "SELECT video_id, source_uri, status, reason FROM videos").fetchall()}
    assert sorted(videos) == ["a-copy.mp4", "a.mp4", "b.mp4", "broken.mp4", "c.mp4", "d.mp4",
                              "e.mp4"]
    assert videos["a-copy.mp4"][2] == "skipped"
    assert videos["a.mp4"][0] in videos["a-copy.mp4"][3]
    assert videos["broken.mp4"][2] == "failed"
    runs = connect(str(out)).sql(
        "SELECT run_id, batch_of, batch, batches FROM runs ORDER BY batch").fetchall()
    assert runs == [(f"batched-b{i:05d}", "batched", i, 4) for i in range(1, 5)]


def test_batched_run_counts_the_listing_once(one_pass, batched):
    """The unusable row is one error row and the duplicate listing one count, in one
    batch; summed over the batches' runs rows every counter is the one pass's."""
    out, stdout = batched
    con = connect(str(out))
    assert con.sql("SELECT batch, count(*) FROM errors_all e JOIN runs USING (run_id) "
                   "WHERE e.stage = 'manifest' GROUP BY ALL").fetchall() == [(1, 1)]
    counts = _counts(out)
    assert counts[("manifest", "duplicates")] == 1
    assert counts[("manifest", "failed")] == 1
    assert counts[("manifest", "processed")] == 8  # every usable row, the duplicate too
    assert counts == _counts(one_pass)
    # The CLI's summary covers the whole run, not its last batch.
    lines = stdout.splitlines()
    manifest_line = next(line.split() for line in lines if line.startswith("manifest "))
    assert manifest_line[1:4] == ["8", "0", "1"]
    inputs = lines[lines.index("inputs") + 3].split()
    assert inputs[:4] == ["7", "5", "1", "1"]  # inputs, ok, skipped, failed


def test_killed_batched_run_resumes_after_its_committed_batches(manifest, one_pass, tmp_path):
    """Killed while batch 3 runs: batches 1 and 2 stay committed, and the next run skips
    their videos (it redoes nothing of them) and ends with the one pass's rows. All but
    the copy of a: content dedup spans the batches of one run, and a is done by the
    killed run, so the copy is processed, as any rerun processes a new copy of a video
    an earlier run did."""
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "vidcurate"
    proc = subprocess.Popen(
        [str(exe), "run", "--input", str(manifest), "--output", str(out), "--work-dir",
         f"{out}-work", *ARGS, "--batch-videos", "2", "--run-id", "killed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    committed = out / "runs" / "killed-b00002.parquet"
    deadline = time.monotonic() + 240
    while not committed.exists():
        assert proc.poll() is None, "the run ended before its second batch was committed"
        assert time.monotonic() < deadline, "no second batch after 240 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    con = connect(str(out))
    assert con.sql("SELECT run_id FROM runs ORDER BY run_id").fetchall() == [
        ("killed-b00001",), ("killed-b00002",)]
    first_batches = dict(con.sql("SELECT video_id, status FROM videos").fetchall())
    assert sorted(first_batches.values()) == ["failed", "ok", "ok", "ok"]  # a, b | c, broken

    _run(manifest, out, "--batch-videos", "2", "--run-id", "resumed")
    con = connect(str(out))
    # The first two batches' done videos keep the killed run's rows: not fetched again;
    # the failed one is retried, as a rerun retries failed videos.
    now = dict(con.sql("SELECT video_id, run_id FROM videos").fetchall())
    for video_id, status in first_batches.items():
        assert now[video_id].startswith("resumed-" if status == "failed" else "killed-")
    fetched = dict(con.sql(
        "SELECT batch, c.value FROM (SELECT batch, unnest(counts) AS c FROM runs "
        "WHERE batch_of = 'resumed') WHERE c.stage = 'fetch' AND c.name = 'processed'"
    ).fetchall())
    assert (fetched.get(1, 0), fetched.get(2, 0)) == (0, 1)  # only the failed one
    assert sum(fetched.values()) == 4  # and d, e and the copy of a
    assert _tables(out, without="a-copy.mp4") == _tables(one_pass, without="a-copy.mp4")


def test_outputs_written_before_batches_still_query(tmp_path):
    """An output whose runs rows have no batch columns (schema < 9) opens, and its last
    run's listing errors stay in the errors view."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidcurate.schemas.tables import TABLES

    runs = TABLES["runs"]
    old = pa.schema([f for f in runs if f.name not in ("batch_of", "batch", "batches")])
    (tmp_path / "runs").mkdir()
    (tmp_path / "errors").mkdir()
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pq.write_table(pa.Table.from_pylist(
        [{"run_id": "old", "status": "complete", "started_at": at, "finished_at": at}],
        schema=old), tmp_path / "runs" / "old.parquet")
    pq.write_table(pa.Table.from_pylist(
        [{"run_id": "old", "stage": "manifest", "source_uri": "m.csv#row=3",
          "error_type": "bad_manifest_row", "message": "empty uri"}],
        schema=TABLES["errors"]), tmp_path / "errors" / "old-00000-of-00001.parquet")
    con = connect(str(tmp_path))
    assert con.sql("SELECT run_id, batch_of FROM runs").fetchall() == [("old", None)]
    assert con.sql("SELECT source_uri FROM errors").fetchall() == [("m.csv#row=3",)]


def test_report_and_dataset_card_show_a_batched_run_once(batched, tmp_path):
    """The report's runs and the published card's provenance list the run, not each of
    its batches."""
    from vidcurate.pipeline.publish import publish
    from vidcurate.pipeline.report import write_report

    out, _ = batched
    page = Path(write_report(str(out), str(tmp_path / "report"), 5)).read_text()
    publish(str(out), str(tmp_path / "published"), "clips", "none",
            allow_unknown_license=True)  # the manifest states no licences
    card = (tmp_path / "published" / "README.md").read_text()
    assert page.count("<b>batched</b>") == 1 and "<b>batched-b" not in page
    assert card.count("### Run `batched` (") == 1 and "### Run `batched-b" not in card


def test_live_progress_counts_every_batch(manifest, tmp_path):
    """On a terminal the status line keeps counting across batches: its last redraw
    shows the whole run's fetched videos and errors, not the last batch's."""
    import shlex

    if not shutil.which("script"):
        pytest.fail("`script` (Debian bsdutils) is missing: it gives the test a terminal")
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "vidcurate"
    cmd = shlex.join([str(exe), "run", "--input", str(manifest), "--output", str(out),
                      "--work-dir", f"{out}-work", *ARGS, "--batch-videos", "2"])
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    redraws = [part for part in proc.stdout.split("\r") if "fetched" in part]
    counts = _counts(out)
    errors = sum(n for (_, name), n in counts.items() if name == "failed")
    assert redraws and f"fetched {counts[('fetch', 'processed')]} " in redraws[-1]
    assert counts[("fetch", "processed")] == 7 and f"errors {errors}" in redraws[-1]
