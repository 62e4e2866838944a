"""An output written by an older vidcurate (before this round's columns) still works: the
views show today's columns, NULL where the files have none, and the passes treat them
as not measured (a demo output from before nsfw_score broke curate and export)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.e2e.test_curate import CLIPS, GOOD, write_output
from tests.support.helpers import run_cli
from vidcurate.pipeline.query import connect
from vidcurate.schemas.tables import TABLES

NEW = ["nsfw_score", "personal_data", "camera_motion", "caption_struct"]


def _older(out: Path) -> None:
    """The output's clips and runs shards rewritten without this round's columns."""
    for table, dropped in (("clips", NEW), ("runs", ["batch_of", "batch", "batches"])):
        for shard in (out / table).glob("*.parquet"):
            old = pq.read_table(shard)
            pq.write_table(old.drop_columns([c for c in dropped if c in old.column_names]),
                           shard)


def test_an_older_output_shows_todays_columns_and_passes_work(tmp_path):
    out = tmp_path / "out"
    write_output(out, {name: GOOD | changes for name, (changes, _) in CLIPS.items()})
    _older(out)
    assert not set(NEW) & set(pq.read_schema(next((out / "clips").glob("*.parquet"))).names)
    con = connect(str(out))
    columns = con.sql("SELECT * FROM clips").columns
    assert [f.name for f in TABLES["clips"] if f.name not in columns] == []
    assert con.sql(f"SELECT count(*) FROM clips WHERE {' IS NULL AND '.join(NEW)} IS NULL"
                   ).fetchall() == [(len(CLIPS),)]
    assert con.sql("SELECT batch_of FROM runs").fetchall() == [(None,)]

    proc = run_cli("curate", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no clip has nsfw_score" in proc.stdout
    kept = connect(str(out)).sql("SELECT count(*) FROM clips_curated").fetchall()[0][0]
    # The nsfw rule judged nobody (no scores): only the other rules dropped clips.
    assert kept == sum(rule in (None, "nsfw") for _, rule in CLIPS.values())
    proc = run_cli("export", str(out), str(tmp_path / "wds"), "--view", "clips_curated")
    assert proc.returncode == 0, proc.stdout + proc.stderr
