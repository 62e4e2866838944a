"""`vidcurate publish` on an output that holds a superseded run and a run killed before
its commit: `datasets.load_dataset`, DuckDB's read_parquet and `vidcurate export` of the
published folder see exactly the current clips, each with its files; the next run over
the output deletes the killed run's shards; publish refuses a DEST that holds anything
and follows no media path out of the output."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.test_kill_resume import _kill, _wait_for, _waiting_on_a_fifo
from tests.support.helpers import run_cli
from vidcurate.pipeline.query import connect

COMMON = ["--no-clip", "--no-ocr", "--no-asr", "--teachers", "metadata", "--clip-media",
          "copy"]
LICENCES = {"cuts.mp4": "CC BY 4.0", "cuts30.mp4": "CC0"}
# `datasets` must find everything on disk: no hub (it reads these once, on import).
os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})


def _run(manifest: Path, out: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "vidcurate"
    # The test's own work folder (see test_kill_resume._cli).
    return subprocess.Popen([str(exe), "run", "--input", str(manifest), "--output", str(out),
                             "--work-dir", f"{out}-work", *COMMON, *extra],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _raw(out: Path, table: str) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/{table}/*.parquet', "
                      "union_by_name = true)").fetchall()[0][0]


@pytest.fixture(scope="module")
def output(videos, tmp_path_factory) -> Path:
    """Run 1 (one keyframe), run 2 (two keyframes: a changed output setting, so it
    redoes and supersedes every video), then run `killed` (three keyframes) killed once
    every table is written but before its runs row."""
    d = tmp_path_factory.mktemp("publish")
    manifest = d / "videos.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uri", "title", "license"])
        for name, licence in LICENCES.items():
            shutil.copy(getattr(videos, name.removesuffix(".mp4")), d / name)
            writer.writerow([str(d / name), f"test pattern {name}", licence])
    out = d / "out"
    assert _run(manifest, out, "--keyframes", "1").wait(timeout=300) == 0
    assert _run(manifest, out, "--keyframes", "2").wait(timeout=300) == 0
    proc = _run(manifest, out, "--keyframes", "3", "--run-id", "killed")
    fifo = out / "runs" / f"killed.parquet.tmp-{proc.pid}"
    os.mkfifo(fifo)  # holds the commit back (see test_kill_resume)
    _wait_for(lambda: all(list((out / t).glob("killed-*.parquet"))
                          for t in ("videos", "clips", "captions", "errors"))
              and _waiting_on_a_fifo(proc.pid), proc, "the killed run's shards")
    _kill(proc)
    fifo.unlink()
    fifo.write_bytes(b"PAR1 torn")  # what a kill in the middle of the commit leaves
    return out


@pytest.fixture(scope="module")
def current(output) -> dict[str, set]:
    """The current rows by the output's own views."""
    con = connect(str(output))
    current = {
        "clips": set(con.sql("SELECT clip_id, run_id FROM clips").fetchall()),
        "captions": set(con.sql("SELECT clip_id, teacher, text FROM captions").fetchall()),
        "videos": set(con.sql("SELECT video_id, run_id FROM videos").fetchall())}
    # The raw folder holds three runs' rows: a reader of the raw files gets them all.
    assert _raw(output, "clips") == 3 * len(current["clips"])
    assert len({r for _, r in current["clips"]}) == 1 and len(current["videos"]) == 2
    return current


