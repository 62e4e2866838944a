"""DuckDB over the output tables: read-only views that count each video and clip once.

A run's shards become visible only once its `runs` row exists (written last, after
the pipeline succeeded). Across runs over the same output, the latest complete run
of each video wins: `videos`, `clips`, `captions` and `errors` show that run's rows,
and `<table>_all` views show every row of every complete run.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from vidcurate.schemas.tables import TABLES
from vidcurate.transforms.core import is_local


class OutputNotFound(FileNotFoundError):
    pass


class NotReadOnly(ValueError):
    pass


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"



def _has_files(output: str, table: str) -> bool:
    if not is_local(output):
        return True  # remote globs are resolved by DuckDB (httpfs) itself
    pattern = os.path.join(glob.escape(output.removeprefix("file://")), table, "*.parquet")
    return bool(glob.glob(pattern))


def _embedding_dim(output: str) -> int | None:
    """The clip embedding size when every local clips shard that has one agrees on it
    (read from the Parquet footers only; runs without CLIP write a null list column);
    None otherwise, and the column stays a list."""
    if not is_local(output):
        return None
    import pyarrow.parquet as pq

    sizes = set()
    folder = os.path.join(glob.escape(output.removeprefix("file://")), "clips")
    for path in glob.glob(os.path.join(folder, "*.parquet")):
        kind = pq.read_schema(path).field("clip_embedding").type
        if isinstance(kind, pa.FixedSizeListType):
            sizes.add(kind.list_size)
    return sizes.pop() if len(sizes) == 1 else None


def require_output(output: str) -> None:
    """Raise OutputNotFound unless <output> is a run's output (or a published folder):
    the passes (curate, dedup, balance, report) write into the folder they are given, so
    an input folder or an empty one named by mistake must be refused before that. The
    mark is the runs/ table, which every run writes last and publish copies. Remote
    outputs are taken as given (a listing would cost a round trip per command)."""
    if not is_local(output):
        return
    folder = output.removeprefix("file://")
    if not os.path.isdir(folder):
        raise OutputNotFound(f"no vidcurate output at {output!r}")
    if not _has_files(output, "runs"):
        raise OutputNotFound(f"{output!r} is not a vidcurate output (no runs/ table): give "
                             "the --output folder of a finished run")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> str:
    """The DuckDB type of a column of today's (empty) table, as SQL."""
    [(kind,)] = con.execute(
        "SELECT column_type FROM (DESCRIBE SELECT * FROM " + relation + "_empty) "
        "WHERE column_name = $1", [column]).fetchall()
    return kind


