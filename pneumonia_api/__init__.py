"""Pneumonia prediction API (Flask application factory).

Routes: ``POST /predict``, ``GET /results/<id>``, ``GET /results?limit=N``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``. Every route except the health
checks and metrics needs ``Authorization: Bearer <API_TOKEN>``.
"""

from __future__ import annotations

import hmac
import logging
import re

import redis

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from model.predictor import Predictor
from model.preprocessing import (
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    UnsupportedFormatError,
)
from model.store import ResultStore, redis_from_env
from pneumonia_api import metrics
from pneumonia_api.service import PredictionService
from pneumonia_api.settings import ApiSettings
from pneumonia_common.http_metrics import instrument

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"healthz", "readyz", "metrics"}
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")

# decode error type -> (HTTP status, metric reason)
_DECODE_ERRORS = (
    (UnsupportedFormatError, 415, "unsupported_type"),
    (ImageTooLargeError, 413, "too_many_pixels"),
    (ImageTooSmallError, 422, "too_small"),
    (ImageDecodeError, 422, "corrupt"),
)


def _error(status: int, message: str):
    return jsonify(error=message, status=status), status


def _store_unavailable(operation: str, exc: Exception):
    metrics.REDIS_ERRORS.labels(operation).inc()
    log.error("Redis %s failed: %s", operation, exc)
    return _error(503, "result store unavailable")


def create_app(settings: ApiSettings | None = None, service: PredictionService | None = None) -> Flask:
    """Build the API: load the model once, warm it up, then serve."""
    settings = settings or ApiSettings.from_env()
    if not settings.api_token:
        raise RuntimeError("API_TOKEN must be set: the API never runs without authentication")
    if service is None:
        store = ResultStore(redis_from_env(settings.redis_url, settings.redis_password, settings.redis_timeout_seconds),
                            settings.result_ttl_seconds)
        service = PredictionService(Predictor(settings.model_path), store)
        service.warm_up()
        log.info("model %s loaded from %s and warmed up", service.predictor.version, settings.model_path)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_upload_bytes
    app.extensions["prediction_service"] = service
    instrument(app, "api")
    expected = f"Bearer {settings.api_token}".encode()

    @app.before_request
    def _authenticate():
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            metrics.REJECTED.labels("unauthorized").inc()
            return _error(401, "missing or wrong bearer token")
        return None

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code == 413:
            metrics.REJECTED.labels("too_large").inc()
            return _error(413, f"upload larger than the limit of {settings.max_upload_bytes} bytes")
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error")
        return _error(500, "internal error")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        redis_ok = service.store.ping()
        body = {"model": service.predictor.version, "model_loaded": True, "redis": redis_ok}
        return jsonify(status="ready" if redis_ok else "degraded", **body), 200 if redis_ok else 503

    @app.post("/predict")
    def predict():
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                metrics.REJECTED.labels("no_file").inc()
                return _error(400, "multipart upload without a 'file' field")
            data = upload.read()
        else:
            data = request.get_data(cache=False)
        if not data:
            metrics.REJECTED.labels("empty").inc()
            return _error(400, "empty upload: send an image as the 'file' field or as the request body")
        heatmap = request.args.get("heatmap", "0").lower() in ("1", "true", "yes")
        try:
            result = service.predict(data, heatmap=heatmap)
        except ImageDecodeError as exc:
            status, reason = next((s, r) for t, s, r in _DECODE_ERRORS if isinstance(exc, t))
            metrics.REJECTED.labels(reason).inc()
            if reason == "corrupt":
                metrics.DECODE_FAILURES.inc()
            return _error(status, str(exc))
        return jsonify(result.to_json())

    @app.get("/results/<result_id>")
    def get_result(result_id: str):
        if not RESULT_ID.match(result_id):
            return _error(404, "no such result")
        try:
            record = service.store.get(result_id)
        except redis.RedisError as exc:
            return _store_unavailable("get", exc)
        if record is None:
            return _error(404, "no such result")
        return jsonify(record.to_dict())

    @app.get("/results")
    def list_results():
        try:
            limit = int(request.args.get("limit", "20"))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= settings.results_limit_max:
            return _error(400, f"limit must be between 1 and {settings.results_limit_max}")
        try:
            records = service.store.recent(limit)
        except redis.RedisError as exc:
            return _store_unavailable("list", exc)
        return jsonify(results=[r.to_dict() for r in records])

    return app