@pytest.fixture(scope="module")
def published(output, current, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("published") / "shapes-dataset"
    proc = run_cli("publish", str(output), str(dest))
    assert proc.returncode == 0, proc.stderr
    assert f"published {len(current['clips'])} clips" in proc.stdout
    return dest


def _load(dest: Path, tmp_path: Path, *name: str):
    import datasets

    return datasets.load_dataset(str(dest), *name, split="train",
                                 cache_dir=str(tmp_path / "hf-cache"))


def test_load_dataset_sees_exactly_the_current_clips_with_their_files(published, current,
                                                                      tmp_path):
    clips = _load(published, tmp_path)
    assert len(clips) == len(current["clips"])
    assert {(c["clip_id"], c["run_id"]) for c in clips} == current["clips"]
    for clip in clips:
        # Paths relative to the published folder, to real copies (not links into OUT).
        media = published / clip["media_uri"]
        assert media.is_file() and not media.is_symlink() and media.stat().st_size > 0
        assert len(clip["keyframe_uris"]) == 2  # run 2's rows, not run 1's or the killed's
        assert all((published / k).is_file() for k in clip["keyframe_uris"])
    captions = _load(published, tmp_path, "captions")
    assert {(c["clip_id"], c["teacher"], c["text"]) for c in captions} == current["captions"]
    assert current["captions"]
    videos = _load(published, tmp_path, "videos")
    assert {(v["video_id"], v["run_id"]) for v in videos} == current["videos"]


def test_duckdb_and_export_of_the_published_folder_see_the_same_rows(published, current,
                                                                     tmp_path):
    rows = set(duckdb.sql(f"SELECT clip_id, run_id FROM read_parquet('{published}/clips/"
                          "*.parquet')").fetchall())
    assert rows == current["clips"]
    assert set(connect(str(published)).sql("SELECT clip_id, run_id FROM clips").fetchall()) \
        == current["clips"]
    proc = run_cli("export", str(published), str(tmp_path / "wds"))
    assert proc.returncode == 0, proc.stderr
    members = []
    for shard in sorted((tmp_path / "wds").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            members += tar.getnames()
    assert {m.split(".")[0] for m in members if m.endswith(".mp4")} == \
        {c for c, _ in current["clips"]}
    assert sum(m.endswith(".jpg") for m in members) == len(current["clips"])


def test_dataset_card_header_and_provenance(published, current, output):
    card = (published / "README.md").read_text()
    header = card.split("---")[1]
    assert "license:\n- cc-by-4.0\n- cc0-1.0\n" in header
    assert "size_categories:\n- n<1K\n" in header
    for table in ("clips", "captions", "videos"):
        assert f"- config_name: {table}\n" in header
        assert f"    path: {table}/*.parquet\n" in header
    assert header.index("default: true") < header.index("config_name: captions")
    # Provenance: the run the rows come from (not the superseded or the killed one).
    run_id = next(iter(current["clips"]))[1]
    assert f"### Run `{run_id}`" in card and "`killed`" not in card
    assert card.count("### Run `") == 1
    assert "caption teachers: metadata" in card and "CLIP: off" in card
    assert "| published (view `clips`) | " + str(len(current["clips"])) + " |" in card


def test_next_run_removes_the_killed_runs_shards_only(output, current, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(output, out, symlinks=True)
    committed = {t: sorted(p.name for p in (out / t).glob("*.parquet") if "killed" not in p.name)
                 for t in ("videos", "clips", "captions", "errors", "runs")}
    assert list((out / "clips").glob("killed-*.parquet"))
    manifest = output.parent / "videos.csv"
    # Run 2's options again: every video is done, so this run only sweeps and commits.
    assert _run(manifest, out, "--keyframes", "2").wait(timeout=300) == 0
    for table in ("videos", "clips", "captions", "errors", "runs"):
        left = sorted(p.name for p in (out / table).iterdir())
        assert not [n for n in left if n.startswith("killed")], (table, left)
        assert set(committed[table]) <= set(left)
    assert not (out / ".active").exists()  # no marker left by the run that swept
    con = connect(str(out))
    assert set(con.sql("SELECT clip_id, run_id FROM clips").fetchall()) == current["clips"]
    assert _raw(out, "clips") == 2 * len(current["clips"])  # runs 1 and 2; run 3 skipped


def test_refuses_a_dest_that_holds_anything(output, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    keep = dest / "notes.txt"
    keep.write_text("mine")
    proc = run_cli("publish", str(output), str(dest))
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert sorted(dest.iterdir()) == [keep] and keep.read_text() == "mine"
    proc = run_cli("publish", str(output), str(keep))
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    assert keep.read_text() == "mine"
    proc = run_cli("publish", str(output), str(output))
    assert proc.returncode == 2
    proc = run_cli("publish", str(tmp_path / "no-such-output"), str(tmp_path / "new"))
    assert proc.returncode == 2 and not (tmp_path / "new").exists()


def test_media_paths_that_leave_the_output_are_not_followed(output, tmp_path):
    """Clip rows whose paths lead out of the output (a path outside, a ../ path, a
    symlink inside the output to a file outside) publish with null paths; nothing
    outside the output is read."""
    out = tmp_path / "out"
    shutil.copytree(output, out, symlinks=True)
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    (out / "media" / "evil").mkdir()
    os.symlink(secret, out / "media" / "evil" / "link.mp4")
    con = connect(str(out))
    run_id = con.sql("SELECT DISTINCT run_id FROM clips").fetchall()[0][0]
    shards = sorted((out / "clips").glob(f"{run_id}-*.parquet"))
    table = pq.read_table(shards[0])
    hostile = [str(secret), f"{out}/media/../../secret.mp4", f"{out}/media/evil/link.mp4"]
    media = table.column("media_uri").to_pylist()
    frames = table.column("keyframe_uris").to_pylist()
    for i, path in enumerate(hostile[:len(media)]):
        media[i] = path
        frames[i] = [path]
    assert len(media) >= 2
    table = table.set_column(table.schema.get_field_index("media_uri"), "media_uri",
                             pa.array(media))
    table = table.set_column(table.schema.get_field_index("keyframe_uris"), "keyframe_uris",
                             pa.array(frames))
    pq.write_table(table, shards[0])
    dest = tmp_path / "dest"
    proc = run_cli("publish", str(out), str(dest), "--media", "link")
    assert proc.returncode == 0, proc.stderr
    hit = min(len(media), len(hostile))
    assert f"{2 * hit} referenced media files were not found inside the output" in proc.stderr
    rows = duckdb.sql(f"SELECT media_uri, keyframe_uris FROM read_parquet('{dest}/clips/"
                      "*.parquet') WHERE media_uri IS NULL").fetchall()
    assert len(rows) == hit and all(k == [] for _, k in rows)
    for path in dest.rglob("*"):
        if path.is_symlink():  # --media link: links into the output only
            assert os.path.realpath(path).startswith(os.path.realpath(out) + os.sep)
        assert path.name != "secret.mp4" and path.name != "link.mp4"
