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
