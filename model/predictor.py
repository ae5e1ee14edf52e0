"""A loaded model plus its metadata: the one way evaluation, batch inference and the API predict.

Engines: ``onnx`` (ONNX Runtime on ``<model>.onnx`` beside the ``.keras`` file: fastest, and no
TensorFlow in the process) or ``keras``. ``auto`` (the default, or ``INFERENCE_ENGINE``) takes
ONNX when the file is there. The Keras model is loaded lazily for Grad-CAM. Both engines also give
the model's penultimate features, from which a model with fitted statistics (``atypicality`` in its
metadata, :mod:`model.atypicality`) scores how unlike the training films each film is.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model.artifacts import ModelArtifactError, load_keras_model, load_metadata, preprocess_spec
from model.atypicality import Atypicality, feature_model, statistics_path
from model.preprocessing import preprocess_bytes, scale

ENGINES = ("auto", "onnx", "keras")


class Predictor:
    """Probability of PNEUMONIA for images, with the model's stored decision threshold."""

    def __init__(self, model_path: Path | str, engine: str | None = None, with_atypicality: bool = True) -> None:
        self.model_path = Path(model_path)
        self.metadata: dict[str, Any] = load_metadata(self.model_path)
        self.spec = preprocess_spec(self.metadata)
        self.threshold = float(self.metadata["threshold"])
        self.version = str(self.metadata["model_version"])
        self.class_names: list[str] = list(self.metadata["class_names"])
        engine = engine or os.environ.get("INFERENCE_ENGINE", "auto")
        if engine not in ENGINES:
            raise ValueError(f"unknown inference engine {engine!r}; expected one of {ENGINES}")
        onnx_file = self.model_path.with_suffix(".onnx")
        if engine == "auto":
            engine = "onnx" if onnx_file.is_file() else "keras"
        self.engine = engine
        if engine == "onnx":
            self._session = _onnx_session(onnx_file)
            self._input_name = self._session.get_inputs()[0].name
            self.has_features = len(self._session.get_outputs()) > 1  # exports before features: one output
        else:
            _ = self.feature_net  # load now: a broken file must fail at start, not on a request
            self.has_features = True
        self.atypicality: Atypicality | None = None
        if with_atypicality and "atypicality" in self.metadata:
            self.atypicality = self._load_atypicality()

    def _load_atypicality(self) -> Atypicality:
        path = statistics_path(self.model_path)
        if not self.has_features:
            raise ModelArtifactError(f"{path.name} needs the features output: re-export the ONNX file "
                                     "(python -m model.onnx_export)")
        try:
            return Atypicality.load(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelArtifactError(f"atypicality statistics unreadable: {path}: {exc}") from exc

    @cached_property
    def keras_model(self) -> Any:
        """The Keras model (imports TensorFlow): the keras engine and Grad-CAM use it."""
        return load_keras_model(self.model_path)

    @cached_property
    def feature_net(self) -> Any:
        """The Keras model with the outputs ``(probability, features)`` (the keras engine)."""
        return feature_model(self.keras_model)

    def run_inputs(self, inputs: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``(N,)`` and penultimate features ``(N, D)`` (None for an ONNX export
        without them) for preprocessed inputs ``(N, size, size, 3)``."""
        probabilities, features = [], []
        for i in range(0, len(inputs), batch_size):
            batch = np.ascontiguousarray(inputs[i : i + batch_size], dtype=np.float32)
            if self.engine == "onnx":
                outputs = self._session.run(None, {self._input_name: batch})
            else:
                outputs = self.feature_net.predict_on_batch(batch)
            probabilities.append(np.asarray(outputs[0]).reshape(-1))
            if self.has_features:
                features.append(np.asarray(outputs[1]))
        if not probabilities:
            return np.zeros(0, dtype=np.float32), None
        return np.concatenate(probabilities), np.concatenate(features) if features else None

    def predict_inputs(self, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for preprocessed inputs ``(N, size, size, 3)``."""
        return self.run_inputs(inputs, batch_size)[0]

    def run_gray(self, grays: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`run_inputs` for decoded, resized grey images ``(N, size, size) uint8``."""
        return self.run_inputs(scale(grays.astype(np.float32), self.spec.scaling), batch_size)

    def assess_gray(self, grays: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and atypicality scores (None without fitted statistics) for decoded, resized
        grey images ``(N, size, size) uint8``."""
        probabilities, features = self.run_gray(grays, batch_size)
        if self.atypicality is None or features is None:
            return probabilities, None
        return probabilities, self.atypicality.score(features)

    def predict_gray(self, grays: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for decoded, resized grey images ``(N, size, size) uint8``."""
        return self.run_gray(grays, batch_size)[0]

    def predict_bytes(self, data: bytes) -> float:
        """Probability for one encoded image (raises ``ImageDecodeError`` for bad input)."""
        return float(self.predict_inputs(preprocess_bytes(data, self.spec)[None])[0])

    def label(self, probability: float) -> str:
        """Class name for a probability at the stored threshold."""
        return self.class_names[int(probability >= self.threshold)]


def _onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    threads = int(os.environ.get("ONNX_THREADS", "0"))  # 0: ONNX Runtime decides
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise ModelArtifactError(f"ONNX model unreadable: {path}: {exc}") from exc


def ensemble_probabilities(predictors: Sequence[Predictor], grays_by_spec: dict, batch_size: int = 32) -> np.ndarray:
    """Mean probability over several models, each fed its own preprocessing."""
    return np.mean([p.predict_gray(grays_by_spec[p.spec], batch_size) for p in predictors], axis=0)
