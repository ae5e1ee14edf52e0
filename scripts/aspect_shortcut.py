"""Counterfactual aspect-ratio test on the patient-level validation split (no external data).

``python -m scripts.aspect_shortcut --model M [--model M2 ...] [--data ../shared/data/chest_xray]``

Every original-size validation film of the model's own split (``pre_resized_by_uploader == 0`` in
``SOURCES.csv``) is re-framed to a fixed width/height ratio - the central part kept when narrower,
the side columns repeated outwards when wider, as a wider or narrower exposure of the same chest
would look - and then goes through the model's own preprocessing (squash). A model that reads the
lungs gives nearly the same answer at every ratio; one that learned the frame (train NORMAL films
are 1.23 wide, PNEUMONIA 1.50) calls wide films pneumonia.
Prints, per model and ratio, the specificity on NORMAL and the sensitivity on PNEUMONIA films at
the model's stored threshold.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from model.data import list_samples, patient_split, resolve_split_dir  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.preprocessing import decode_gray, resize_gray  # noqa: E402

RATIOS = (1.0, 1.25, 1.5, 1.75)


def reframe(gray: np.ndarray, ratio: float) -> np.ndarray:
    """The film cropped or widened (edge columns repeated) to ``ratio`` times as wide as high."""
    h, w = gray.shape
    target = round(h * ratio)
    if target <= w:
        left = (w - target) // 2
        return gray[:, left:left + target]
    extra = target - w
    return np.pad(gray, ((0, 0), (extra // 2, extra - extra // 2)), mode="edge")


def originals(data: Path, model: Predictor) -> list:
    """The validation samples of the model's split that reached us at original size."""
    config = model.metadata["config"]
    _, val = patient_split(list_samples(resolve_split_dir(data, "train")), config["val_fraction"], config["seed"])
    with open(data.parent / "SOURCES.csv") as fh:
        squashed = {row["name"] for row in csv.DictReader(fh) if row["pre_resized_by_uploader"] == "1"}
    return [s for s in val if s.path.name not in squashed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.aspect_shortcut", description=__doc__.splitlines()[0])
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
        print(f"  {'width/height':<14}{'specificity':>12}{'sensitivity':>12}{'mean P NORMAL':>15}")
        for ratio in RATIOS:
            grays = np.stack([resize_gray(reframe(g, ratio), model.spec.input_size, model.spec.resize_mode)
                              for g in films])
            probs = np.asarray(model.predict_gray(grays)).reshape(-1)
            called = probs >= model.threshold
            print(f"  {ratio:<14}{np.mean(~called[labels == 0]):>12.3f}{np.mean(called[labels == 1]):>12.3f}"
                  f"{probs[labels == 0].mean():>15.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
