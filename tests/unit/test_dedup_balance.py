"""Near-duplicate marking (blocked LSH) and MetaCLIP balancing, as pure functions."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from vidcurate.transforms.balance import Matcher, balance, draw, read_entries
from vidcurate.transforms.dedup import DedupConfig, FindDuplicates, Item, find_duplicates, recall

CFG = DedupConfig(threshold=0.95)


def _items(seed: int = 0) -> tuple[list[Item], dict[str, str]]:
    """Three contents, each seen in several clips (small perturbations), plus loners;
    returns items and the expected duplicate_of for each duplicate."""
    rng = np.random.default_rng(seed)
    base = [rng.standard_normal(64) for _ in range(3)]
    items, expected = [], {}
    for c, vec in enumerate(base):
        copies = [f"v{k}/c{c}" for k in range(3)]  # the same clip in three videos
        for k, clip_id in enumerate(copies):
            items.append(Item(clip_id, (f"v{k}", c), vec + 0.05 * rng.standard_normal(64)))
            if k:
                expected[clip_id] = copies[0]
    items += [Item(f"solo{i}", ("w", i), rng.standard_normal(64)) for i in range(20)]
    return items, expected


def test_recall_of_the_banding():
    assert recall(0.95, CFG) > 0.9999
    assert recall(0.2, CFG) < 0.05  # unrelated pairs rarely share a bucket
    assert recall(1.0, CFG) == pytest.approx(1.0)


def test_duplicates_point_to_the_earliest_copy_within_and_across_videos():
    items, expected = _items()
    found = find_duplicates(items, CFG)
    assert {c: d for c, (d, _) in found.items()} == expected
    assert all(s >= 0.95 for _, s in found.values())
    # Order of the input does not matter.
    again = find_duplicates(list(reversed(items)), CFG)
    assert {c: d for c, (d, _) in again.items()} == expected


def test_chains_resolve_to_a_kept_clip():
    # a ~ b and b ~ c, but a !~ c: c must not point to b, which is not kept.
    a = np.array([1.0, 0, 0])
    b = np.array([np.cos(0.25), np.sin(0.25), 0])
    c = np.array([np.cos(0.5), np.sin(0.5), 0])
    cfg = DedupConfig(threshold=float(np.cos(0.3)), bands=64, bits=2)
    found = find_duplicates([Item("a", ("v", 0), a), Item("b", ("v", 1), b),
                             Item("c", ("v", 2), c)], cfg)
    assert {k: v for k, (v, _) in found.items()} == {"b": "a", "c": "a"}


def test_beam_transform_agrees_with_the_reference():
    items, expected = _items(seed=4)
    with TestPipeline() as p:
        out = p | beam.Create(items) | FindDuplicates(CFG, 64) | beam.Map(lambda t: t[:2])
        assert_that(out, equal_to(sorted(expected.items())))


def test_vocabulary_matching_is_by_whole_words():
    match = Matcher(read_entries(["# comment", "car", "red car", "Cat", "", "new york",
                                  "car"]))
    assert match.entries == ["car", "red car", "cat", "new york"]
    assert match("A red car drives through New  York") == ["car", "new york", "red car"]
    assert match("a cartoon about a concatenated catalogue") == []
    assert match("CAT, cat and car.") == ["car", "cat"]
    assert match("") == []


def test_balancing_caps_head_entries_and_keeps_the_tail():
    matches = {f"c{i}": ["dog"] for i in range(400)}
    matches.update({f"r{i}": ["axolotl"] for i in range(5)})
    matches.update({"both": ["dog", "axolotl"], "none": []})
    kept, counts = balance(matches, cap=50, seed=1)
    assert counts["axolotl"] == (6, 6)  # under the cap: all kept
    before, after = counts["dog"]
    assert before == 401
    # Each dog clip survives with probability 50/401 (plus "both", kept by axolotl).
    assert 50 - 3 * 6.6 <= after <= 50 + 3 * 6.6 + 1
    assert kept["both"] and not kept["none"]
    assert balance(matches, cap=50, seed=1) == (kept, counts)  # deterministic
    assert balance(matches, cap=50, seed=2)[0] != kept
    assert balance(matches, cap=50, seed=1, keep_unmatched=True)[0]["none"]
    assert 0 <= draw(0, "c1", "dog") < 1
