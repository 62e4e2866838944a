"""WriteTables: Parquet shards under <output>/<table>/, each with its schema from schemas/.

Shards are named after the run (``<run_id>-SSSSS-of-NNNNN.parquet``) and written by
Beam's file sink, which writes to a temporary directory and renames on completion.
The single `runs` row is written by the launcher after the pipeline finished; the
query views only show rows of runs that have it (see pipeline/query.py).
"""

from __future__ import annotations

import io
import os
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.tables import TABLES, table_schema
from transforms.manifest import is_local


def table_dir(output: str, table: str) -> str:
    return f"{output.rstrip('/')}/{table}"


class WriteTable(beam.PTransform):
    """Records with ``to_row()`` -> Parquet shards of one table."""

    def __init__(self, output: str, table: str, run_id: str,
                 embedding_dim: int | None = None) -> None:
        super().__init__()
        self.output, self.table, self.run_id = output, table, run_id
        self.embedding_dim = embedding_dim

    def expand(self, records: beam.PCollection) -> beam.pvalue.PDone:
        return (
            records
            | "ToRow" >> beam.Map(lambda r: r.to_row())
            | "Parquet" >> beam.io.WriteToParquet(
                file_path_prefix=f"{table_dir(self.output, self.table)}/{self.run_id}",
                schema=table_schema(self.table, self.embedding_dim),
                file_name_suffix=".parquet",
                codec="zstd",
            )
        )


def write_rows(output: str, table: str, name: str, rows: list[dict[str, Any]]) -> str:
    """Write a small table file from the launcher (the `runs` row), atomically."""
    data = pa.Table.from_pylist(rows, schema=TABLES[table])
    path = f"{table_dir(output, table)}/{name}.parquet"
    if is_local(output):
        local = path.removeprefix("file://")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.tmp-{os.getpid()}"
        pq.write_table(data, tmp, compression="zstd")
        os.replace(tmp, local)
    else:
        buf = io.BytesIO()
        pq.write_table(data, buf, compression="zstd")
        with FileSystems.create(path) as f:
            f.write(buf.getvalue())
    return path
