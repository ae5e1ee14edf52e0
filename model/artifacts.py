"""Saving and loading a trained model with its metadata JSON (threshold, preprocessing, ...)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from model.preprocessing import PreprocessSpec

REQUIRED_METADATA = (
    "model_version",
    "backbone",
    "class_names",
    "threshold",
    "threshold_rule",
    "preprocessing",
    "gradcam_layer",
    "data_fingerprint",
    "validation_metrics",
    "training_command",
)


class ModelArtifactError(RuntimeError):
    """The model file or its metadata is missing, unreadable or incomplete."""


def metadata_path(model_path: Path | str) -> Path:
    """``models/best_model.keras`` -> ``models/best_model.json``."""
    return Path(model_path).with_suffix(".json")


def save_metadata(model_path: Path | str, metadata: dict[str, Any]) -> Path:
    """Write the metadata JSON beside the model (atomically)."""
    path = metadata_path(model_path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load_metadata(model_path: Path | str) -> dict[str, Any]:
    """Read and check the metadata beside ``model_path``."""
    path = metadata_path(model_path)
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelArtifactError(f"model metadata not found: {path}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelArtifactError(f"model metadata unreadable: {path}: {exc}") from exc
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelArtifactError(f"model metadata {path} lacks {', '.join(missing)}")
    return metadata


def preprocess_spec(metadata: dict[str, Any]) -> PreprocessSpec:
    """The preprocessing recorded in a model's metadata."""
    return PreprocessSpec.from_dict(metadata["preprocessing"])


def load_keras_model(model_path: Path | str) -> Any:
    """Load a ``.keras`` file for inference (no optimizer state)."""
    import keras  # deferred: callers that only need metadata stay light

    path = Path(model_path)
    if not path.is_file():
        raise ModelArtifactError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # a corrupt zip/h5 raises many types
        raise ModelArtifactError(f"model file unreadable: {path}: {exc}") from exc


SUMMARY_METRICS = ("n_images", "accuracy", "sensitivity", "specificity", "roc_auc")


def public_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a reader of a result should know about the model (the API's ``GET /model``): its
    identity, operating point and the metrics recorded in its metadata; no paths or commands.
    ``external`` is None unless the model was evaluated on an external folder and that recorded
    (the trainer's or ``model.ensemble``'s ``--external``, or ``model.evaluate --record``)."""

    def pick(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
        return {key: metrics[key] for key in SUMMARY_METRICS if key in metrics} if metrics else None

    atypicality = metadata.get("atypicality") or {}
    return {
        "model_version": metadata["model_version"],
        "created_utc": metadata.get("created_utc"),
        "architecture": metadata["backbone"],
        "input_size": metadata["preprocessing"]["input_size"],
        "class_names": metadata["class_names"],
        "threshold": metadata["threshold"],
        "threshold_rule": metadata["threshold_rule"],
        "validation": pick(metadata["validation_metrics"]),
        "external": pick(metadata.get("external_metrics")),
        "atypical_error_rates": {split: {key: atypicality[split][key] for key in
                                         ("flagged_fraction", "error_rate_flagged", "error_rate_unflagged")}
                                 for split in ("validation", "external") if split in atypicality},
    }
