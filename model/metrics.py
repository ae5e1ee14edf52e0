"""Binary classification metrics in NumPy (tested against scikit-learn)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    """Counts ``tn, fp, fn, tp`` with PNEUMONIA (1) as the positive class."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    return {
        "tn": int(np.sum((y_true == 0) & (y_pred == 0))),
        "fp": int(np.sum((y_true == 0) & (y_pred == 1))),
        "fn": int(np.sum((y_true == 1) & (y_pred == 0))),
        "tp": int(np.sum((y_true == 1) & (y_pred == 1))),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def roc_curve(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds, descending, with (0, 0) first."""
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    order = np.argsort(-y_prob, kind="mergesort")
    probs, truth = y_prob[order], y_true[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(probs)), len(probs) - 1]
    tps = np.cumsum(truth)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    return fpr, tpr, np.r_[np.inf, probs[last_of_run]]


def roc_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal, ties handled); NaN with one class only."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.min(initial=1) == y_true.max(initial=0):
        return float("nan")
    fpr, tpr, _ = roc_curve(y_true, y_prob)
    return float(np.trapezoid(tpr, fpr))


def average_precision(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's average precision."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(y_prob, dtype=np.float64), kind="mergesort")
    probs, truth = np.asarray(y_prob, dtype=np.float64)[order], y_true[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(probs)), len(probs) - 1]
    tps = np.cumsum(truth)[last_of_run]
    precision = tps / (last_of_run + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float) -> dict[str, float | int | dict]:
    """Every reported metric at one decision threshold (probability >= threshold is PNEUMONIA)."""
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    cm = confusion(y_true, y_prob >= threshold)
    tp, tn, fp, fn = cm["tp"], cm["tn"], cm["fp"], cm["fn"]
    sensitivity = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    return {
        "threshold": float(threshold),
        "n_images": int(len(y_true)),
        "accuracy": _ratio(tp + tn, len(y_true)),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "roc_auc": roc_auc(y_true, y_prob),
        "pr_auc": average_precision(y_true, y_prob),
        "brier": float(np.mean((y_prob - y_true) ** 2)),
        "confusion_matrix": cm,
    }


def choose_threshold(y_true: np.ndarray, y_prob: np.ndarray, min_sensitivity: float = 0.95) -> float:
    """The decision threshold rule.

    Among thresholds whose sensitivity is at least ``min_sensitivity``, take the one
    with the largest Youden's J (sensitivity + specificity - 1, i.e. the best balanced
    accuracy); ties go to the higher threshold. If no threshold reaches the minimum
    sensitivity, maximise J alone. Returned as the midpoint between neighbouring
    scores (the chosen one and the next lower), so the validation images are classified
    exactly as at the chosen score while the threshold does not sit on one image.
    """
    fpr, tpr, thresholds = roc_curve(y_true, y_prob)
    j = tpr - fpr
    eligible = tpr >= min_sensitivity
    candidates = np.flatnonzero(eligible) if eligible[1:].any() else np.arange(1, len(j))
    candidates = candidates[candidates > 0]
    best = candidates[np.argmax(j[candidates])]
    lower = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
    return float((thresholds[best] + lower) / 2)


def near_best_thresholds(y_true: np.ndarray, y_prob: np.ndarray, tolerance: float = 0.01) -> tuple[float, float]:
    """The lowest and highest score at which Youden's J comes within ``tolerance`` of its maximum:
    how sharply the data pin the threshold down."""
    fpr, tpr, thresholds = roc_curve(y_true, y_prob)
    j = (tpr - fpr)[1:]
    near = thresholds[1:][j >= j.max() - tolerance]
    return float(near.min()), float(near.max())


def bootstrap_intervals(y_true: np.ndarray, y_prob: np.ndarray, threshold: float, groups: list[str],
                        n_resamples: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile intervals of accuracy, sensitivity, specificity and ROC AUC, resampling
    patients (``groups``) with replacement so that a patient's films stay together."""
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    patients, index = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(patients))]
    rng = np.random.default_rng(seed)
    names = ("accuracy", "sensitivity", "specificity", "roc_auc")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(n_resamples):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(patients), len(patients))])
        truth, prob = y_true[rows], y_prob[rows]
        if truth.min() == truth.max():
            continue
        called = prob >= threshold
        samples["accuracy"].append(float(np.mean(called == truth)))
        samples["sensitivity"].append(float(np.mean(called[truth == 1])))
        samples["specificity"].append(float(np.mean(~called[truth == 0])))
        samples["roc_auc"].append(roc_auc(truth, prob))
    return {name: [float(v) for v in np.percentile(samples[name], [2.5, 97.5])] for name in names}
