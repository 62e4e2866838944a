"""Calibration math: how well a rule's verdicts match people's labels, and the threshold
that matches them best. Pure functions over lists; `vidcurate curate --calibrate`
(pipeline/calibrate.py) evaluates the rules and feeds them.

The positive class is "drop": a rule is right about a clip when it drops a clip a
person labelled drop (true positive), and wrong when it drops a clip labelled keep
(false positive) or keeps one labelled drop (false negative).

Which labelled clips speak about a rule: every clip labelled keep (a rule that drops it
is wrong), and every clip labelled drop either without a reason or with this rule's
name as the reason. A clip dropped for another reason (another rule's name, or free
text such as "watermark") says nothing about this rule (a dark clip need not be
static) and is left out of this rule's counts.

The criterion: the threshold with the highest F1 of "drop" over the labelled clips.
Thresholds that tie (any threshold between two neighbouring signal values gives the
same verdicts) are resolved by taking the middle one of those tied, which for a single
comparison is the middle of the gap between the last labelled drop and the first
labelled keep.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

# Below this many labelled drop clips, or labelled keep clips, a rule is not fitted:
# with three examples any threshold between them looks perfect.
MIN_LABELS = 5
# Candidate thresholds per rule: the verdicts only change at the signal's values, so a
# few hundred quantiles of them resolve the fit to a fraction of a percent of clips.
MAX_CANDIDATES = 200


@dataclasses.dataclass(frozen=True)
class Counts:
    tp: int = 0  # dropped by the rule, labelled drop
    fp: int = 0  # dropped by the rule, labelled keep
    fn: int = 0  # kept by the rule, labelled drop
    tn: int = 0  # kept by the rule, labelled keep

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """2TP / (2TP + FP + FN); None when there is no drop on either side."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None

    def as_dict(self) -> dict[str, int | float | None]:
        return {**dataclasses.asdict(self), "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


def truth_for_rule(label: str, reason: str | None, rule: str) -> bool | None:
    """Whether a labelled clip should be dropped by this rule: True (drop), False
    (keep), or None when the drop was for another reason (see the module text)."""
    if label == "keep":
        return False
    reason = (reason or "").strip()
    return True if not reason or reason == rule else None


def confusion(predicted_drop: Sequence[bool], truth_drop: Sequence[bool]) -> Counts:
    tp = fp = fn = tn = 0
    for predicted, truth in zip(predicted_drop, truth_drop, strict=True):
        if predicted and truth:
            tp += 1
        elif predicted:
            fp += 1
        elif truth:
            fn += 1
        else:
            tn += 1
    return Counts(tp, fp, fn, tn)


def enough_labels(truth_drop: Sequence[bool], minimum: int = MIN_LABELS) -> bool:
    drops = sum(truth_drop)
    return drops >= minimum and len(truth_drop) - drops >= minimum


def candidate_thresholds(values: Sequence[float | None], current: float, integer: bool,
                         limit: int = MAX_CANDIDATES) -> list[float]:
    """Thresholds worth trying for a rule that compares one signal with one threshold:
    the midpoints between neighbouring values of the signal (integers: the values
    themselves), one below the smallest and one above the largest, and the current
    threshold; at most about `limit` of them, at quantiles of the distinct values."""
    distinct = sorted({float(v) for v in values if v is not None and math.isfinite(v)})
    if len(distinct) > limit:
        step = (len(distinct) - 1) / (limit - 1)
        distinct = sorted({distinct[round(i * step)] for i in range(limit)})
    found = {float(current)}
    if distinct:
        if integer:
            found.update(math.floor(v) for v in distinct)
            found.update((math.floor(distinct[0]) - 1, math.ceil(distinct[-1]) + 1))
        else:
            margin = max((distinct[-1] - distinct[0]) * 0.01, abs(distinct[-1]) * 1e-6, 1e-9)
            found.update((a + b) / 2 for a, b in zip(distinct, distinct[1:], strict=False))
            found.update((distinct[0] - margin, distinct[-1] + margin))
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class Fit:
    threshold: float
    counts: Counts
    tied: int  # how many candidate thresholds reached the same F1


def best_threshold(thresholds: Sequence[float], predicted_drop: Sequence[Sequence[bool]],
                   truth_drop: Sequence[bool]) -> Fit | None:
    """The threshold whose predictions (one list per threshold, over the labelled
    clips) have the highest F1 of drop; the middle one of those tied. None when no
    threshold has a defined F1 (no clip labelled drop and none dropped)."""
    scored = [(confusion(p, truth_drop), t)
              for t, p in zip(thresholds, predicted_drop, strict=True)]
    f1s = [c.f1 for c, _ in scored]
    defined = [f for f in f1s if f is not None]
    if not defined:
        return None
    best = max(defined)
    tied = [i for i, f in enumerate(f1s) if f is not None and math.isclose(f, best)]
    counts, threshold = scored[tied[len(tied) // 2]]
    return Fit(threshold, counts, len(tied))


def keep_rate(predicted_drop: Sequence[bool]) -> float | None:
    """Share of clips a rule keeps; None for no clips."""
    return 1 - sum(predicted_drop) / len(predicted_drop) if predicted_drop else None
