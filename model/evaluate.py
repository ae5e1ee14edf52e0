"""Evaluate one model or an ensemble on a labelled folder.

``python -m model.evaluate --model PATH [--model PATH ...] --data DIR [--split validation]
[--threshold T] [--json OUT] [--plots DIR] [--predictions CSV] [--record]``

DIR is a Kaggle-layout root (its ``test/``, ``external/`` or ``val/`` folder, in that order) or a folder
with ``NORMAL/`` and ``PNEUMONIA/`` inside. ``--split validation`` instead re-creates the models' own
patient-level validation split from DIR's ``train/`` folder (the split checkpoints and thresholds are
chosen on) and also reports the threshold the threshold rule picks there, e.g. for an ensemble.
Metrics are reported at the models' (mean) stored threshold or ``--threshold`` (top-level keys of the
JSON) and at 0.5 (under ``at_0.5``), with 95 % intervals from 1,000 patient-level bootstrap resamples
(under ``ci95``). ``--predictions`` writes one row per image (file, label, probability, call, and
atypicality), for reading which films a model gets wrong. For one model with atypicality statistics
(:mod:`model.atypicality`) the report also says how many films were atypical and how often those and
the others were misclassified (under ``atypicality``). ``--record`` stores the metrics of one model
on an external folder, at its stored threshold, in its metadata as ``external_metrics`` (what the UI's
"About the model" page shows beside the validation metrics).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as ``python model/evaluate.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from model.artifacts import ModelArtifactError, load_metadata, save_metadata  # noqa: E402
from model.atypicality import flag_report, flag_summary  # noqa: E402
from model.data import (  # noqa: E402
    DatasetError,
    Sample,
    class_counts,
    fingerprint,
    list_samples,
    load_arrays,
    patient_split,
    resolve_split_dir,
)
from model.framing import Counterfactuals  # noqa: E402
from model.metrics import binary_metrics, bootstrap_intervals, near_best_thresholds  # noqa: E402
from model.predictor import Predictor, ensemble_probabilities  # noqa: E402
from model.preprocessing import resize_films  # noqa: E402

REPORTED = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "brier")
# what ``--record`` keeps of a result: the trainer's ``external_metrics`` keys, the intervals and the folder
RECORDED = ("threshold", "n_images", *REPORTED, "balanced_accuracy", "confusion_matrix", "ci95", "data")


def data_folder(root: Path) -> Path:
    """The labelled folder of ``root``: its ``test/``, ``external/`` or ``val/`` split, or ``root`` itself."""
    for split in ("test", "external", "val"):
        if (root / split).is_dir():
            return root / split
    return resolve_split_dir(root)


def split_seed(config: dict[str, Any]) -> int:
    """The seed a model's patient-level split was drawn with (``split_seed``, else ``seed``)."""
    return config["seed"] if config.get("split_seed") is None else config["split_seed"]


def validation_samples(predictors: list[Predictor], root: Path) -> list[Sample]:
    """The patient-level validation split the models were selected on, re-created from ``root/train``."""
    splits = {(p.metadata["config"]["val_fraction"], split_seed(p.metadata["config"])) for p in predictors}
    if len(splits) != 1:
        raise DatasetError(f"the models were validated on different splits (val fraction, seed): {sorted(splits)}")
    samples = list_samples(resolve_split_dir(root, "train"))
    _, val = patient_split(samples, *splits.pop())
    for p in predictors:
        if (p.metadata["data_fingerprint"] != fingerprint(samples)
                or p.metadata["validation_counts"] != class_counts(val)):
            raise DatasetError(f"{root} is not the training data of {p.version} (fingerprint or validation "
                               "counts differ): its validation split cannot be re-created")
    return val


