"""Pneumonia prediction API (Flask application factory).

Routes: ``POST /predict``, ``GET /results/<id>``, ``GET /results?limit=N``, ``GET /model`` (predictions),
``/auth/*`` (the UI's sign-in), ``/admin/*`` (accounts, tokens, audit trail, agreement with the
clinicians' readings), and the unauthenticated ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.
Everything else needs a bearer token: the UI's ``API_TOKEN`` or an integration token (see
:mod:`pneumonia_api.security`).
"""

from __future__ import annotations

import logging
import os

import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from model.predictor import Predictor
from model.store import ResultStore, redis_from_env
from pneumonia_api import admin_routes, auth_routes, metrics, predictions
from pneumonia_api.security import Security, authenticate, renew_session
from pneumonia_api.service import PredictionService
from pneumonia_api.settings import ApiSettings
from pneumonia_common.http_metrics import instrument

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"healthz", "readyz", "metrics"}


def _error(status: int, message: str):
    return jsonify(error=message, status=status), status


def create_app(settings: ApiSettings | None = None, service: PredictionService | None = None) -> Flask:
    """Build the API: load the model once, warm it up, then serve."""
    settings = settings or ApiSettings.from_env()
    if not settings.api_token:
        raise RuntimeError("API_TOKEN must be set: the API never runs without authentication")
    if service is None:
        store = ResultStore(redis_from_env(settings.redis_url, settings.redis_password, settings.redis_timeout_seconds),
                            settings.result_ttl_seconds)
        service = PredictionService(Predictor(settings.model_path), store)
        service.warm_up(heatmap=settings.warm_heatmap)
        log.info("model %s loaded from %s and warmed up", service.predictor.version, settings.model_path)
    security = Security.build(service.store.client, settings)
    security.audit.record("service:api", "model_loaded", detail=f"{service.predictor.version} pid={os.getpid()}")

    app = Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # Nginx in front: the client address
    app.config.update(MAX_CONTENT_LENGTH=settings.max_upload_bytes, MAX_FORM_MEMORY_SIZE=settings.max_upload_bytes,
                      RESULTS_LIMIT_MAX=settings.results_limit_max,
                      AGREEMENT_SCAN_MAX=settings.agreement_scan_max)
    app.extensions["prediction_service"] = service
    app.extensions["security"] = security
    instrument(app, "api")
    for blueprint in (predictions.bp, auth_routes.bp, admin_routes.bp):
        app.register_blueprint(blueprint)

    @app.before_request
    def _authenticate():
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        return authenticate(security, settings.api_token)

    @app.after_request
    def _renew_session(response):
        return renew_session(security, response)

    @app.errorhandler(redis.RedisError)
    def _store_unavailable(exc: redis.RedisError):
        metrics.REDIS_ERRORS.labels("request").inc()
        log.error("Redis failed: %s", exc)
        return _error(503, "data store unavailable; try again shortly")

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
        body = {"model": service.predictor.version, "model_loaded": True, "redis": redis_ok,
                "heatmap_ready": service.heatmap_ready.is_set()}
        return jsonify(status="ready" if redis_ok else "degraded", **body), 200 if redis_ok else 503

    return app
