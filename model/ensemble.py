"""Combine trained models into one ensemble model.

``python -m model.ensemble --model A.keras --model B.keras --data DIR --output models/best_model.keras
[--external DIR] [--min-sensitivity 0.95]``

The ensemble is one Keras model: the members side by side on one input, their probabilities
averaged. The API, batch inference, the ONNX export and Grad-CAM (over the members' layers
together) therefore serve it like any single model. The members must share their preprocessing
and their patient-level validation split (checked against their metadata); the ensemble's
threshold is chosen on that split by the trainer's rule, and its metadata lists every member
with the command that trained it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as ``python model/ensemble.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.artifacts import ModelArtifactError  # noqa: E402
from model.cli import exit_code  # noqa: E402
from model.data import DatasetError, load_arrays  # noqa: E402
from model.predictor import Predictor  # noqa: E402

MEMBER_KEYS = ("model_version", "training_command", "keras_backend", "finishing_command", "validation_metrics",
               "validation_framing_auc", "external_metrics", "epochs_run", "train_seconds", "pretraining")


def build_ensemble(members: list[Any]) -> Any:
    """One Keras model averaging the members' probabilities (members renamed ``member1``...)."""
    import keras

    inputs = keras.Input(members[0].inputs[0].shape[1:], name="image")
    outputs = [keras.Model(m.input, m.output, name=f"member{i}")(inputs) for i, m in enumerate(members, 1)]
    return keras.Model(inputs, keras.layers.Average(name="pneumonia")(outputs), name="pneumonia_ensemble")


def combine(paths: list[Path], data: Path, output: Path, external: Path | None = None,
            min_sensitivity: float = 0.95, command: str = "") -> dict[str, Any]:
    """Build, assess and publish the ensemble of ``paths``; returns its metadata."""
    from model.evaluate import split_seed, validation_samples
    from model.training import assess, external_metrics, identity, publish

    predictors = [Predictor(p) for p in paths]
    specs = {p.spec for p in predictors}
    if len(specs) != 1:
        raise ModelArtifactError(f"the members preprocess differently: {sorted(map(str, specs))}")
    spec = specs.pop()
    val = validation_samples(predictors, data)
    x_val, y_val, val = load_arrays(val, spec)
    net = build_ensemble([p.keras_model for p in predictors])
    output.parent.mkdir(parents=True, exist_ok=True)
    net.save(output)
    first = predictors[0].metadata
    backbones = sorted({p.metadata["backbone"] for p in predictors})
    metadata: dict[str, Any] = {
        **identity(f"ensemble{len(paths)}-{'+'.join(backbones)}", spec.input_size, first["data_fingerprint"]),
        "backbone": f"{len(paths)} x {'+'.join(backbones)}",
        "gradcam_layer": first["gradcam_layer"],
        **assess(net, spec, val, x_val, y_val, data, min_sensitivity),
        "training_counts": first["training_counts"],
        "members": [{key: p.metadata.get(key) for key in MEMBER_KEYS} for p in predictors],
        "config": {"val_fraction": first["config"]["val_fraction"], "split_seed": split_seed(first["config"]),
                   "seed": first["config"]["seed"], "min_sensitivity": min_sensitivity},
        "training_command": command,
    }
    if external is not None:
        metadata["external_metrics"] = external_metrics(net, spec, external, metadata["threshold"])
    publish(output, metadata)
    return metadata


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m model.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="a member's .keras file with its metadata JSON beside it; repeat (at least 2)")
    parser.add_argument("--data", type=Path, required=True, help="the members' training data (Kaggle root)")
    parser.add_argument("--output", type=Path, required=True, help="where the ensemble's .keras file goes")
    parser.add_argument("--external", type=Path, help="folder evaluated for the report only")
    parser.add_argument("--min-sensitivity", type=float, default=0.95, help="threshold rule's sensitivity floor")
    args = parser.parse_args(argv)
    if len(args.model) < 2:
        parser.error("an ensemble needs at least two --model")
    return exit_code(lambda: combine(args.model, args.data, args.output, args.external, args.min_sensitivity,
                                     command="python -m model.ensemble " + shlex.join(argv)),
                     DatasetError, ModelArtifactError)


if __name__ == "__main__":
    sys.exit(main())
