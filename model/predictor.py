"""A loaded model plus its metadata: the one way evaluation, batch inference and the API predict.

Engines: ``onnx`` (ONNX Runtime on ``<model>.onnx`` beside the ``.keras`` file: fastest, and no
TensorFlow in the process) or ``keras``. ``auto`` (the default, or ``INFERENCE_ENGINE``) takes
ONNX when the file is there. The Keras model is loaded lazily for Grad-CAM.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model.artifacts import ModelArtifactError, load_keras_model, load_metadata, preprocess_spec
from model.preprocessing import preprocess_bytes, scale

ENGINES = ("auto", "onnx", "keras")


class Predictor:
    """Probability of PNEUMONIA for images, with the model's stored decision threshold."""

    def __init__(self, model_path: Path | str, engine: str | None = None) -> None:
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
        else:
            _ = self.keras_model  # load now: a broken file must fail at start, not on a request

    @cached_property
    def keras_model(self) -> Any:
        """The Keras model (imports TensorFlow): the keras engine and Grad-CAM use it."""
        return load_keras_model(self.model_path)

    def predict_inputs(self, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for preprocessed inputs ``(N, size, size, 3)``."""
        out = []
        for i in range(0, len(inputs), batch_size):
            batch = np.ascontiguousarray(inputs[i : i + batch_size], dtype=np.float32)
            if self.engine == "onnx":
                out.append(self._session.run(None, {self._input_name: batch})[0].reshape(-1))
            else:
                out.append(np.asarray(self.keras_model.predict_on_batch(batch)).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict_gray(self, grays: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities for decoded, resized grey images ``(N, size, size) uint8``."""
        return self.predict_inputs(scale(grays.astype(np.float32), self.spec.scaling), batch_size)

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
