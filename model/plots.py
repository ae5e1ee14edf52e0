"""PNG plots: training curves, ROC, confusion matrix and reliability diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model.metrics import roc_curve  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Loss and AUC per epoch, training versus validation."""
    metrics = [m for m in ("loss", "auc", "accuracy") if m in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], "o-", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "o-", label="validation")
        ax.set(title=name, xlabel="epoch")
        ax.legend()
    return _save(fig, path)


def roc_plot(y_true: np.ndarray, y_prob: np.ndarray, threshold: float, path: Path) -> Path:
    """ROC curve with the operating point at the stored threshold marked."""
    fpr, tpr, _ = roc_curve(y_true, y_prob)
    pred = np.asarray(y_prob) >= threshold
    y = np.asarray(y_true).astype(bool)
    op = (np.mean(pred[~y]) if (~y).any() else 0.0, np.mean(pred[y]) if y.any() else 0.0)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label="ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(*op, "ro", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(loc="lower right")
    return _save(fig, path)


def confusion_plot(cm: Mapping[str, int], class_names: Sequence[str], path: Path) -> Path:
    """2x2 confusion matrix (rows: truth, columns: prediction)."""
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(grid, cmap="Blues")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, str(value), ha="center", va="center", color="black", fontsize=12)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=class_names, yticklabels=class_names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, path)


def reliability_plot(y_true: np.ndarray, y_prob: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Observed pneumonia rate per bin of predicted probability."""
    y_prob = np.asarray(y_prob, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(y_prob, edges) - 1, 0, bins - 1)
    centres, observed, counts = [], [], []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            centres.append(y_prob[mask].mean())
            observed.append(np.asarray(y_true)[mask].mean())
            counts.append(int(mask.sum()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(centres, observed, "o-", label="model")
    for x, y, n in zip(centres, observed, counts):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel="predicted probability", ylabel="observed fraction PNEUMONIA", title="Reliability")
    ax.legend(loc="upper left")
    return _save(fig, path)
