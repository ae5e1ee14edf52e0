"""Evaluate one model or an ensemble on a labelled folder.

``python -m model.evaluate --model PATH [--model PATH ...] --data DIR [--json OUT] [--plots DIR]``

DIR is a Kaggle-layout root (its ``test/``, ``external/`` or ``val/`` folder, in that order) or a folder
with ``NORMAL/`` and ``PNEUMONIA/`` inside. Metrics are reported at the model's stored
threshold (top-level keys of the JSON) and at 0.5 (under ``at_0.5``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as ``python model/evaluate.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from model.artifacts import ModelArtifactError  # noqa: E402
from model.data import DatasetError, class_counts, list_samples, load_arrays, resolve_split_dir  # noqa: E402
from model.metrics import binary_metrics  # noqa: E402
from model.predictor import Predictor, ensemble_probabilities  # noqa: E402

REPORTED = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "brier")


def _data_folder(root: Path) -> Path:
    for split in ("test", "external", "val"):
        if (root / split).is_dir():
            return root / split
    return resolve_split_dir(root)


def evaluate(model_paths: list[Path], data: Path, plots_dir: Path | None = None) -> dict[str, Any]:
    """Metrics of the (mean-probability ensemble of the) models on ``data``."""
    predictors = [Predictor(p) for p in model_paths]
    folder = _data_folder(Path(data))
    samples = list_samples(folder)
    grays: dict = {}
    for spec in {p.spec for p in predictors}:
        grays[spec], labels, kept = load_arrays(samples, spec)
    probs = ensemble_probabilities(predictors, grays)
    threshold = float(np.mean([p.threshold for p in predictors]))
    result: dict[str, Any] = binary_metrics(labels, probs, threshold)
    result["at_0.5"] = binary_metrics(labels, probs, 0.5)
    result.update(
        data=str(folder),
        class_counts=class_counts(kept),
        models=[str(p) for p in model_paths],
        model_versions=[p.version for p in predictors],
        threshold_rule=predictors[0].metadata["threshold_rule"],
    )
    if plots_dir is not None:
        from model import plots

        names = predictors[0].class_names
        plots.roc_plot(labels, probs, threshold, plots_dir / "roc.png")
        plots.confusion_plot(result["confusion_matrix"], names, plots_dir / "confusion_matrix.png")
        plots.reliability_plot(labels, probs, plots_dir / "reliability.png")
    return result


def format_report(result: dict[str, Any]) -> str:
    """Human-readable table of the metrics at both thresholds."""
    lines = [f"data: {result['data']}  ({result['n_images']} images: {result['class_counts']})",
             f"{'metric':<12}{'@' + format(result['threshold'], '.4f'):>12}{'@0.5':>12}"]
    for name in REPORTED:
        lines.append(f"{name:<12}{result[name]:>12.4f}{result['at_0.5'][name]:>12.4f}")
    for label, res in (("stored threshold", result), ("0.5", result["at_0.5"])):
        cm = res["confusion_matrix"]
        lines.append(f"confusion at {label}: TN {cm['tn']}  FP {cm['fp']}  FN {cm['fn']}  TP {cm['tp']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="a .keras file with its metadata JSON beside it; repeat for an ensemble")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="write the metrics here")
    parser.add_argument("--plots", type=Path, help="write ROC, confusion matrix and reliability PNGs here")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.model, args.data, args.plots)
    except (DatasetError, ModelArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
