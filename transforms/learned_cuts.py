"""Cuts and boundary zones from TransNetV2's per-frame probabilities, and the ensemble
of PySceneDetect's content detector with TransNetV2 (--detector transnetv2 / ensemble).

The network (models/transnetv2.py) reads the one detection decode through
TransNetObserver; everything here is a plain function of its two heads:

- single-frame head: a run of frames over the threshold is one cut. The network marks
  the last frame of the ending shot (a hard cut between frames 59 and 60 peaks at 59),
  so the new shot starts at the run's peak + 1.
- many-hot head: a run of at least GRADUAL_MIN_FRAMES frames over the threshold is a
  gradual transition, a boundary zone as the transition observer's are (a hard cut
  lights one or two frames of it).

Ensemble rule (ensemble_cuts): a cut both detectors find within AGREE_FRAMES frames is
kept (at TransNetV2's frame); a TransNetV2 cut is kept alone (its precision is the
higher, docs/pipeline/splitting.md); a content cut alone is kept when the network
gives its place at least SUPPORT probability, and dropped otherwise (content's false
cuts, fast motion and flashes, get almost none). Then min_scene_len apart, never
dropping an agreed cut for another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidcurate.schemas.records import Transition
from vidcurate.transforms.models.transnetv2 import (
    TransNetConfig,
    WindowStream,
    network_input,
    predict_windows,
    resolve_weights,
    shared_network,
)

# The package's own threshold for both heads.
DEFAULT_THRESHOLD = 0.5
# A many-hot run this long is a gradual transition; a hard cut lights 1-2 frames.
GRADUAL_MIN_FRAMES = 3
# Two detectors' cuts this close are the same cut (the F1 tolerance of the benchmark).
AGREE_FRAMES = 2
# A content cut alone is kept when TransNetV2's single-frame head reaches this within
# AGREE_FRAMES of it: the network saw something change there, below its own threshold.
SUPPORT = 0.1


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def spaced(cuts: Sequence[int], min_gap: int, keep: frozenset[int] = frozenset()
           ) -> list[int]:
    """Cuts at least min_gap frames after the previous kept one (PySceneDetect's
    min_scene_len); a cut in `keep` wins over an earlier one that is not."""
    out: list[int] = []
    for c in sorted(set(cuts)):
        if out and c - out[-1] < min_gap:
            if c in keep and out[-1] not in keep:
                out[-1] = c
            continue
        out.append(c)
    return out


def cuts_from_single(single: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                     min_gap: int = 1) -> list[int]:
    """First frames of new shots from the single-frame head."""
    n = len(single)
    cuts = [int(a + np.argmax(single[a:b])) + 1 for a, b in _runs(single > threshold)]
    return spaced([c for c in cuts if 0 < c < n], min_gap)


def zones_from_many(many: np.ndarray, fps: float, threshold: float = DEFAULT_THRESHOLD,
                    min_frames: int = GRADUAL_MIN_FRAMES) -> tuple[Transition, ...]:
    """Gradual transitions from the many-hot head."""
    return tuple(Transition("gradual", a, b, a / fps, b / fps)
                 for a, b in _runs(many > threshold) if b - a >= min_frames)


def ensemble_cuts(content: Sequence[int], single: np.ndarray,
                  threshold: float = DEFAULT_THRESHOLD, min_gap: int = 1) -> list[int]:
    """Content detector's cuts combined with TransNetV2's (see the module's rule)."""
    n = len(single)
    learned = cuts_from_single(single, threshold)
    agreed: set[int] = set()
    out = set(learned)
    for c in content:
        near = [t for t in learned if abs(t - c) <= AGREE_FRAMES]
        if near:
            agreed.add(min(near, key=lambda t: abs(t - c)))
            continue
        # The network marks the frame before a cut: look around c - 1.
        lo, hi = max(0, c - 1 - AGREE_FRAMES), min(n, c + AGREE_FRAMES)
        if hi > lo and float(single[lo:hi].max()) >= SUPPORT:
            out.add(c)
    return spaced([c for c in out if 0 < c < n], min_gap, frozenset(agreed))


def merge_zones(found: Sequence[Transition], learned: Sequence[Transition]
                ) -> tuple[Transition, ...]:
    """The transition observer's zones and the network's that overlap none of them
    (the observer's know their kind: fade, dissolve, wipe, flash)."""
    extra = [t for t in learned
             if not any(t.start_frame < f.end_frame and f.start_frame < t.end_frame
                        for f in found)]
    return tuple(sorted([*found, *extra], key=lambda t: t.start_frame))


class TransNetObserver:
    """A FrameObserver: each detect frame shrunk to the network's 48x27 and fed to it in
    batches of windows as the decode goes."""

    def __init__(self, cfg: TransNetConfig) -> None:
        if cfg.weights_path is None:  # called outside a run (tests, benchmarks)
            cfg = resolve_weights(cfg)
        net = shared_network(cfg)
        self.stream = WindowStream(lambda w: predict_windows(net, w), cfg.windows_per_batch())

    def observe(self, frame: np.ndarray) -> None:
        self.stream.add(network_input(frame))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(single-frame, many-hot) probabilities per frame."""
        return self.stream.finish()
