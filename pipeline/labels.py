"""Labels: a person's keep / drop verdict on a clip, as rows of the `labels` table.

Every write is a new Parquet shard with a unique name, written whole under a temporary
name and renamed (transforms.sinks): two review windows, an import and a run writing at
the same moment each add their own file, so nothing is overwritten and nothing is lost.
Relabelling appends; the views take each clip's newest row (pipeline/query.py). Labels
are checked before anything is written: a batch with an unknown clip id or label is
refused whole.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import getpass
import io
import uuid
from collections.abc import Sequence

from vidcurate.pipeline.options import ConfigError
from vidcurate.pipeline.query import connect, require_output
from vidcurate.transforms.sinks import write_rows

LABEL_VALUES = ("keep", "drop")
MAX_REASON_CHARS = 500
MAX_WHO_CHARS = 100
# A label file is one line per clip; a file far larger was named by mistake.
MAX_CSV_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class Label:
    clip_id: str
    label: str  # keep | drop
    reason: str | None = None


def default_who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def checked(labels: Sequence[Label], known: set[str]) -> list[Label]:
    """The labels, normalised (label lower-case, empty reason -> None); ConfigError for
    a bad label value, an over-long reason, or clip ids that are not current clips of
    the output (counted, a few named)."""
    out = []
    for i, item in enumerate(labels, 1):
        value = (item.label or "").strip().lower()
        if value not in LABEL_VALUES:
            raise ConfigError(f"label {i} ({item.clip_id!r}): label must be keep or drop, "
                              f"got {item.label!r}")
        reason = (item.reason or "").strip() or None
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise ConfigError(f"label {i} ({item.clip_id!r}): reason over "
                              f"{MAX_REASON_CHARS} characters")
        out.append(Label((item.clip_id or "").strip(), value, reason))
    unknown = sorted({item.clip_id for item in out} - known)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ConfigError(f"{len(unknown)} unknown clip id(s), not current clips of this "
                          f"output: {shown}{more}. Nothing was written.")
    return out


def current_clip_ids(output: str) -> set[str]:
    return {c for (c,) in connect(output).sql("SELECT clip_id FROM clips").fetchall()}


def write_labels(output: str, labels: Sequence[Label], who: str, source: str,
                 known: set[str] | None = None) -> int:
    """Check and append labels as one new shard; returns how many were written. Rows
    of one batch get increasing timestamps (a microsecond apart), so when a batch labels
    a clip twice its later row wins, as it would have in the browser."""
    require_output(output)
    if known is None:
        known = current_clip_ids(output)
    rows = checked(labels, known)
    if not rows:
        return 0
    who = (who or "").strip()[:MAX_WHO_CHARS] or default_who()
    now = dt.datetime.now(dt.UTC)
    name = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}"
    write_rows(output, "labels", name, [
        {"label_id": str(uuid.uuid4()), "clip_id": r.clip_id, "label": r.label,
         "reason": r.reason, "labelled_by": who,
         "labelled_at": now + dt.timedelta(microseconds=i), "source": source}
        for i, r in enumerate(rows)])
    return len(rows)


def read_csv(path: str) -> list[Label]:
    """Labels from a CSV file with a header naming clip_id and label (reason optional);
    other columns are ignored."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CSV_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"--from {path}: cannot read it: {e.strerror}") from e
    if len(data) > MAX_CSV_BYTES:
        raise ConfigError(f"--from {path}: over {MAX_CSV_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's export starts with a BOM
    except UnicodeDecodeError as e:
        raise ConfigError(f"--from {path}: not UTF-8 text") from e
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "clip_id" not in fields or "label" not in fields:
        raise ConfigError(f"--from {path}: the first line must name the columns clip_id, "
                          f"label and optionally reason; got {', '.join(fields) or 'nothing'}")
    reader.fieldnames = fields
    return [Label(row.get("clip_id") or "", row.get("label") or "", row.get("reason"))
            for row in reader]
