"""`vidcurate query` is read-only: statements are checked by their parsed type (EXPLAIN
included), and the DuckDB it runs on reads nothing but the output, reaches no network,
installs and loads no extension, and keeps its settings locked."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.helpers import run_cli
from vidcurate.pipeline.query import NotReadOnly, connect, query
from vidcurate.schemas.tables import TABLES, table_schema

SECRET = "canary-secret-7f3a"
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
# Two videos with two clips each; v0/c0 and v1/c0 point the same way.
EMBEDDINGS = {("v0", 0): [1.0, 0.0, 0.0, 0.0], ("v0", 1): [0.0, 1.0, 0.0, 0.0],
              ("v1", 0): [2.0, 0.1, 0.0, 0.0], ("v1", 1): [0.0, 0.0, 1.0, 0.0]}


def _write(out: Path, table: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    (out / table).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema or TABLES[table]),
                   out / table / "part-0.parquet")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DuckDB keeps installed extensions under $HOME/.duckdb: a private, empty one."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture
def out(tmp_path: Path, home: Path) -> Path:
    """A small complete output, and secrets beside it that a query must not reach."""
    out = tmp_path / "out"
    _write(out, "runs", [dict(run_id="r1", status="complete", started_at=NOW, finished_at=NOW)])
    _write(out, "videos", [dict(video_id=v, source_uri=f"file:///{v}.mp4", status="ok",
                                duration_s=10.0, run_id="r1") for v in ("v0", "v1")])
    _write(out, "clips", [dict(clip_id=f"{v}/c{i}", video_id=v, source_uri=f"file:///{v}.mp4",
                               clip_index=i, duration_s=3.0 + i, clip_embedding=e, run_id="r1")
                          for (v, i), e in EMBEDDINGS.items()], table_schema("clips", 4))
    _write(out, "captions", [dict(clip_id=f"{v}/c{i}", video_id=v, teacher="metadata",
                                  text=f"about {v} {i}", selected=True, run_id="r1")
                             for v, i in EMBEDDINGS])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text(SECRET + "\n")
    (outside / "canary.csv").write_text(f"secret\n{SECRET}\n")
    pq.write_table(pa.table({"secret": [SECRET]}), outside / "canary.parquet")
    (out / "link.txt").symlink_to(outside / "canary.txt")  # inside the output, points out
    return out


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _run(out: Path, sql: str) -> list[tuple]:
    rel = query(str(out), sql)
    return rel.fetchall() if rel is not None else []


@pytest.mark.parametrize("sql", [
    "EXPLAIN ANALYZE COPY (SELECT * FROM videos WHERE false) TO '{shard}' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{out}/clips/new.parquet' (FORMAT parquet)",
    "EXPLAIN (ANALYZE) COPY (SELECT * FROM clips) TO '{outside}/leak.csv'",
    "/* a */ explain /* b */ analyze -- c\n copy (select 1) to '{outside}/leak.csv'",
    "EXPLAIN (FORMAT json, ANALYZE) COPY (SELECT 1) TO '{outside}/leak.csv'",
])
def test_explain_analyze_of_copy_is_refused_and_writes_nothing(out, sql):
    shard = out / "videos" / "part-0.parquet"
    before = _contents(out)
    with pytest.raises(NotReadOnly, match="COPY"):
        _run(out, sql.format(shard=shard, out=out, outside=out.parent / "outside"))
    assert _contents(out) == before  # the shard is byte-identical, nothing added
    assert not (out.parent / "outside" / "leak.csv").exists()


@pytest.mark.parametrize("sql", [
    "COPY (SELECT * FROM videos) TO '{outside}/leak.parquet' (FORMAT parquet)",
    "ATTACH '{outside}/new.db' AS x",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "PRAGMA enable_profiling",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT 1; SET lock_configuration = false",
    "SELECT 1; COPY (SELECT 1) TO '{outside}/leak.parquet'",
])
def test_statements_that_write_or_reconfigure_are_refused_twice(out, home, sql):
    outside = out.parent / "outside"
    sql = sql.format(outside=outside)
    before = _contents(out), sorted(outside.iterdir())
    with pytest.raises(NotReadOnly):
        _run(out, sql)
    # The statement check is one guard; the sandboxed connection that query() runs on
    # refuses the same statements by itself.
    with pytest.raises(duckdb.Error, match="disabled|locked"):
        connect(str(out), sandbox=True).execute(sql)
    assert (_contents(out), sorted(outside.iterdir())) == before
    assert not (home / ".duckdb").exists()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_text('{outside}/canary.txt')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('{outside}/canary.txt')",
    "SELECT * FROM read_csv('{outside}/canary.csv')",
    "SELECT * FROM read_parquet('{outside}/canary.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM glob('{outside}/*')",
    "SELECT * FROM read_text('{out}/../outside/canary.txt')",  # climbing out
    "SELECT * FROM read_text('{out}/link.txt')",  # a symlink in the output to a file outside
])
def test_files_outside_the_output_cannot_be_read(out, sql):
    with pytest.raises(duckdb.PermissionException) as refused:
        _run(out, sql.format(out=out, outside=out.parent / "outside"))
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("where", ["beside", "elsewhere"])
def test_nothing_in_the_current_directory_is_readable(out, tmp_path, monkeypatch, where):
    """DuckDB allows its temp folder, by default `.tmp` in the current directory: the
    sandbox spills into a private folder instead, whatever the cwd."""
    cwd = out.parent if where == "beside" else tmp_path / "elsewhere"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "k").write_text(SECRET)
    monkeypatch.chdir(cwd)
    for sql in ("SELECT * FROM read_text('.tmp/k')", "SELECT * FROM glob('.tmp/*')",
                f"SELECT * FROM read_text('{cwd}/.tmp/k')", "SELECT * FROM glob('*')"):
        with pytest.raises(duckdb.PermissionException) as refused:
            _run(out, sql)
        assert SECRET not in str(refused.value)
    (allowed,), = _run(out, "SELECT current_setting('allowed_directories')")
    assert f"{out}/" in allowed
    for folder in allowed:  # the rest: the private spill folder, made for this connection
        if folder != f"{out}/":
            assert not folder.startswith(f"{cwd}/") and "vidcurate-query-" in folder


@pytest.mark.parametrize("sql", ["SELECT * FROM sniff_csv('/etc/passwd')",
                                 "SELECT * FROM duckdb_extensions()",
                                 "SELECT * FROM read_text('/etc/passwd')"])
@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_a_refused_function_is_one_line_and_exit_2(out, tmp_path, capsys, sql, fmt):
    """Some functions are refused only once the query runs (sniff_csv,
    duckdb_extensions): the CLI says so in one line, as for those refused at bind time."""
    from vidcurate.pipeline.cli import main

    target = tmp_path / "rows.csv"
    assert main(["query", str(out), sql, "--format", fmt,
                 *(["--out", str(target)] if fmt == "csv" else [])]) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("vidcurate: query refused: Permission Error")
    assert printed.err.count("\n") == 1 and "Traceback" not in printed.err
    assert printed.out == "" and not target.exists()  # no half-written result


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x.parquet", "https://127.0.0.1:9/x.csv"])
def test_a_network_read_fails_fast_and_installs_no_extension(out, home, url):
    reader = "read_parquet" if url.endswith(".parquet") else "read_csv"
    started = time.monotonic()
    with pytest.raises(duckdb.PermissionException) as refused:
        _run(out, f"SELECT * FROM {reader}('{url}')")
    assert time.monotonic() - started < 5
    assert "install" not in str(refused.value).lower()
    assert not (home / ".duckdb").exists()  # no extension directory was made


def test_analytics_over_the_views_run_inside_the_sandbox(out):
    assert _run(out, "SELECT current_setting('enable_external_access'), "
                     "current_setting('lock_configuration')") == [(False, True)]
    assert _run(out, """
        SELECT v.video_id, count(*), sum(c.duration_s)
        FROM clips c JOIN videos v USING (video_id) JOIN captions k USING (clip_id)
        GROUP BY ALL ORDER BY 1""") == [("v0", 2, 7.0), ("v1", 2, 7.0)]
    nearest = _run(out, """
        SELECT a.clip_id, b.clip_id,
               round(array_cosine_similarity(a.clip_embedding, b.clip_embedding), 3) AS sim
        FROM clips a JOIN clips b ON a.clip_id < b.clip_id ORDER BY sim DESC LIMIT 1""")
    assert nearest == [("v0/c0", "v1/c0", pytest.approx(0.999))]
    assert _run(out, """
        SELECT clip_id, row_number() OVER (PARTITION BY video_id ORDER BY duration_s DESC)
        FROM clips_all ORDER BY clip_id""") == [("v0/c0", 2), ("v0/c1", 1),
                                               ("v1/c0", 2), ("v1/c1", 1)]
    described = dict((r[0], r[1]) for r in _run(out, "DESCRIBE clips"))
    assert described["clip_embedding"] == "FLOAT[4]"
    plan = _run(out, "EXPLAIN ANALYZE SELECT count(*) FROM clips")
    assert plan[0][0] == "analyzed_plan"


def test_cli_exports_write_the_named_file_and_sql_writes_none(out, home, tmp_path):
    env = {"HOME": str(home)}
    exports = tmp_path / "exports"
    exports.mkdir()
    sql = "SELECT clip_id, clip_embedding FROM clips ORDER BY clip_id"
    for fmt in ("csv", "json", "parquet"):
        done = run_cli("query", str(out), sql, "--format", fmt, "--out",
                       str(exports / f"clips.{fmt}"), env=env)
        assert done.returncode == 0, done.stderr
    with open(exports / "clips.csv", newline="") as f:
        assert list(csv.reader(f))[:2] == [["clip_id", "clip_embedding"],
                                           ["v0/c0", "[1.0, 0.0, 0.0, 0.0]"]]
    rows = [json.loads(line) for line in (exports / "clips.json").read_text().splitlines()]
    assert rows[0] == {"clip_id": "v0/c0", "clip_embedding": [1.0, 0.0, 0.0, 0.0]}
    assert pq.read_table(exports / "clips.parquet").num_rows == 4

    before = _contents(out)
    leak = exports / "leak.csv"
    written = run_cli("query", str(out), f"EXPLAIN ANALYZE COPY (SELECT * FROM clips) TO '{leak}'",
                      env=env)
    assert written.returncode == 1 and "query failed" in written.stderr
    read = run_cli("query", str(out), f"SELECT * FROM read_text('{out.parent}/outside/canary.txt')",
                   "--format", "csv", env=env)
    assert read.returncode == 2 and "query refused" in read.stderr
    assert SECRET not in read.stdout + read.stderr
    assert not leak.exists() and _contents(out) == before
    assert sorted(os.listdir(exports)) == ["clips.csv", "clips.json", "clips.parquet"]
