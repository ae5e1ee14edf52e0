"""Agreement of stored results with clinicians' readings (model.agreement) on known records."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from model.agreement import MIN_READINGS_PER_CLASS, agreement, wilson_interval
from model.store import PredictionRecord

THRESHOLD = 0.3


def _record(version: str, probability: float, reading: str, threshold: float = THRESHOLD) -> PredictionRecord:
    label = "PNEUMONIA" if probability >= threshold else "NORMAL"
    return PredictionRecord(label=label, probability=probability, threshold=threshold, model_version=version,
                            image_sha256="0" * 64, reading=reading)


@pytest.mark.parametrize(("successes", "n"), [(0, 7), (3, 10), (27, 30), (50, 50), (412, 1000)])
def test_wilson_bounds_solve_the_score_equation(successes: int, n: int) -> None:
    # the Wilson bounds are the proportions p with (p_hat - p)^2 = z^2 p (1 - p) / n
    z, p_hat = 1.96, successes / n
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= p_hat <= high <= 1.0 and low < high
    for p in (low, high):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, abs=1e-12)
    assert wilson_interval(0, 0) is None


def test_agreement_by_model_version_against_the_readings() -> None:
    rng = np.random.default_rng(3)
    positives = np.round(rng.uniform(0.05, 1.0, 40), 3)  # read PNEUMONIA: most above the threshold
    negatives = np.round(rng.uniform(0.0, 0.45, 30), 3)  # read NORMAL: some above it (over-calls)
    served = [_record("v2", p, "PNEUMONIA") for p in positives] + [_record("v2", p, "NORMAL") for p in negatives]
    unread = [_record("v2", 0.9, ""), _record("v1", 0.1, "")]
    older = [_record("v1", 0.8, "PNEUMONIA", 0.5), _record("v1", 0.6, "NORMAL", 0.5),
             _record("v1", 0.2, "NORMAL", 0.5)]
    summaries = agreement(older + unread + served, "PNEUMONIA", served_version="v2")

    assert [(s["model_version"], s["served"], s["read"]) for s in summaries] == [("v2", True, 70), ("v1", False, 3)]
    now = summaries[0]
    tp, fn = int(np.sum(positives >= THRESHOLD)), int(np.sum(positives < THRESHOLD))
    tn, fp = int(np.sum(negatives < THRESHOLD)), int(np.sum(negatives >= THRESHOLD))
    assert fn > 0 and fp > 0  # the vectors exercise both kinds of disagreement
    assert now["confusion_matrix"] == {"tp": tp, "fn": fn, "tn": tn, "fp": fp}
    assert (now["read_positive"], now["read_negative"], now["threshold"]) == (40, 30, THRESHOLD)
    assert now["positive_agreement"]["value"] == pytest.approx(tp / 40)
    assert now["negative_agreement"] == {"value": pytest.approx(tn / 30), "n": 30,
                                         "interval_95": wilson_interval(tn, 30)}
    assert now["overall_agreement"]["value"] == pytest.approx((tp + tn) / 70)
    truth = np.r_[np.ones(40), np.zeros(30)]
    assert now["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, np.r_[positives, negatives]), abs=1e-12)

    rule = now["rule_threshold"]  # the model's own rule (sensitivity >= 0.95, then Youden's J) on these films
    assert rule["positive_agreement"] >= 0.95
    assert rule["positive_agreement"] == pytest.approx(np.mean(positives >= rule["threshold"]))
    assert rule["negative_agreement"] == pytest.approx(np.mean(negatives < rule["threshold"]))

    old = summaries[1]
    assert old["confusion_matrix"] == {"tp": 1, "fn": 0, "tn": 1, "fp": 1} and old["threshold"] == 0.5
    assert old["rule_threshold"] is None  # fewer than MIN_READINGS_PER_CLASS of each class
    assert agreement(unread, "PNEUMONIA", served_version="v2") == []


def test_one_class_read_gives_no_auc_and_no_rule_threshold() -> None:
    records = [_record("v2", p, "PNEUMONIA") for p in np.linspace(0.2, 1.0, 2 * MIN_READINGS_PER_CLASS)]
    (summary,) = agreement(records, "PNEUMONIA", served_version="v2")
    assert summary["roc_auc"] is None and summary["rule_threshold"] is None
    assert summary["negative_agreement"] == {"value": None, "n": 0, "interval_95": None}
