"""Metric code against scikit-learn on known vectors, and the threshold rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from model.metrics import (
    average_precision,
    binary_metrics,
    bootstrap_intervals,
    choose_threshold,
    near_best_thresholds,
    roc_auc,
)


@pytest.fixture(params=[0, 1, 2])
def vectors(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(request.param)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.25, 300), 0, 1)
    p = np.round(p, 2)  # ties on purpose
    return y, p


def test_auc_and_average_precision_match_sklearn(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = vectors
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_threshold_metrics_match_sklearn(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = vectors
    m = binary_metrics(y, p, 0.5)
    pred = p >= 0.5
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, ~pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))


def test_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, p) == pytest.approx(0.75)
    m = binary_metrics(y, p, 0.5)
    assert (m["sensitivity"], m["specificity"], m["accuracy"]) == (0.5, 1.0, 0.75)


def test_threshold_rule_respects_minimum_sensitivity(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = vectors
    t = choose_threshold(y, p, min_sensitivity=0.95)
    m = binary_metrics(y, p, t)
    assert m["sensitivity"] >= 0.95
    # no other threshold with that sensitivity has a better balanced accuracy
    best = max(binary_metrics(y, p, c)["balanced_accuracy"] for c in np.unique(p)
               if binary_metrics(y, p, c)["sensitivity"] >= 0.95)
    assert m["balanced_accuracy"] == pytest.approx(best)


def test_threshold_separates_perfectly_separable_scores() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    t = choose_threshold(y, p)
    assert 0.3 < t <= 0.6
    assert binary_metrics(y, p, t)["accuracy"] == 1.0


def test_near_best_thresholds_span_the_scores_where_j_is_almost_best() -> None:
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    p = np.r_[np.linspace(0.0, 0.30, 100), np.linspace(0.301, 1.0, 100)]  # separable: J = 1 at 0.301
    assert near_best_thresholds(y, p, tolerance=0.0) == pytest.approx((0.301, 0.301))
    low, high = near_best_thresholds(y, p, tolerance=0.05)  # 5 films of either class may be lost
    assert low == pytest.approx(p[95]) and high == pytest.approx(p[105])
    assert low < choose_threshold(y, p) < high


def test_bootstrap_intervals_bracket_the_point_estimate(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = vectors
    groups = [f"patient{i // 2}" for i in range(len(y))]
    point = binary_metrics(y, p, 0.5)
    intervals = bootstrap_intervals(y, p, 0.5, groups, n_resamples=300)
    for name, (lo, hi) in intervals.items():
        assert lo <= point[name] <= hi and lo < hi
    wider = bootstrap_intervals(y[:40], p[:40], 0.5, groups[:40], n_resamples=300)
    assert np.diff(wider["roc_auc"]) > np.diff(intervals["roc_auc"])
    assert bootstrap_intervals(y, p, 0.5, groups, 50, seed=1) == bootstrap_intervals(y, p, 0.5, groups, 50, seed=1)