def connect(output: str, *, sandbox: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views over <output>; nothing is ever written to it.

    With sandbox, the connection is locked down once the views exist (see _sandbox):
    for SQL that comes from a user rather than from this code base."""
    if is_local(output) and not os.path.isdir(output.removeprefix("file://")):
        raise OutputNotFound(f"no vidcurate output at {output!r}")
    con = duckdb.connect(":memory:")
    if not is_local(output):
        con.sql("INSTALL httpfs; LOAD httpfs;")
    base = output.rstrip("/").removeprefix("file://")
    for table, schema in TABLES.items():
        raw = f"raw_{table}"
        # Every column of today's schema, whatever version wrote the files: a column an
        # older vidcurate did not write (runs.batch_of, clips.nsfw_score, ...) reads as
        # NULL, so the passes and their rules see "not measured", never a missing column.
        con.register(f"{raw}_empty", pa.Table.from_pylist([], schema=schema))
        if _has_files(output, table):
            pattern = _quote(f"{base}/{table}/*.parquet")  # --output holds no glob chars
            select = "*"
            dim = _embedding_dim(output) if table == "clips" else None
            if dim:  # DuckDB reads Parquet's fixed-size lists as plain lists
                select = f"* REPLACE (clip_embedding::FLOAT[{dim}] AS clip_embedding)"
            files = f"read_parquet({pattern}, union_by_name = true)"
            written = set(con.sql(f"SELECT * FROM {files} LIMIT 0").columns)
            missing = [f for f in schema if f.name not in written]
            fill = "".join(f", NULL::{_sql_type(con, raw, f.name)} AS {_ident(f.name)}"
                           for f in missing)
            con.sql(f"CREATE VIEW {raw} AS SELECT {select}{fill} FROM {files}")
        else:
            con.sql(f"CREATE VIEW {raw} AS SELECT * FROM {raw}_empty")
    con.sql("""
        CREATE VIEW runs AS
        SELECT * FROM raw_runs WHERE status = 'complete';
        CREATE VIEW videos_all AS
        SELECT v.* FROM raw_videos v SEMI JOIN runs r USING (run_id);
        CREATE VIEW videos AS
        SELECT v.* FROM raw_videos v JOIN runs r USING (run_id)
        QUALIFY row_number() OVER (PARTITION BY v.video_id
                                   ORDER BY r.finished_at DESC, r.run_id DESC) = 1;
        CREATE VIEW clips_all AS
        SELECT c.* FROM raw_clips c SEMI JOIN runs r USING (run_id);
        CREATE VIEW labels_all AS SELECT * FROM raw_labels;
        CREATE VIEW labels AS
        SELECT l.* FROM raw_labels l
        WHERE l.clip_id IN (SELECT c.clip_id FROM raw_clips c
                            SEMI JOIN videos v USING (video_id, run_id))
        QUALIFY row_number() OVER (PARTITION BY l.clip_id
                                   ORDER BY l.labelled_at DESC, l.label_id DESC) = 1;
        -- The current clips, each with its newest label (a person's keep or drop): query
        -- and the passes see it; publish and export copy the dataset's own columns only.
        CREATE VIEW clips AS
        SELECT c.*, l.label, l.reason AS label_reason, l.labelled_by, l.labelled_at
        FROM raw_clips c LEFT JOIN labels l USING (clip_id)
        WHERE (c.video_id, c.run_id) IN (SELECT (video_id, run_id) FROM videos);
        CREATE VIEW captions_all AS
        SELECT c.* FROM raw_captions c SEMI JOIN runs r USING (run_id);
        CREATE VIEW captions AS
        SELECT c.* FROM raw_captions c SEMI JOIN videos v USING (video_id, run_id);
        CREATE VIEW passes AS SELECT * FROM raw_passes;
        CREATE VIEW duplicates AS
        SELECT d.* FROM raw_duplicates d SEMI JOIN clips c USING (clip_id)
        WHERE d.pass_id = (SELECT pass_id FROM raw_passes WHERE kind = 'dedup'
                           ORDER BY created_at DESC, pass_id DESC LIMIT 1);
        CREATE VIEW clips_unique AS
        SELECT c.* FROM clips c ANTI JOIN duplicates d USING (clip_id);
        CREATE VIEW balance AS
        SELECT b.* FROM raw_balance b SEMI JOIN clips c USING (clip_id)
        WHERE b.pass_id = (SELECT pass_id FROM raw_passes WHERE kind = 'balance'
                           ORDER BY created_at DESC, pass_id DESC LIMIT 1);
        CREATE VIEW balance_counts AS
        SELECT * FROM raw_balance_counts
        WHERE pass_id = (SELECT pass_id FROM raw_passes WHERE kind = 'balance'
                         ORDER BY created_at DESC, pass_id DESC LIMIT 1);
        CREATE VIEW clips_balanced AS
        SELECT c.* FROM clips c SEMI JOIN balance b ON b.clip_id = c.clip_id AND b.kept;
        CREATE VIEW curation AS
        SELECT k.* FROM raw_curation k SEMI JOIN clips c USING (clip_id, run_id)
        WHERE k.pass_id = (SELECT pass_id FROM raw_passes WHERE kind = 'curate'
                           ORDER BY created_at DESC, pass_id DESC LIMIT 1);
        CREATE VIEW clips_curated AS
        SELECT c.* FROM clips c SEMI JOIN curation k ON k.clip_id = c.clip_id AND k.kept;
        -- The name earlier releases gave clips with their labels.
        CREATE VIEW clips_labelled AS SELECT * FROM clips;
        CREATE VIEW errors_all AS
        SELECT e.* FROM raw_errors e SEMI JOIN runs r USING (run_id);
        CREATE VIEW errors AS
        SELECT e.* FROM raw_errors e
        WHERE (e.video_id, e.run_id) IN (SELECT (video_id, run_id) FROM videos)
           OR (e.video_id IS NULL
               -- the latest run's, all of its batches' when it was made in batches
               AND e.run_id IN (SELECT run_id FROM runs
                                WHERE coalesce(batch_of, run_id) = (
                                    SELECT coalesce(batch_of, run_id) FROM runs
                                    ORDER BY finished_at DESC LIMIT 1)));
    """)
    if sandbox:
        _sandbox(con, output)
    return con


def _sandbox(con: duckdb.DuckDBPyConnection, output: str) -> None:
    """Take away everything a query of the views does not need: files outside the
    output (read_text('/etc/...'), read_csv, glob, COPY TO, ATTACH), the network,
    installing or loading extensions, and changing these settings back. Files inside
    the output stay writable at this level: query() refuses every statement but a query.

    The views stay readable: DuckDB re-binds read_parquet at each query, and the output
    folder is the one allowed directory (a local one by its absolute path; DuckDB
    resolves symlinks, so a link inside it cannot point elsewhere), with DuckDB's private
    spill folder (never the current directory's .tmp/). Remote outputs are
    allowed by their URL prefix; httpfs was loaded explicitly before this."""
    folder = os.path.abspath(output.removeprefix("file://")) if is_local(output) else output
    folder = folder.rstrip("/") + "/"  # a prefix of the folder's files, not of its siblings
    # DuckDB allows its temp folder too, by default `.tmp` in the current directory:
    # whatever lay in <cwd>/.tmp/ would be readable. Spill into a private folder instead
    # (made 0700 by mkdtemp, removed with the connection), which holds only this
    # connection's own spill files.
    private = tempfile.mkdtemp(prefix="vidcurate-query-")
    weakref.finalize(con, shutil.rmtree, private, ignore_errors=True)
    spill = os.path.join(private, "spill")
    con.sql(f"""
        SET temp_directory = {_quote(spill)};
        SET autoinstall_known_extensions = false;
        SET autoload_known_extensions = false;
        SET allow_community_extensions = false;
        SET allowed_directories = [{_quote(folder)}];
        SET enable_external_access = false;
        SET lock_configuration = true;
    """)


def reselect_sql(teachers: Sequence[str], priority: Sequence[str]) -> str:
    """The best caption per clip among the candidates of some teachers only, from the
    stored scores (no model runs): the same rule as the pipeline's selection: highest
    CLIP score when every remaining candidate of the clip has one, else teacher priority;
    ties by priority, teacher name, then text."""
    if not teachers:
        raise ValueError("reselect needs at least one teacher")
    names = ", ".join(_quote(t) for t in teachers)
    order = " ".join(f"WHEN {_quote(t)} THEN {i}" for i, t in enumerate(priority))
    return f"""
        WITH pool AS (
            SELECT c.*, CASE c.teacher {order} ELSE {len(priority)} END AS priority,
                   bool_and(c.clip_score IS NOT NULL) OVER (PARTITION BY c.clip_id) AS scored
            FROM captions c WHERE c.teacher IN ({names}))
        SELECT clip_id, video_id, teacher, model, text, clip_score,
               CASE WHEN scored THEN 'clip' ELSE 'priority' END AS selection_method
        FROM pool
        QUALIFY row_number() OVER (
            PARTITION BY clip_id
            ORDER BY CASE WHEN scored THEN -clip_score END, priority, teacher, text) = 1
        ORDER BY clip_id"""


def _explained(con: duckdb.DuckDBPyConnection, sql: str) -> list[duckdb.StatementType]:
    """The type of the statement that an EXPLAIN wraps, read with DuckDB's own tokenizer and
    parser. After EXPLAIN comes the statement, maybe after ANALYZE or a parenthesised
    option list (`EXPLAIN (ANALYZE) COPY ...`). Where a word can be read either way
    (`EXPLAIN (SELECT 1)`, `EXPLAIN ANALYZE` of the ANALYZE statement), every reading
    is parsed, and the types of all those that parse are returned."""
    every = duckdb.tokenize(sql)
    ends = [start for start, _ in every[1:]] + [len(sql)]
    spans = [(start, kind, sql[start:end].strip())
             for (start, kind), end in zip(every, ends, strict=True)
             if kind != duckdb.token_type.comment]
    tokens = [(start, kind) for start, kind, _ in spans]
    words = [word for _, _, word in spans]
    starts = [1]  # tokens[0] is EXPLAIN: the statement type says so
    if len(words) > 1 and words[1].upper() in ("ANALYZE", "ANALYSE"):
        starts.append(2)
    for i in list(starts):
        if i < len(words) and words[i] == "(":  # the option-list reading: after its ")"
            depth = 0
            for j in range(i, len(words)):
                if tokens[j][1] == duckdb.token_type.operator:
                    depth += words[j].count("(") - words[j].count(")")
                if depth == 0:
                    starts.append(j + 1)
                    break
    types = []
    for i in starts:
        try:
            inner = con.extract_statements(sql[tokens[i][0]:] if i < len(tokens) else "")
        except duckdb.ParserException:
            continue  # not this reading
        types += [statement.type for statement in inner]
    return types


def _check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one query, by the parsed statement type: SELECT (which
    covers WITH, FROM, VALUES, DESCRIBE, SUMMARIZE, SHOW) or an EXPLAIN of one. EXPLAIN
    ANALYZE runs what it wraps, so `EXPLAIN ANALYZE COPY ... TO` would write."""
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        raise NotReadOnly(f"give exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _explained(con, statements[0].query)
        if not inner or any(t != duckdb.StatementType.SELECT for t in inner):
            what = ", ".join(sorted({t.name for t in inner})) or "no query"
            raise NotReadOnly(f"EXPLAIN is allowed over a query only, not over {what}")
    elif kind != duckdb.StatementType.SELECT:
        raise NotReadOnly(f"only read-only queries are allowed, not {kind.name}")


def query(output: str, sql: str) -> duckdb.DuckDBPyRelation:
    """Run one read-only statement (SELECT, WITH, EXPLAIN [ANALYZE] of a query,
    DESCRIBE, SUMMARIZE...).

    COPY, CREATE, INSERT, ATTACH, SET, PRAGMA, INSTALL and the like are refused by
    statement type, and the connection is sandboxed: no file or URL outside the output,
    no extension install or load, no setting changed. A query never writes to the output
    or anywhere else, and reads nothing but the output."""
    con = connect(output, sandbox=True)
    _check_read_only(con, sql)
    return con.sql(sql)


STATS_QUERIES = {
    "inputs": """
        SELECT count(*) AS inputs,
               count(*) FILTER (status = 'ok') AS ok,
               count(*) FILTER (status = 'skipped') AS skipped,
               count(*) FILTER (status = 'failed') AS failed,
               round(sum(duration_s) / 3600, 3) AS video_hours
        FROM videos""",
    "clips": """
        SELECT count(*) AS clips,
               round(sum(duration_s) / 3600, 3) AS clip_hours,
               round(quantile_cont(duration_s, 0.1), 2) AS p10_s,
               round(quantile_cont(duration_s, 0.5), 2) AS p50_s,
               round(quantile_cont(duration_s, 0.9), 2) AS p90_s,
               round(max(duration_s), 2) AS max_s
        FROM clips""",
    "teachers": """
        SELECT teacher, count(*) AS candidates, count(*) FILTER (selected) AS selected,
               round(avg(clip_score), 4) AS mean_clip_score
        FROM captions GROUP BY ALL ORDER BY selected DESC, teacher""",
    "top errors": """
        SELECT stage, error_type, count(*) AS n, any_value(message) AS example
        FROM errors GROUP BY ALL ORDER BY n DESC, stage LIMIT 10""",
    "skip reasons": """
        SELECT reason, count(*) AS n FROM videos WHERE status = 'skipped'
        GROUP BY ALL ORDER BY n DESC LIMIT 10""",
}
