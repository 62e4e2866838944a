"""WriteTable: rows spread over shards sized by the row count, each row once, the same
files from the same rows; an empty table still gets one readable shard."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from vidcurate.schemas.records import ErrorRecord
from vidcurate.transforms.sinks import CountAll, WriteTable


def _errors(n: int) -> list[ErrorRecord]:
    # A fixed time: rows pick their shard by a hash of their content.
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [ErrorRecord(stage="probe", source_uri=f"/v/{i}.mp4", error_type="probe_failed",
                        message=f"bad {i}", run_id="r1", video_id=f"v{i:03d}", time=when)
            for i in range(n)]


def _the_files_in(folder: Path) -> Callable[[list[str]], None]:
    """A matcher: the paths WriteTable reports are exactly the Parquet files in folder.
    It raises, since Beam ignores what a matcher returns; it runs once every shard is
    written (it reads the Write step's whole output)."""
    def match(paths: list[str]) -> None:
        on_disk = sorted(str(f) for f in folder.glob("*.parquet"))
        if sorted(paths) != on_disk:
            raise BeamAssertException(f"WriteTable reported {sorted(paths)}, "
                                      f"{folder} holds {on_disk}")
    return match


def _write(records: list[ErrorRecord], out: Path, per_shard: int) -> list[str]:
    with TestPipeline() as p:
        written = (p | beam.Create(records)
                   | WriteTable(str(out), "errors", "r1", rows_per_shard=per_shard))
        assert_that(written, _the_files_in(out / "errors"))
    return sorted(f.name for f in (out / "errors").iterdir())


def test_the_written_paths_matcher_can_fail(tmp_path):
    (tmp_path / "r1-00000-of-00001.parquet").write_bytes(b"")
    _the_files_in(tmp_path)([str(tmp_path / "r1-00000-of-00001.parquet")])
    with pytest.raises(BeamAssertException):
        _the_files_in(tmp_path)([str(tmp_path.parent / "videos" / "r1-00000-of-00001.parquet")])
    with pytest.raises(BeamAssertException):
        _the_files_in(tmp_path)([])


def test_shards_follow_the_row_count_and_hold_each_row_once(tmp_path):
    records = _errors(10)
    files = _write(records, tmp_path / "a", per_shard=3)
    # 10 rows at 3 per shard: 4 shards (a shard no row hashed to has no file).
    assert len(files) >= 2
    assert set(files) <= {f"r1-{i:05d}-of-00004.parquet" for i in range(4)}
    tables = [pq.read_table(tmp_path / "a" / "errors" / f) for f in files]
    ids = [v for t in tables for v in t.column("video_id").to_pylist()]
    assert sorted(ids) == [r.video_id for r in records]
    for t in tables:  # sorted within a shard, so reruns write the same bytes
        rows = t.to_pylist()
        assert rows == sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    again = _write(list(reversed(records)), tmp_path / "b", per_shard=3)
    assert again == files
    for f in files:
        assert (pq.read_table(tmp_path / "a" / "errors" / f)
                == pq.read_table(tmp_path / "b" / "errors" / f))


def test_an_empty_table_gets_one_empty_shard(tmp_path):
    files = _write([], tmp_path, per_shard=3)
    assert files == ["r1-00000-of-00001.parquet"]
    table = pq.read_table(tmp_path / "errors" / files[0])
    assert table.num_rows == 0 and "video_id" in table.schema.names


def test_count_all_counts_and_gives_zero_for_nothing():
    with TestPipeline() as p:
        assert_that(p | "Some" >> beam.Create(range(7)) | "CountSome" >> CountAll(),
                    equal_to([7]), label="some")
        assert_that(p | "None" >> beam.Create([]) | "CountNone" >> CountAll(),
                    equal_to([0]), label="none")
