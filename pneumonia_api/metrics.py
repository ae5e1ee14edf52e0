"""Model and storage metrics of the API (request metrics live in pneumonia_common)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INFERENCE_SECONDS = Histogram(
    "pneumonia_inference_duration_seconds", "Model inference time per image in seconds.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
PREDICTIONS = Counter("pneumonia_predictions_total", "Predictions by predicted label.", ["label"])
PROBABILITY = Histogram(
    "pneumonia_prediction_probability", "Predicted probability of pneumonia (drift watch).",
    buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)),
)
ATYPICAL = Counter(
    "pneumonia_atypical_predictions_total", "Predictions on films unlike the training films (atypicality >= 1).",
)
OUTSIDE_INTENDED_USE = Counter(
    "pneumonia_outside_intended_use_total",
    "Predictions on DICOM films whose header puts them outside the intended use (age, body part, view, modality).",
)
READINGS = Counter(
    "pneumonia_readings_total",
    "Clinicians' first readings recorded on results, by the model's label and the clinician's reading.",
    ["model_label", "reading"],
)
REJECTED = Counter("pneumonia_rejected_uploads_total", "Uploads rejected before inference, by reason.", ["reason"])
DECODE_FAILURES = Counter("pneumonia_image_decode_failures_total", "Uploads that could not be decoded as images.")
REDIS_ERRORS = Counter("pneumonia_redis_errors_total", "Failed Redis operations by operation.", ["operation"])
MODEL_INFO = Gauge(
    "pneumonia_model_info", "The served model (value 1).", ["version", "backbone", "threshold"],
    multiprocess_mode="max",
)
