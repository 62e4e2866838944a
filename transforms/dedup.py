"""Dedup: mark clips whose CLIP embeddings are near-duplicates of an earlier clip, within
and across videos (Panda-70M only looked within a video).

Blocked, not all-pairs: each embedding gets random-hyperplane signatures (SimHash, an
LSH for cosine similarity), cut into bands; clips that share a band's bits land in one
bucket, and only pairs inside a bucket are compared exactly. Buckets are grouped by key,
so the work spreads over workers like any Beam GroupByKey; a pair missed by every band
is the price (with the defaults, a pair at cosine 0.95 is found with probability 0.99997,
see `recall`). A clip's `duplicate_of` is the earliest clip (by video id, then position
in the video) it is a near-duplicate of, followed to the root of that chain, so every
group has one kept clip.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np

STAGE = "dedup"


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    threshold: float = 0.95  # cosine similarity at or above which a clip is a duplicate
    bands: int = 32
    bits: int = 12  # hyperplanes per band
    seed: int = 0

    def planes(self, dim: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal((self.bands * self.bits, dim)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Item:
    clip_id: str
    order: tuple[str, int]  # (video_id, clip_index): earlier means smaller
    embedding: np.ndarray


@dataclasses.dataclass(frozen=True)
class Match:
    clip_id: str
    earlier: str
    earlier_order: tuple[str, int]
    similarity: float


def recall(cosine: float, cfg: DedupConfig) -> float:
    """Probability that a pair at this cosine shares at least one band."""
    agree = 1 - math.acos(max(-1.0, min(1.0, cosine))) / math.pi
    return 1 - (1 - agree ** cfg.bits) ** cfg.bands


def band_keys(embedding: np.ndarray, planes: np.ndarray, cfg: DedupConfig) -> list[str]:
    bits = (planes @ embedding.astype(np.float32)) > 0
    return [f"{b}:{np.packbits(bits[b * cfg.bits:(b + 1) * cfg.bits]).tobytes().hex()}"
            for b in range(cfg.bands)]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / max(float(np.linalg.norm(x)), 1e-12)


def bucket_matches(items: Sequence[Item], threshold: float) -> Iterator[Match]:
    """Exact check inside one bucket: each later clip against every earlier one."""
    ordered = sorted(items, key=lambda i: (i.order, i.clip_id))
    if len(ordered) < 2:
        return
    vecs = np.stack([_unit(i.embedding) for i in ordered])
    sims = vecs @ vecs.T
    for j in range(1, len(ordered)):
        for i in range(j):
            if sims[i, j] >= threshold:
                yield Match(ordered[j].clip_id, ordered[i].clip_id, ordered[i].order,
                            float(sims[i, j]))


def earliest(matches: Iterable[Match]) -> Match:
    return min(matches, key=lambda m: (m.earlier_order, m.earlier))


def resolve_roots(parent: dict[str, str]) -> dict[str, str]:
    """Follow duplicate_of chains (a -> b -> c) to their root, so each duplicate names
    a clip that is kept."""
    roots = {}
    for clip in parent:
        seen, node = [clip], parent[clip]
        while node in parent and node not in seen:
            seen.append(node)
            node = parent[node]
        roots[clip] = node
    return roots


def find_duplicates(items: Sequence[Item], cfg: DedupConfig) -> dict[str, tuple[str, float]]:
    """clip_id -> (duplicate_of, similarity to its direct earlier match), in one process
    (tests, and small outputs); the Beam transform below does the same at scale."""
    if not items:
        return {}
    planes = cfg.planes(len(items[0].embedding))
    buckets: dict[str, list[Item]] = {}
    for item in items:
        for key in band_keys(item.embedding, planes, cfg):
            buckets.setdefault(key, []).append(item)
    found: dict[str, list[Match]] = {}
    for bucket in buckets.values():
        for m in bucket_matches(bucket, cfg.threshold):
            found.setdefault(m.clip_id, []).append(m)
    best = {c: earliest(ms) for c, ms in found.items()}
    roots = resolve_roots({c: m.earlier for c, m in best.items()})
    return {c: (roots[c], best[c].similarity) for c in best}


class FindDuplicates(beam.PTransform):
    """Item -> (clip_id, duplicate_of, similarity) for every duplicate clip."""

    def __init__(self, cfg: DedupConfig, dim: int) -> None:
        super().__init__()
        self.cfg, self.dim = cfg, dim

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        cfg, planes = self.cfg, self.cfg.planes(self.dim)
        matches = (
            items
            | "Bands" >> beam.FlatMap(lambda it: ((k, it) for k in band_keys(
                it.embedding, planes, cfg)))
            | "Buckets" >> beam.GroupByKey()
            | "Compare" >> beam.FlatMap(lambda kv: bucket_matches(list(kv[1]), cfg.threshold))
            | "ByClip" >> beam.Map(lambda m: (m.clip_id, m))
            | "Earliest" >> beam.CombinePerKey(earliest))
        # Chains are short and duplicates few: resolve them in one step over the pairs.
        return (matches
                | "Pairs" >> beam.Map(lambda kv: (kv[0], kv[1].earlier, kv[1].similarity))
                | "All" >> beam.combiners.ToList()
                | "Roots" >> beam.FlatMap(_with_roots))


def _with_roots(pairs: list[tuple[str, str, float]]) -> Iterator[tuple[str, str, float]]:
    roots = resolve_roots({c: e for c, e, _ in pairs})
    for clip, _, sim in sorted(pairs):
        yield clip, roots[clip], sim
