"""Prediction routes: ``POST /predict``, ``GET /results/<id>``, ``GET /results?limit=N``,
``POST /results/<id>/reading`` (a clinician's own reading of the film, for measuring the model on
the site's films), and ``GET /model`` (what the served model is and how it was measured).

Every call is recorded in the audit trail under the caller's identity; users and integration
tokens see only their own results (an admin, and the UI's service identity, see all).
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request

from model.artifacts import public_summary
from model.preprocessing import ImageDecodeError, ImageTooLargeError, ImageTooSmallError, UnsupportedFormatError
from pneumonia_api import metrics
from pneumonia_api.request_body import json_object
from pneumonia_api.security import Security, principal
from pneumonia_api.service import PredictionService

bp = Blueprint("predictions", __name__)
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")

# decode error type -> (HTTP status, metric reason)
_DECODE_ERRORS = (
    (UnsupportedFormatError, 415, "unsupported_type"),
    (ImageTooLargeError, 413, "too_many_pixels"),
    (ImageTooSmallError, 422, "too_small"),
    (ImageDecodeError, 422, "corrupt"),
)


def _service() -> PredictionService:
    return current_app.extensions["prediction_service"]


def _audit(action: str, outcome: str = "ok", **details: str) -> None:
    caller = principal()
    security: Security = current_app.extensions["security"]
    security.audit.record(caller.actor, action, outcome, address=caller.address, **details)


def _error(status: int, message: str):
    return jsonify(error=message, status=status), status


def _rejected(reason: str, status: int, message: str):
    metrics.REJECTED.labels(reason).inc()
    _audit("prediction", "rejected", detail=reason)
    return _error(status, message)


@bp.post("/predict")
def predict():
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            return _rejected("no_file", 400, "multipart upload without a 'file' field")
        data = upload.read()
    else:
        data = request.get_data(cache=False)
    if not data:
        return _rejected("empty", 400, "empty upload: send an image as the 'file' field or as the request body")
    heatmap = request.args.get("heatmap", "0").lower() in ("1", "true", "yes")
    try:
        result = _service().predict(data, heatmap=heatmap, owner=principal().owner)
    except ImageDecodeError as exc:
        status, reason = next((s, r) for t, s, r in _DECODE_ERRORS if isinstance(exc, t))
        if reason == "corrupt":
            metrics.DECODE_FAILURES.inc()
        return _rejected(reason, status, str(exc))
    record = result.record
    _audit("prediction", target=record.id, image_sha256=record.image_sha256,
           detail=f"{record.label} p={record.probability:.4f} model={record.model_version} stored={result.stored}")
    return jsonify(result.to_json())


@bp.get("/results/<result_id>")
def get_result(result_id: str):
    record = _service().store.get(result_id) if RESULT_ID.match(result_id) else None
    if record is None or not principal().may_read(record.owner):
        _audit("result_viewed", "not_found" if record is None else "denied", target=result_id[:64])
        return _error(404, "no such result")
    _audit("result_viewed", target=record.id, image_sha256=record.image_sha256)
    return jsonify(record.to_dict())


@bp.post("/results/<result_id>/reading")
def record_reading(result_id: str):
    body = json_object()
    reading = str(body.get("reading", "")).strip().upper()
    names = _service().predictor.class_names
    if reading not in names:
        return _error(400, f"reading must be one of {', '.join(names)}")
    record = _service().store.get(result_id) if RESULT_ID.match(result_id) else None
    if record is None or not principal().may_read(record.owner):
        _audit("reading_recorded", "not_found" if record is None else "denied", target=result_id[:64])
        return _error(404, "no such result")
    updated = _service().store.set_reading(record.id, reading, principal().actor)
    if updated is None:
        return _error(404, "no such result")
    if not record.reading:  # the first reading counts; a correction is in the audit trail
        metrics.READINGS.labels(record.label, reading).inc()
    _audit("reading_recorded", target=record.id, detail=f"model {record.label}, reading {reading}"
           + (f" (was {record.reading})" if record.reading else ""))
    return jsonify(updated.to_dict())


@bp.get("/results")
def list_results():
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        return _error(400, "limit must be an integer")
    maximum = current_app.config["RESULTS_LIMIT_MAX"]
    if not 1 <= limit <= maximum:
        return _error(400, f"limit must be between 1 and {maximum}")
    caller = principal()
    owner = request.args.get("owner", "") if caller.sees_everything else caller.owner
    records = _service().store.recent(limit, owner=owner)
    count = f"{len(records)} result" + ("" if len(records) == 1 else "s")
    _audit("results_listed", detail=count + (f" of {owner}" if owner else ""))
    return jsonify(results=[r.to_dict() for r in records])


@bp.get("/model")
def model_info():
    """The served model: version, operating point and the metrics in its metadata (no paths, no commands)."""
    return jsonify(public_summary(_service().predictor.metadata))
