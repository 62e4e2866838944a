"""`vidcurate run` on a folder of good and bad files, then DuckDB over the output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.helpers import run_cli
from tests.support.media import ffmpeg, frame_at, same_frame
from vidcurate.pipeline.options import ConfigError
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import run
from vidcurate.transforms.media.probing import media_duration

WEIRD = "clip with spaces ünïcødé $(touch PWNED) ; & `id` 'q\".mp4"


@pytest.fixture(scope="module")
def input_folder(videos, tmp_path_factory) -> Path:
    # Brackets in the folder name: listed literally, not read as a glob pattern.
    d = tmp_path_factory.mktemp("inputs") / "Season [2019]"
    d.mkdir()
    shutil.copy(videos.cuts, d / "cuts.mp4")
    (d / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(videos.cuts30, d / "nested" / "deeper" / WEIRD)
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is a text file, not a video\n")
    data = videos.cuts.read_bytes()
    # moov atom at the end (ffmpeg's default): cut off, nothing can be read.
    (d / "truncated_head.mp4").write_bytes(data[: len(data) // 2])
    # moov atom up front: the index survives, the second half of the media does not.
    fast = d / "fast.tmp"
    ffmpeg("-i", str(videos.cuts), "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(fast))
    fdata = fast.read_bytes()
    (d / "truncated_tail.mp4").write_bytes(fdata[: len(fdata) // 2])
    fast.unlink()
    ffmpeg(
        "-f",
        "lavfi",
        "-t",
        "3",
        "-i",
        "sine=frequency=300",
        "-c:a",
        "aac",
        str(d / "audio_only.mp4"),
    )
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=25",
        "-frames:v",
        "1",
        "-pix_fmt",
        "yuv420p",
        str(d / "one_frame.mp4"),
    )
    (d / "readme.txt").write_text("not picked up: not a video extension")
    return d


EXPECTED_STATUS = {
    "cuts.mp4": "ok",
    WEIRD: "ok",
    "empty.mp4": "failed",
    "notes.mp4": "failed",
    "truncated_head.mp4": "failed",
    "truncated_tail.mp4": "ok",
    "audio_only.mp4": "skipped",
    "one_frame.mp4": "skipped",
}


@pytest.fixture(scope="module")
def copy_run(input_folder, tmp_path_factory, whisper_tiny_en):
    out = tmp_path_factory.mktemp("out") / "copy run"
    cwd = tmp_path_factory.mktemp("cwd")
    # Every stage on, ASR with the offline tiny.en: bad files meet all of them.
    proc = run_cli("run", "--input", str(input_folder), "--output", str(out), "--keyframes", "2",
                   "--no-clip", "--asr-model", str(whisper_tiny_en), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return out, proc, cwd


def _scalar(con, sql):
    return con.sql(sql).fetchall()[0][0]


def _rows(con, sql):
    rel = con.sql(sql)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def test_every_input_has_exactly_one_video_row(copy_run):
    out, proc, _ = copy_run
    con = connect(str(out))
    rows = _rows(con, "SELECT source_uri, status, reason FROM videos")
    by_name = {os.path.basename(r["source_uri"]): r for r in rows}
    assert len(rows) == len(by_name) == len(EXPECTED_STATUS)
    assert {n: r["status"] for n, r in by_name.items()} == EXPECTED_STATUS
    assert by_name["audio_only.mp4"]["reason"] == "probe: no video stream (streams: audio)"
    assert by_name["one_frame.mp4"]["reason"].startswith("clip_rules: the video is 0.04 s long")
    assert "empty" in by_name["empty.mp4"]["reason"]
    assert "decoder stopped" in by_name["truncated_tail.mp4"]["reason"]
    assert f"output: {out}" in proc.stdout and "cut_clips" in proc.stdout


def test_errors_carry_clear_messages(copy_run):
    out, _, _ = copy_run
    con = connect(str(out))
    errors = _rows(con, "SELECT * FROM errors ORDER BY source_uri")
    failed = _rows(con, "SELECT video_id FROM videos WHERE status = 'failed'")
    assert {e["video_id"] for e in errors} == {f["video_id"] for f in failed}
    messages = {
        os.path.basename(e["source_uri"]): (e["stage"], e["error_type"], e["message"])
        for e in errors
    }
    assert messages["empty.mp4"] == ("fetch", "empty_file", "the file is empty (0 bytes)")
    assert messages["notes.mp4"][:2] == ("probe", "probe_failed")
    assert "Invalid data found" in messages["notes.mp4"][2]
    assert "moov atom not found" in messages["truncated_head.mp4"][2]
    assert all(e["run_id"] and e["time"] for e in errors)


def test_weird_names_are_taken_literally(copy_run, input_folder):
    out, _, cwd = copy_run
    con = connect(str(out))
    row = _rows(con, "SELECT * FROM videos WHERE source_uri LIKE '%ünïcødé%'")[0]
    assert row["source_uri"] == str(input_folder / "nested" / "deeper" / WEIRD)
    assert row["clip_count"] == 3
    assert not list(Path(cwd).glob("PWNED")) and not list(input_folder.rglob("PWNED"))


def test_clip_ids_unique_and_stable_across_runs(copy_run, input_folder, tmp_path):
    out, _, _ = copy_run
    first = _rows(connect(str(out)), "SELECT clip_id, video_id, start_s FROM clips")
    assert (
        len(first)
        == len({r["clip_id"] for r in first})
        == 5
        + 3
        + len(
            _rows(
                connect(str(out)),
                "SELECT 1 FROM clips c JOIN videos v USING (video_id) "
                "WHERE v.source_uri LIKE '%truncated_tail%'",
            )
        )
    )
    second_out = tmp_path / "second"
    outcome = run(
        [
            "--no-clip", "--input",
            str(input_folder),
            "--output",
            str(second_out),
            "--keyframes",
            "0",
            "--no-ocr", "--no-asr",
            "--clip-media",
            "none",
        ]
    )
    second = _rows(connect(str(second_out)), "SELECT clip_id, video_id, start_s FROM clips")
    assert sorted(map(str, first)) == sorted(map(str, second))
    assert outcome.counter("cut_clips", "processed") == len(second)


def test_rerun_into_same_output_shows_each_clip_once(input_folder, tmp_path):
    out = tmp_path / "out"
    args = ["--input", str(input_folder), "--output", str(out), "--keyframes", "0", "--no-ocr",
            "--no-clip", "--no-asr"]
    first = run(args)
    second = run([*args, "--force"])  # redo everything: the latest complete run wins
    con = connect(str(out))
    n_clips = _scalar(con, "SELECT count(*) FROM clips")
    assert _scalar(con, "SELECT count(DISTINCT clip_id) FROM clips") == n_clips
    assert _scalar(con, "SELECT count(*) FROM clips_all") == 2 * n_clips
    assert _scalar(con, "SELECT count(*) FROM videos") == len(EXPECTED_STATUS)
    assert {r[0] for r in con.sql("SELECT DISTINCT run_id FROM clips").fetchall()} == {
        second.run_id
    }
    assert _scalar(con, "SELECT count(*) FROM runs") == 2
    assert first.run_id != second.run_id
    with pytest.raises(ConfigError, match="already used"):
        run([*args, "--run-id", first.run_id])
    # A run that died before committing (no runs row) stays invisible.
    for table in ("videos", "clips"):
        shard = pq.read_table(next((out / table).glob(f"{second.run_id}-*.parquet")))
        dead = shard.set_column(
            shard.schema.get_field_index("run_id"), "run_id", pa.array(["deadrun"] * shard.num_rows)
        )
        pq.write_table(dead, out / table / "deadrun-00000-of-00001.parquet")
    assert _scalar(connect(str(out)), "SELECT count(*) FROM clips") == n_clips


def test_copy_clips_span_within_keyframe_gap(copy_run):
    out, _, _ = copy_run
    con = connect(str(out))
    clips = _rows(
        con,
        "SELECT c.*, v.source_uri AS src FROM clips c JOIN videos v USING (video_id) "
        "WHERE v.source_uri LIKE '%cuts.mp4' ORDER BY start_s",
    )
    assert [c["start_s"] for c in clips] == [0.0, 3.0, 7.0, 10.0, 13.0]
    gap = 2.0  # the fixture has a keyframe every 2 s
    for c in clips:
        assert c["media_mode"] == "copy"
        assert c["start_s"] - gap <= c["media_start_s"] <= c["start_s"]
        assert abs(c["media_end_s"] - c["end_s"]) <= 2 / 25
        # The recorded media start is where the file really starts: its first frame is
        # the source frame at media_start_s.
        first = frame_at(c["media_uri"])
        assert same_frame(first, frame_at(c["src"], c["media_start_s"]))
        if c["media_start_s"] < c["start_s"]:  # started in the previous shot
            assert not same_frame(first, frame_at(c["src"], c["start_s"]))
        assert len(c["keyframe_uris"]) == 2 and all(os.path.exists(k) for k in c["keyframe_uris"])


def test_exact_clips_match_spans_within_one_frame(input_folder, tmp_path):
    out = tmp_path / "exact"
    src = input_folder / "cuts.mp4"
    run(["--input", str(src), "--output", str(out), "--clip-media", "exact", "--keyframes", "0",
         "--no-clip", "--no-ocr", "--no-asr"])
    clips = _rows(connect(str(out)), "SELECT * FROM clips ORDER BY start_s")
    assert len(clips) == 5
    for c in clips:
        assert abs(media_duration(c["media_uri"]) - c["duration_s"]) <= 1 / 25 + 1e-6
        # Frame-accurate: the clip opens on the first frame of its shot.
        assert same_frame(frame_at(c["media_uri"]), frame_at(src, c["start_s"]))


def test_tables_carry_schema_version_and_runs_row(copy_run):
    out, _, _ = copy_run
    for table in ("videos", "clips", "errors", "captions"):
        files = list((out / table).glob("*.parquet"))
        assert files, table
        assert pq.read_schema(files[0]).metadata[b"vidcurate.schema"].startswith(table.encode())
    run_row = _rows(connect(str(out)), "SELECT * FROM runs")[0]
    options = json.loads(run_row["options_json"])
    assert options["config"]["split"]["threshold"] == 25.0
    assert options["config"]["media"]["keyframes"] == 2
    # --device auto: where the models ran, and on a machine without a GPU (CI) why.
    import torch

    if torch.cuda.is_available():
        assert run_row["device"].startswith("cuda:0 (")
    else:
        assert run_row["device"] == "cpu"
        assert any(n.startswith("--device auto: no CUDA GPU") for n in run_row["notes"])
    versions = json.loads(run_row["versions_json"])
    assert {"vidcurate", "apache-beam", "scenedetect", "ffmpeg"} <= set(versions)
    counts = {(c["stage"], c["name"]): c["value"] for c in run_row["counts"]}
    assert counts[("probe", "failed")] == 2 and counts[("probe", "skipped")] == 1
    assert counts[("fetch", "failed")] == 1 and counts[("fetch", "processed")] == 7
    assert (
        counts[("cut_clips", "processed")]
        == _rows(connect(str(out)), "SELECT count(*) AS n FROM clips")[0]["n"]
    )


def test_query_formats_and_stats(copy_run, tmp_path):
    out, _, _ = copy_run
    sql = "SELECT clip_id, duration_s, keyframe_uris FROM clips ORDER BY clip_id"
    table = run_cli("query", str(out), sql)
    assert table.returncode == 0 and "clip_id" in table.stdout
    csv_out = run_cli("query", str(out), sql, "--format", "csv")
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0] == "clip_id,duration_s,keyframe_uris" and len(lines) > 5
    js = run_cli("query", str(out), sql, "--format", "json")
    first = json.loads(js.stdout.splitlines()[0])
    assert set(first) == {"clip_id", "duration_s", "keyframe_uris"}
    assert isinstance(first["keyframe_uris"], list)
    pq_path = tmp_path / "q.parquet"
    done = run_cli("query", str(out), sql, "--format", "parquet", "--out", str(pq_path))
    assert done.returncode == 0 and pq.read_table(pq_path).num_rows == len(lines) - 1
    bad = run_cli("query", str(out), "SELECT nope FROM clips")
    assert bad.returncode == 1 and "query failed" in bad.stderr
    stats = run_cli("stats", str(out))
    assert stats.returncode == 0
    assert "inputs" in stats.stdout and "top errors" in stats.stdout
    assert "probe_failed" in stats.stdout and "p50_s" in stats.stdout


def test_query_is_read_only(copy_run):
    out, _, _ = copy_run
    before = sorted(str(p) for p in out.rglob("*"))
    target = out / "videos" / "injected.parquet"
    for sql in (f"COPY (SELECT * FROM videos) TO '{target}' (FORMAT parquet)",
                "CREATE TABLE t AS SELECT 1", "SELECT 1; SELECT 2",
                "ATTACH 'x.db' AS x"):
        refused = run_cli("query", str(out), sql)
        assert refused.returncode == 1 and "query failed" in refused.stderr, sql
    assert sorted(str(p) for p in out.rglob("*")) == before
    ok = run_cli("query", str(out), "DESCRIBE SELECT * FROM clips", "--format", "csv")
    assert ok.returncode == 0 and "ocr_text" in ok.stdout


def test_configuration_errors_fail_fast(tmp_path):
    out = tmp_path / "never"
    bad = run_cli("run", "--no-clip", "--input", str(tmp_path / "nothing"), "--output", str(out))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    bad = run_cli(
        "run",
        "--no-clip", "--input",
        str(tmp_path),
        "--output",
        str(out),
        "--min-clip-s",
        "9",
        "--max-clip-s",
        "3",
    )
    assert bad.returncode == 2 and "--max-clip-s" in bad.stderr
    assert not out.exists()
    typo = run_cli("run", "--no-clip", "--input", str(tmp_path), "--output", str(out),
                   "--min-clips-s", "9")
    assert typo.returncode == 2 and "did you mean --min-clip-s" in typo.stderr
    assert not out.exists()
    # A GPU this machine does not have (CI has none at all) stops the run before the graph.
    no_gpu = run_cli("run", "--no-clip", "--input", str(tmp_path), "--output", str(out),
                     "--device", "cuda:99")
    assert no_gpu.returncode == 2 and "--device cuda:99: torch sees" in no_gpu.stderr
    assert not out.exists()
    help_text = run_cli("run", "--help")
    assert help_text.returncode == 0 and "--clip-media" in help_text.stdout
    missing = run_cli("query", str(tmp_path / "nope"), "SELECT 1")
    assert missing.returncode == 2 and "no vidcurate output" in missing.stderr


def test_multi_process_direct_runner_gives_the_same_clips(input_folder, copy_run, tmp_path):
    out = tmp_path / "mp"
    outcome = run(
        [
            "--no-clip", "--input",
            str(input_folder),
            "--output",
            str(out),
            "--keyframes",
            "0",
            "--no-ocr", "--no-asr",
            "--clip-media",
            "none",
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_processing",
        ]
    )
    copy_out, _, _ = copy_run
    sql = "SELECT clip_id FROM clips ORDER BY clip_id"
    assert _rows(connect(str(out)), sql) == _rows(connect(str(copy_out)), sql)
    assert _scalar(connect(str(out)), "SELECT count(*) FROM videos") == len(EXPECTED_STATUS)
    assert outcome.counter("probe", "processed") == 4


def test_rerun_resumes_skips_done_videos_and_retries_failed(input_folder, tmp_path):
    out = tmp_path / "out"
    args = ["--no-clip", "--input", str(input_folder), "--output", str(out), "--keyframes", "1",
            "--clip-media", "none", "--no-ocr", "--no-asr"]
    first = run(args)
    con = connect(str(out))
    before = con.sql("SELECT clip_id, run_id FROM clips ORDER BY clip_id").fetchall()
    statuses = dict(con.sql("SELECT status, count(*) FROM videos GROUP BY ALL").fetchall())
    done = statuses["ok"] + statuses["skipped"]
    assert first.counter("resume", "skipped") == 0

    # Same settings: done videos are left alone, failed ones are tried again.
    second = run(args)
    assert second.counter("resume", "skipped") == done
    assert second.counter("resume", "processed") == statuses["failed"]
    con = connect(str(out))
    assert con.sql("SELECT clip_id, run_id FROM clips ORDER BY clip_id").fetchall() == before
    assert dict(con.sql("SELECT status, count(*) FROM videos GROUP BY ALL").fetchall()) == \
        statuses
    assert {r for (r,) in con.sql("SELECT DISTINCT run_id FROM videos WHERE status = 'failed'"
                                  ).fetchall()} == {second.run_id}

    assert run([*args, "--no-retry-failed"]).counter("resume", "skipped") == len(
        EXPECTED_STATUS)
    assert run([*args, "--force"]).counter("resume", "skipped") == 0
    # Other settings, other outputs: nothing counts as done.
    assert run([*args, "--min-clip-s", "1.0"]).counter("resume", "skipped") == 0


def test_run_shows_live_progress_on_a_terminal_and_a_summary(videos, tmp_path):
    """On a terminal (a pty from `script`) a status line is redrawn; the summary of what
    this run made ends the output either way."""
    import shlex

    if not shutil.which("script"):
        pytest.fail("`script` (Debian bsdutils) is missing: it gives the test a terminal")
    exe = Path(sys.executable).parent / "vidcurate"
    cmd = shlex.join([str(exe), "run", "--input", str(videos.cuts), "--output",
                      str(tmp_path / "out"), "--no-clip", "--no-asr", "--no-ocr",
                      "--clip-media", "none", "--keyframes", "1"])
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    redraws = [part for part in proc.stdout.split("\r") if "fetched" in part]
    assert redraws and "clips 5" in redraws[-1] and "errors 0" in redraws[-1]
    assert "\ninputs\n" in proc.stdout.replace("\r", "") and "no errors" in proc.stdout
    plain = run_cli("run", "--no-clip", "--input", str(videos.cuts), "--output",
                    str(tmp_path / "plain"), "--no-asr", "--no-ocr", "--clip-media", "none",
                    "--keyframes", "1")
    assert plain.returncode == 0 and "\r" not in plain.stdout + plain.stderr
    assert "clips  clip_hours  captioned" in plain.stdout


def test_a_split_only_run_never_loads_the_model_stack(videos, tmp_path):
    """Cuts, clip files and keyframes need no model: such a run (split only: no CLIP, ASR,
    OCR or NSFW; and `vidcurate --help`)
    starts without torch and Beam's ML package, whose import alone took longer than
    the rest of a small run's start-up."""
    script = (
        "import sys\n"
        "from vidcurate.pipeline.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('LOADED', sorted(m for m in ('torch', 'apache_beam.ml.inference.base',"
        " 'open_clip', 'faster_whisper', 'rapidocr') if m in sys.modules))\n"
        "sys.exit(code)\n")
    proc = subprocess.run(
        [sys.executable, "-c", script, "run", "--input", str(videos.cuts), "--output",
         str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--no-clip",
         "--no-asr", "--no-ocr", "--no-nsfw", "--keyframes", "1"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout
    assert connect(str(tmp_path / "out")).sql("SELECT count(*) FROM clips").fetchall() == [(5,)]


def test_ctrl_c_exits_130_in_one_line_and_leaves_nothing_behind(tmp_path):
    """Ctrl-C mid-run (SIGINT once the run's work folder is there): one line, exit 130,
    no traceback, no work folder, no in-progress marker, no commit."""
    import signal
    import time

    from tests.support.media import Clip, make_cuts_video

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, source in enumerate(("testsrc2", "mandelbrot", "cellauto", "zoom")):
        make_cuts_video(inputs / f"v{i}.mp4", [Clip(source, 12)], audio=False)
    out, work = tmp_path / "out", tmp_path / "work"
    exe = Path(sys.executable).parent / "vidcurate"
    proc = subprocess.Popen(
        [str(exe), "run", "--input", str(inputs), "--output", str(out), "--work-dir",
         str(work), "--no-clip", "--no-asr", "--no-ocr", "--keyframes", "1",
         "--clip-media", "exact"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (work.is_dir() and any(work.iterdir())) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.5)  # into the pipeline's work
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.splitlines()[-1] == ("vidcurate: interrupted; nothing of this run was "
                                       "committed; rerun to resume")
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert list(work.iterdir()) == []  # no run-<id> folder
    assert not list(out.glob("runs/*.parquet")) and not (out / ".active").exists()


def test_cli_polish_runner_typos_unknown_commands_and_help_defaults(tmp_path):
    out = tmp_path / "never"
    typo = run_cli("run", "--input", str(tmp_path), "--output", str(out), "--runner",
                   "DirectRuner")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "unknown --runner DirectRuner: did you mean DirectRunner?" in typo.stderr
    beam = run_cli("run", "--input", str(tmp_path), "--output", str(out),
                   "--direct_num_worker", "2")
    assert beam.returncode == 2
    assert "unknown option --direct_num_worker: did you mean --direct_num_workers?" in \
        beam.stderr
    assert not out.exists()
    unknown = run_cli("runn")
    assert unknown.returncode == 2
    assert "unknown command 'runn'; did you mean `run`?" in unknown.stderr
    help_text = run_cli("run", "--help").stdout
    assert "clip (0 for none). (default: 3)" in help_text  # --keyframes
    assert "(default: mp4,m4v,mov" in help_text.replace("\n", " ")  # --video-extensions


def test_run_summary_names_the_failed_file_in_full(videos, tmp_path):
    """The error example shows which file failed, however long its path (the message
    is what gets shortened); Beam's note that no --runner was given stays out."""
    deep = (tmp_path / "in" / ("footage of the summer shoot, second unit, " * 2).strip()
            / "day 3")
    deep.mkdir(parents=True)
    shutil.copy(videos.cuts, deep / "good.mp4")
    broken = deep / "notes_from_the_shoot_that_are_not_a_video.mp4"
    broken.write_text("this is a text file, not a video\n")
    proc = run_cli("run", "--input", str(tmp_path / "in"), "--output",
                   str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--no-clip",
                   "--no-asr", "--no-ocr", "--clip-media", "none", "--keyframes", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    reasons = proc.stdout.split("top error reasons")[1]
    assert str(broken) in reasons and "ffprobe could not read the file" in reasons
    assert "Missing pipeline option" not in proc.stderr