def write_predictions(path: Path, samples: list[Sample], probs: np.ndarray, threshold: float,
                      names: list[str], scores: np.ndarray | None = None) -> None:
    """One CSV row per image: file name, label, probability of PNEUMONIA, the call at ``threshold``
    and the atypicality score (empty without one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["file", "label", "probability", "called", "atypicality"])
        for i, (sample, prob) in enumerate(zip(samples, probs)):
            out.writerow([sample.path.name, names[sample.label], f"{prob:.6f}", names[int(prob >= threshold)],
                          "" if scores is None else f"{scores[i]:.4f}"])


def evaluate(model_paths: list[Path], data: Path, plots_dir: Path | None = None, split: str | None = None,
             threshold: float | None = None, predictions: Path | None = None) -> dict[str, Any]:
    """Metrics of the (mean-probability ensemble of the) models on ``data`` (or its validation split)."""
    predictors = [Predictor(p) for p in model_paths]
    if split == "validation":
        folder = Path(data)
        samples = validation_samples(predictors, folder)
    else:
        folder = data_folder(Path(data))
        samples = list_samples(folder)
    grays: dict = {}
    for spec in {p.spec for p in predictors}:
        grays[spec], labels, kept = load_arrays(samples, spec)
    scores = None
    if len(predictors) == 1:
        probs, scores = predictors[0].assess_gray(grays[predictors[0].spec])
    else:
        probs = ensemble_probabilities(predictors, grays)
    if threshold is None:
        threshold = float(np.mean([p.threshold for p in predictors]))
    result: dict[str, Any] = binary_metrics(labels, probs, threshold)
    result["at_0.5"] = binary_metrics(labels, probs, 0.5)
    result["ci95"] = bootstrap_intervals(labels, probs, threshold, [s.patient for s in kept])
    if scores is not None:
        result["atypicality"] = flag_report(scores, labels, probs >= threshold)
    if split == "validation":
        cf = Counterfactuals(kept, folder, lambda films: ensemble_probabilities(
            predictors, {spec: resize_films(films, spec) for spec in grays}))
        result["rule_threshold"] = cf.threshold(labels, probs, predictors[0].metadata["config"]["min_sensitivity"])
        result["framing_auc"] = cf.pooled_auc
        result["rule_near_best"] = list(near_best_thresholds(*cf.pooled(labels, probs)))
    result.update(
        data=str(folder) + (" (validation split of train/)" if split == "validation" else ""),
        class_counts=class_counts(kept),
        models=[str(p) for p in model_paths],
        model_versions=[p.version for p in predictors],
        threshold_rule=predictors[0].metadata["threshold_rule"],
    )
    if predictions is not None:
        write_predictions(predictions, kept, probs, threshold, predictors[0].class_names, scores)
    if plots_dir is not None:
        from model import plots

        names = predictors[0].class_names
        plots.roc_plot(labels, probs, threshold, plots_dir / "roc.png")
        plots.confusion_plot(result["confusion_matrix"], names, plots_dir / "confusion_matrix.png")
        plots.reliability_plot(labels, probs, plots_dir / "reliability.png")
    return result


def record_external(model_path: Path, result: dict[str, Any]) -> Path:
    """Store ``result`` (one model, its stored threshold) in the model's metadata as ``external_metrics``."""
    metadata = load_metadata(model_path)
    metadata["external_metrics"] = {key: result[key] for key in RECORDED}
    return save_metadata(model_path, metadata)


def format_report(result: dict[str, Any]) -> str:
    """Human-readable table of the metrics at both thresholds."""
    lines = [f"data: {result['data']}  ({result['n_images']} images: {result['class_counts']})",
             f"{'metric':<12}{'@' + format(result['threshold'], '.4f'):>12}{'@0.5':>12}   95 % interval at the threshold"]
    for name in REPORTED:
        interval = result["ci95"].get(name)
        span = f"   {interval[0]:.4f} - {interval[1]:.4f}" if interval else ""
        lines.append(f"{name:<12}{result[name]:>12.4f}{result['at_0.5'][name]:>12.4f}{span}")
    for label, res in (("stored threshold", result), ("0.5", result["at_0.5"])):
        cm = res["confusion_matrix"]
        lines.append(f"confusion at {label}: TN {cm['tn']}  FP {cm['fp']}  FN {cm['fn']}  TP {cm['tp']}")
    if "atypicality" in result:
        lines.append(f"atypical films: {flag_summary(result['atypicality'])}")
    if "rule_threshold" in result:
        low, high = result["rule_near_best"]
        lines.append(f"threshold chosen by the rule on this split: {result['rule_threshold']:.4f} "
                     f"(framing counterfactuals: pooled ROC AUC {result['framing_auc']:.4f}); Youden's J "
                     f"of the pooled films within 0.01 of its best from {low:.4f} to {high:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="a .keras file with its metadata JSON beside it; repeat for an ensemble")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", choices=("validation",),
                        help="evaluate on the models' patient-level validation split of DATA/train")
    parser.add_argument("--threshold", type=float, help="operating threshold instead of the stored one")
    parser.add_argument("--json", type=Path, help="write the metrics here")
    parser.add_argument("--plots", type=Path, help="write ROC, confusion matrix and reliability PNGs here")
    parser.add_argument("--predictions", type=Path, help="write each image's probability and call here (CSV)")
    parser.add_argument("--record", action="store_true",
                        help="store the metrics in the model's metadata as external_metrics (one model, its stored "
                             "threshold, an external folder: not with --split or --threshold)")
    args = parser.parse_args(argv)
    if args.record and (len(args.model) > 1 or args.split or args.threshold is not None):
        parser.error("--record takes one model at its stored threshold on an external folder (no --split, "
                     "no --threshold)")
    try:
        result = evaluate(args.model, args.data, args.plots, args.split, args.threshold, args.predictions)
    except (DatasetError, ModelArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.record:
        print(f"recorded external_metrics in {record_external(args.model[0], result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
