"""Counterfactual framing tests on the patient-level validation split (no external data).

``python -m scripts.framing_shortcut --model M [--model M2 ...] [--data ../shared/data/chest_xray]``

Every original-size validation film of the model's own split (``pre_resized_by_uploader == 0`` in
``SOURCES.csv``; every film when the data folder has no ``SOURCES.csv``) is re-framed and then goes
through the model's own preprocessing. Two ways of framing are class shortcuts in the train split:

* aspect ratio: the film cropped (central part kept) or widened (side columns repeated outwards)
  to a fixed width/height ratio - train NORMAL films are 1.23 wide, PNEUMONIA 1.50;
* field of view: only the central window of the film kept (a tighter collimation of the same
  chest) - train NORMAL films show head and abdomen around the chest, PNEUMONIA films are tight.

A model that reads the lungs gives nearly the same answer under every framing. Prints, per model
and framing, the specificity on NORMAL and the sensitivity on PNEUMONIA films at the model's stored
threshold, and one summary: the ROC AUC of all re-framed films pooled (high only when the model
both separates the classes and ignores the framing).
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from model.data import Sample  # noqa: E402
from model.evaluate import validation_samples  # noqa: E402
from model.metrics import roc_auc  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.preprocessing import decode_gray, resize_gray  # noqa: E402

RATIOS = (1.0, 1.25, 1.5, 1.75)
WINDOWS = (1.0, 0.9, 0.8, 0.7)


def reframe(gray: np.ndarray, ratio: float) -> np.ndarray:
    """The film cropped or widened (edge columns repeated) to ``ratio`` times as wide as high."""
    h, w = gray.shape
    target = round(h * ratio)
    if target <= w:
        left = (w - target) // 2
        return gray[:, left:left + target]
    extra = target - w
    return np.pad(gray, ((0, 0), (extra // 2, extra - extra // 2)), mode="edge")


def window(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of the film's height and width (a tighter field of view)."""
    h, w = gray.shape
    ch, cw = round(h * fraction), round(w * fraction)
    top, left = (h - ch) // 2, (w - cw) // 2
    return gray[top:top + ch, left:left + cw]


TESTS: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], tuple[float, ...]]] = {
    "width/height": (reframe, RATIOS),
    "central window": (window, WINDOWS),
}


def originals(data: Path, model: Predictor) -> list[Sample]:
    """The validation samples of the model's split that reached us at original size."""
    val = validation_samples([model], data)
    sources = data.parent / "SOURCES.csv"
    if not sources.is_file():
        return val
    with open(sources) as fh:
        squashed = {row["name"] for row in csv.DictReader(fh) if row["pre_resized_by_uploader"] == "1"}
    return [s for s in val if s.path.name not in squashed]


def framing_table(model: Predictor, films: list[np.ndarray], labels: np.ndarray) -> tuple[dict, float]:
    """Specificity, sensitivity and mean NORMAL probability for each test and setting, and the
    ROC AUC of every re-framed film pooled."""
    table: dict[str, dict[float, dict]] = {}
    pooled: list[np.ndarray] = []
    for name, (frame, settings) in TESTS.items():
        table[name] = {}
        for setting in settings:
            grays = np.stack([resize_gray(frame(g, setting), model.spec.input_size, model.spec.resize_mode)
                              for g in films])
            probs = np.asarray(model.predict_gray(grays)).reshape(-1)
            pooled.append(probs)
            called = probs >= model.threshold
            table[name][setting] = {"specificity": float(np.mean(~called[labels == 0])),
                                    "sensitivity": float(np.mean(called[labels == 1])),
                                    "mean_p_normal": float(probs[labels == 0].mean())}
    return table, roc_auc(np.tile(labels, len(pooled)), np.concatenate(pooled))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.framing_shortcut", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    args = parser.parse_args(argv)
    for path in args.model:
        model = Predictor(path)
        samples = originals(args.data, model)
        labels = np.array([s.label for s in samples])
        films = [decode_gray(s.path.read_bytes()) for s in samples]
        print(f"{model.version}: {len(samples)} original-size validation films "
              f"({int((labels == 0).sum())} NORMAL), threshold {model.threshold:.3f}")
        table, pooled_auc = framing_table(model, films, labels)
        for name, rows in table.items():
            print(f"  {name:<16}{'specificity':>12}{'sensitivity':>12}{'mean P NORMAL':>15}")
            for setting, row in rows.items():
                print(f"  {setting:<16}{row['specificity']:>12.3f}{row['sensitivity']:>12.3f}"
                      f"{row['mean_p_normal']:>15.3f}")
        print(f"  ROC AUC of all {sum(map(len, table.values()))} framings pooled: {pooled_auc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
