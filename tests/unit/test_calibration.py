"""Calibration math (transforms/calibrate.py): counts, which labels speak about a rule,
candidate thresholds, the F1-best threshold, and the recovery of a planted threshold."""

from __future__ import annotations

import random

import pytest

from vidcurate.transforms.calibrate import (
    Counts,
    best_threshold,
    candidate_thresholds,
    confusion,
    enough_labels,
    keep_rate,
    truth_for_rule,
)


def test_counts_precision_recall_f1():
    c = confusion([True, True, False, False, True], [True, False, True, False, True])
    assert c == Counts(tp=2, fp=1, fn=1, tn=1)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)
    assert Counts(tn=4).precision is None and Counts(tn=4).recall is None
    assert Counts(tn=4).f1 is None  # no drop on either side: undefined, not 0 or 1
    assert Counts(fp=2).f1 == 0


def test_which_labels_speak_about_a_rule():
    assert truth_for_rule("keep", None, "static") is False
    assert truth_for_rule("keep", "too_dark", "static") is False  # a keep is a keep
    assert truth_for_rule("drop", None, "static") is True
    assert truth_for_rule("drop", " static ", "static") is True
    assert truth_for_rule("drop", "too_dark", "static") is None  # about another rule
    assert truth_for_rule("drop", "watermark", "static") is None


def test_enough_labels_needs_both_classes():
    assert enough_labels([True] * 5 + [False] * 5, 5)
    assert not enough_labels([True] * 4 + [False] * 50, 5)
    assert not enough_labels([True] * 50 + [False] * 4, 5)


def test_candidates_are_midpoints_plus_ends_and_current():
    assert candidate_thresholds([0.1, 0.3, None, 0.3, 0.2], 0.25, False) == pytest.approx(
        [0.1 - 0.002, 0.15, 0.25, 0.3 + 0.002])
    assert candidate_thresholds([0, 2, 5], 0, True) == [-1, 0, 2, 5, 6]
    assert candidate_thresholds([], 7.0, False) == [7.0]
    many = candidate_thresholds([i / 1000 for i in range(10_000)], 0.5, False, limit=50)
    assert 45 <= len(many) <= 52


def test_keep_rate():
    assert keep_rate([True, False, False, False]) == 0.75
    assert keep_rate([]) is None


def _planted(n: int, threshold: float, seed: int = 3) -> tuple[list[float], list[bool]]:
    """Signal values and labels by a known rule: drop when the signal is below it."""
    rng = random.Random(seed)
    values = [rng.uniform(0, 0.05) for _ in range(n)]
    return values, [v < threshold for v in values]


def test_best_threshold_recovers_a_planted_one():
    values, truth = _planted(200, 0.013)
    thresholds = candidate_thresholds(values, 0.005, False)
    fit = best_threshold(thresholds, [[v < t for v in values] for t in thresholds], truth)
    assert fit is not None and fit.counts.f1 == 1.0
    # Any threshold between the last drop and the first keep fits; the middle one is
    # within half the gap of the planted value.
    gap = min(v for v in values if v >= 0.013) - max(v for v in values if v < 0.013)
    assert abs(fit.threshold - 0.013) <= gap / 2 + 1e-12
    assert abs(fit.threshold - 0.013) < 0.001


def test_best_threshold_with_noisy_labels_stays_near_the_planted_one():
    values, truth = _planted(400, 0.02, seed=5)
    rng = random.Random(1)
    noisy = [(not t) if rng.random() < 0.05 else t for t in truth]  # 5 % mislabelled
    thresholds = candidate_thresholds(values, 0.005, False)
    fit = best_threshold(thresholds, [[v < t for v in values] for t in thresholds], noisy)
    assert fit is not None and abs(fit.threshold - 0.02) < 0.003


def test_ties_take_the_middle_threshold():
    # Labels say: drop below 3. Thresholds 2.5, 3.5 and 4.5 all give F1 1 on these
    # labels (values 1, 2 dropped; 6, 7 kept); the middle one is taken.
    values, truth = [1, 2, 6, 7], [True, True, False, False]
    thresholds = [0.5, 1.5, 2.5, 3.5, 4.5, 6.5, 7.5]
    fit = best_threshold(thresholds, [[v < t for v in values] for t in thresholds], truth)
    assert fit.threshold == 3.5 and fit.tied == 3


def test_no_defined_f1_fits_nothing():
    values, truth = [1.0, 2.0], [False, False]
    assert best_threshold([0.0], [[v < 0.0 for v in values]], truth) is None
