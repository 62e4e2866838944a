"""Balance: MetaCLIP-style curation of the clips by a vocabulary ("Demystifying CLIP
Data", Xu et al. 2023, algorithm 1).

Each clip's text (its selected caption, transcript and video title) is matched against
the vocabulary entries (case-insensitive, whole words, multi-word entries allowed).
Entries matched by at most `cap` clips keep them all; a clip matched by a larger entry
is kept by that entry with probability cap / count. A clip is kept when any of its
entries keeps it, so rare concepts survive and head concepts are capped. The random
draw is a hash of (seed, clip id, entry), so a pass is deterministic and reruns agree.
As in MetaCLIP, clips that match no entry are dropped unless keep_unmatched.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence


def read_entries(lines: Iterable[str]) -> list[str]:
    """One entry per line; blank lines and # comments skipped; duplicates once."""
    out = [" ".join(line.strip().casefold().split()) for line in lines]
    return list(dict.fromkeys(e for e in out if e and not e.startswith("#")))


class Matcher:
    """Finds the vocabulary entries in a text, as whole words (one regex per length
    bucket would be faster; one alternation is enough for tens of thousands)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.entries = list(entries)
        by_length = sorted(self.entries, key=len, reverse=True)
        alternation = "|".join(re.escape(e).replace(r"\ ", r"\s+") for e in by_length)
        self.pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE) \
            if by_length else None

    def __call__(self, text: str) -> list[str]:
        if not self.pattern or not text:
            return []
        found = {" ".join(m.group(0).casefold().split()) for m in self.pattern.finditer(text)}
        # Overlapping entries ("red car" and "car"): finditer takes the longest at a
        # position; add entries contained in the matched ones so both are counted.
        for hit in list(found):
            found.update(e for e in self.entries if e != hit and re.search(
                rf"(?<!\w){re.escape(e)}(?!\w)", hit))
        return sorted(found)


def draw(seed: int, clip_id: str, entry: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, clip, entry)."""
    digest = hashlib.sha256(f"{seed}\0{clip_id}\0{entry}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def balance(matches: dict[str, list[str]], cap: int, seed: int = 0,
            keep_unmatched: bool = False) -> tuple[dict[str, bool], dict[str, tuple[int, int]]]:
    """(clip_id -> kept, entry -> (count before, count after))."""
    counts = Counter(e for entries in matches.values() for e in entries)
    kept: dict[str, bool] = {}
    for clip_id, entries in matches.items():
        if not entries:
            kept[clip_id] = keep_unmatched
            continue
        kept[clip_id] = any(counts[e] <= cap or draw(seed, clip_id, e) < cap / counts[e]
                            for e in entries)
    after = Counter(e for clip_id, entries in matches.items() if kept[clip_id]
                    for e in entries)
    return kept, {e: (counts[e], after[e]) for e in sorted(counts)}
