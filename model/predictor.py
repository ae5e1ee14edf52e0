"""A loaded model plus its metadata: the one way evaluation, batch inference and the API predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model.artifacts import load_keras_model, load_metadata, preprocess_spec
from model.preprocessing import preprocess_bytes, scale


class Predictor:
    """Probability of PNEUMONIA for images, with the model's stored decision threshold."""

    def __init__(self, model_path: Path | str) -> None:
        self.model_path = Path(model_path)
        self.metadata: dict[str, Any] = load_metadata(self.model_path)
        self.spec = preprocess_spec(self.metadata)
        self.threshold = float(self.metadata["threshold"])
        self.version = str(self.metadata["model_version"])
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.model = load_keras_model(self.model_path)

    def predict_inputs(self, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for preprocessed inputs ``(N, size, size, 3)``."""
        out = [
            np.asarray(self.model.predict_on_batch(inputs[i : i + batch_size])).reshape(-1)
            for i in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict_gray(self, grays: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for decoded, resized grey images ``(N, size, size) uint8``."""
        out = [
            self.predict_inputs(scale(grays[i : i + batch_size].astype(np.float32), self.spec.scaling))
            for i in range(0, len(grays), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict_bytes(self, data: bytes) -> float:
        """Probability for one encoded image (raises ``ImageDecodeError`` for bad input)."""
        return float(self.predict_inputs(preprocess_bytes(data, self.spec)[None])[0])

    def label(self, probability: float) -> str:
        """Class name for a probability at the stored threshold."""
        return self.class_names[int(probability >= self.threshold)]


def ensemble_probabilities(predictors: Sequence[Predictor], grays_by_spec: dict, batch_size: int = 32) -> np.ndarray:
    """Mean probability over several models, each fed its own preprocessing."""
    return np.mean([p.predict_gray(grays_by_spec[p.spec], batch_size) for p in predictors], axis=0)
