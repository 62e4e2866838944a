"""WriteTables: Parquet shards under <output>/<table>/, each with its schema from schemas/.

Shards are named after the run (``<run_id>-SSSSS-of-NNNNN.parquet``) and written whole
inside a DoFn's process() (temporary name, then rename), which every runner honours.
The single `runs` row is written by the launcher after the pipeline finished; the
query views only show rows of runs that have it (see pipeline/query.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vidcurate.schemas.tables import TABLES, table_schema
from vidcurate.transforms.core import is_local


def table_dir(output: str, table: str) -> str:
    return f"{output.rstrip('/')}/{table}"


# Rows per shard: tens of MB for clips (a row with a 512-d embedding is ~3 KB).
ROWS_PER_SHARD = 20_000


def _row_key(row: dict[str, Any]) -> str:
    """A stable text of the row: orders rows in a shard, and picks its shard."""
    return json.dumps(row, sort_keys=True, default=str)


def shard_of(key: str, shards: int) -> int:
    # Not hash(): Python salts it per process, and workers must agree.
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % shards


def shard_count(rows: int, per_shard: int = ROWS_PER_SHARD) -> int:
    return max(1, math.ceil(rows / per_shard))


def write_shard(path: str, rows: list[dict[str, Any]], schema: pa.Schema) -> str:
    """One Parquet file, rows sorted, written to a temporary name and renamed (local)
    or created in one piece (object stores show an object only once it is closed)."""
    return _put(path, pa.Table.from_pylist(sorted(rows, key=_row_key), schema=schema))


def _put(path: str, table: pa.Table) -> str:
    if is_local(path):
        local = path.removeprefix("file://")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.tmp-{os.getpid()}"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, local)
    else:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        with FileSystems.create(path) as f:
            f.write(buf.getvalue())
    return path


class _WriteShardFn(beam.DoFn):
    """Writes a whole shard inside process(): results emitted from finish_bundle (as
    Beam's file sinks do) are lost on Beam's DaskRunner."""

    def __init__(self, prefix: str, schema: pa.Schema) -> None:
        self.prefix, self.schema = prefix, schema

    def process(self, shard: tuple[tuple[int, int], Any]):  # noqa: ANN201 - Beam checks hints
        (index, total), rows = shard
        yield write_shard(f"{self.prefix}-{index:05d}-of-{total:05d}.parquet", list(rows),
                          self.schema)


class WriteTable(beam.PTransform):
    """Records with ``to_row()`` -> Parquet shards of one table; the output is the paths
    written. Rows go to shards by a hash of their content, the shard count follows the
    row count, and rows are sorted in a shard: the same rows give the same files on
    every runner."""

    def __init__(self, output: str, table: str, run_id: str,
                 embedding_dim: int | None = None,
                 rows_per_shard: int = ROWS_PER_SHARD) -> None:
        super().__init__()
        self.output, self.table, self.run_id = output, table, run_id
        self.embedding_dim = embedding_dim
        self.rows_per_shard = rows_per_shard

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        per_shard = self.rows_per_shard
        rows = records | "ToRow" >> beam.Map(_keyed_row)
        counted = rows | "Count" >> CountAll()
        # The row count reaches the rows through a join, not a side input: see CountAll.
        buckets = (counted
                   | "ToBuckets" >> beam.FlatMap(lambda n: ((b, n) for b in range(BUCKETS))))
        grouped = ({"rows": rows, "count": buckets}
                   | "JoinCount" >> beam.CoGroupByKey()
                   | "ToShards" >> beam.FlatMap(_to_shards, per_shard)
                   | "Group" >> beam.GroupByKey())
        # No rows: one empty, typed shard, so every run leaves a readable table behind.
        empty = counted | "IfEmpty" >> beam.FlatMap(lambda n: [((0, 1), [])] if n == 0
                                                     else [])
        return ((grouped, empty) | "Shards+Empty" >> beam.Flatten()
                | "Write" >> beam.ParDo(_WriteShardFn(
                    f"{table_dir(self.output, self.table)}/{self.run_id}",
                    table_schema(self.table, self.embedding_dim))))


# Rows meet their table's row count in this many groups, so no group holds a whole table.
BUCKETS = 64


def _keyed_row(record: Any) -> tuple[int, dict[str, Any]]:
    row = record.to_row()
    return shard_of(_row_key(row), BUCKETS), row


def _to_shards(bucket: tuple[int, dict[str, list]], per_shard: int
               ) -> Iterator[tuple[tuple[int, int], dict[str, Any]]]:
    _, parts = bucket
    total = shard_count(next(iter(parts["count"])), per_shard)
    for row in parts["rows"]:
        yield (shard_of(_row_key(row), total), total), row


class CountAll(beam.PTransform):
    """How many elements, as one element (0 for none), without side inputs.

    CombineGlobally (Count.Globally) adds its default through a side input, and Beam's
    DaskRunner evaluates a side input by computing its whole upstream graph again inside
    the task that reads it: every model stage ran once more per table."""

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        ones = pcoll | "One" >> beam.Map(lambda _: (None, 1))
        zero = pcoll.pipeline | "Zero" >> beam.Create([(None, 0)])
        return ((ones, zero) | "Both" >> beam.Flatten()
                | "Sum" >> beam.CombinePerKey(sum)
                | "Value" >> beam.Values())


def write_rows(output: str, table: str, name: str, rows: list[dict[str, Any]]) -> str:
    """Write a small table file from the launcher (the `runs` row), atomically."""
    return _put(f"{table_dir(output, table)}/{name}.parquet",
                pa.Table.from_pylist(rows, schema=TABLES[table]))


def write_arrow(output: str, table: str, name: str, columns: dict[str, Any]) -> str:
    """Like write_rows, from columns (lists or Arrow arrays): a pass over many clips
    writes its column-wise result without a Python dict per row."""
    return _put(f"{table_dir(output, table)}/{name}.parquet",
                pa.Table.from_pydict(columns, schema=TABLES[table]))
