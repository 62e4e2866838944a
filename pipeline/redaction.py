"""`vidcurate publish --redact-text`: personal data masked in every published text field.

The finding and masking are transforms/personal_data.py's (the same rules that fill the
`personal_data` column); this module applies them to the Arrow batches publish writes:
clips (on-screen text and its lines, transcript, its segments, words and dropped
segments, the selected caption, every string of the structured caption), captions (text
and prompt) and videos (title, description and the strings inside metadata_json).
Transcript words are masked as one text, so a value Whisper split over several words is
found. Counts are kept per kind for the dataset card; the values are never kept, logged
or printed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from vidcurate.transforms.personal_data import DEFAULT_REGIONS, redact, redact_pieces

# Per table: plain string columns, and list<struct> columns with the text field inside.
TEXT_COLUMNS = {
    "clips": ("ocr_text", "transcript", "best_caption"),
    "captions": ("text", "prompt"),
    "videos": ("title", "description"),
}
NESTED_TEXT = {
    "clips": (("ocr_lines", "text"), ("transcript_segments", "text"),
              ("transcript_dropped", "text")),
}
WORD_COLUMNS = {"clips": (("transcript_words", "word"),)}


class TextRedactor:
    """Masks personal data in publish's batches and counts what it masked, by kind."""

    def __init__(self, regions: Sequence[str] = DEFAULT_REGIONS) -> None:
        self.regions = tuple(regions)
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def text(self, value: str | None) -> str | None:
        masked, counts = redact(value, self.regions)
        self.counts.update(counts)
        return masked

    def _json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._json(v) for v in value]
        if isinstance(value, dict):
            return {k: self._json(v) for k, v in value.items()}
        return value

    def metadata(self, value: str | None) -> str | None:
        """Strings inside a JSON document masked, the document kept valid."""
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except ValueError:
            return self.text(value)
        return json.dumps(self._json(parsed), sort_keys=True)

    def _nested(self, rows: list[Any], field: str) -> list[Any]:
        return [None if items is None else [
            None if item is None else {**item, field: self.text(item.get(field))}
            for item in items] for items in rows]

    def _words(self, rows: list[Any], field: str) -> list[Any]:
        out = []
        for items in rows:
            if not items:
                out.append(items)
                continue
            masked, counts = redact_pieces([(w or {}).get(field) for w in items], self.regions)
            self.counts.update(counts)
            out.append([None if w is None else {**w, field: m}
                        for w, m in zip(items, masked, strict=True)])
        return out

    def rewrite(self, table: str) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
        """A batch of `table` with its text fields masked (other columns untouched)."""

        def apply(batch: pa.RecordBatch) -> pa.RecordBatch:
            names = batch.schema.names
            columns = list(batch.columns)

            def swap(name: str, change: Callable[[list[Any]], list[Any]]) -> None:
                if name in names:
                    i = names.index(name)
                    columns[i] = pa.array(change(columns[i].to_pylist()), columns[i].type)

            for name in TEXT_COLUMNS.get(table, ()):
                swap(name, lambda rows: [self.text(v) for v in rows])
            for name, field in NESTED_TEXT.get(table, ()):
                swap(name, lambda rows, f=field: self._nested(rows, f))
            for name, field in WORD_COLUMNS.get(table, ()):
                swap(name, lambda rows, f=field: self._words(rows, f))
            if table == "videos":
                swap("metadata_json", lambda rows: [self.metadata(v) for v in rows])
            if table == "clips":  # the structured caption quotes OCR text and speech
                swap("caption_struct", lambda rows: [self._json(v) for v in rows])
            return pa.RecordBatch.from_arrays(columns, schema=batch.schema)

        return apply


def run_regions(options_json: Sequence[str | None]) -> tuple[str, ...]:
    """The phone regions the runs looked for (--personal-data-regions), in first-seen
    order; the defaults when no run recorded any (outputs older than the column)."""
    found: list[str] = []
    for text in options_json:
        try:
            cfg = json.loads(text or "{}").get("config", {})
        except ValueError:
            continue
        for region in (cfg.get("personal_data") or {}).get("regions") or ():
            if isinstance(region, str) and region not in found:
                found.append(region)
    return tuple(found) or DEFAULT_REGIONS
