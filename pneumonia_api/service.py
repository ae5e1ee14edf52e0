"""Prediction service: decode, predict, explain and store one uploaded image."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from PIL import Image

from model.intended_use import intended_use_note
from model.predictor import Predictor
from model.preprocessing import load_gray
from model.store import PredictionRecord, ResultStore
from pneumonia_api import metrics

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """What ``POST /predict`` answers."""

    record: PredictionRecord
    inference_ms: float
    stored: bool
    heatmap_png: bytes | None = None
    input_png: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.record.to_dict(),
            "inference_ms": round(self.inference_ms, 2),
            "stored": self.stored,
        }
        body.pop("file_name")
        if self.heatmap_png is not None:
            body["heatmap_png_base64"] = base64.b64encode(self.heatmap_png).decode()
        if self.input_png is not None:
            body["input_png_base64"] = base64.b64encode(self.input_png).decode()
        return body


class PredictionService:
    """One loaded model and the result store; safe to share across a worker's requests."""

    def __init__(self, predictor: Predictor, store: ResultStore) -> None:
        self.predictor = predictor
        self.store = store
        self._gradcam = None
        self._gradcam_lock = threading.Lock()
        self.heatmap_ready = threading.Event()  # set once the Grad-CAM model is built and has drawn a map
        meta = predictor.metadata
        metrics.MODEL_INFO.labels(predictor.version, meta["backbone"], f"{predictor.threshold:.4f}").set(1)

    def warm_up(self, heatmap: bool = False) -> None:
        """One prediction on a blank image so the first request is not slow; with ``heatmap``, the
        Grad-CAM model (TensorFlow: about 6 s here, 30 s from a cold disk) is built in the background,
        so that the first upload from the UI, which always asks for a heat-map, is not slow either."""
        blank = np.zeros((self.predictor.spec.input_size,) * 2, dtype=np.uint8)
        self.predictor.predict_gray(blank[None])
        if heatmap:
            threading.Thread(target=self._warm_heatmap, args=(blank,), name="heatmap-warm-up", daemon=True).start()

    def _warm_heatmap(self, blank: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            self._explain(blank)
        except Exception:  # noqa: BLE001 - a request asking for a heat-map will meet (and report) the same error
            log.exception("heat-map warm-up failed")
            return
        log.info("heat-map model ready after %.1f s of warm-up", time.perf_counter() - started)

    def predict(self, data: bytes, heatmap: bool = False, owner: str = "") -> Prediction:
        """Classify image bytes (raises ``ImageDecodeError`` for bad input) and try to store it."""
        gray = load_gray(data, self.predictor.spec)
        started = time.perf_counter()
        probabilities, atypicality = self.predictor.assess_gray(gray[None])
        elapsed = time.perf_counter() - started
        metrics.INFERENCE_SECONDS.observe(elapsed)
        probability = float(probabilities[0])
        record = PredictionRecord(
            label=self.predictor.label(probability), probability=probability, threshold=self.predictor.threshold,
            model_version=self.predictor.version, image_sha256=hashlib.sha256(data).hexdigest(), owner=owner,
            atypicality=None if atypicality is None else float(atypicality[0]),
            outside_intended_use=intended_use_note(data),
        )
        metrics.PREDICTIONS.labels(record.label).inc()
        metrics.PROBABILITY.observe(probability)
        if record.atypical:
            metrics.ATYPICAL.inc()
        if record.outside_intended_use:
            metrics.OUTSIDE_INTENDED_USE.inc()
        result = Prediction(record, elapsed * 1000, self._store(record))
        if heatmap:
            result.heatmap_png = self._explain(gray)
            result.input_png = _png(gray)
        return result

    def _store(self, record: PredictionRecord) -> bool:
        try:
            self.store.save(record)
            return True
        except redis.RedisError as exc:
            metrics.REDIS_ERRORS.labels("save").inc()
            log.error("could not store result %s in Redis: %s", record.id, exc)
            return False

    def _explain(self, gray: np.ndarray) -> bytes:
        with self._gradcam_lock:  # one build, shared with the warm-up thread
            if self._gradcam is None:
                from model.gradcam import GradCam

                self._gradcam = GradCam(self.predictor.keras_model, self.predictor.metadata["gradcam_layer"])
            png = self._gradcam.overlay_png(gray, self.predictor.spec, self.predictor.threshold)
        self.heatmap_ready.set()
        return png


def _png(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
