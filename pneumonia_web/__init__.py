"""Clinician-facing web UI (Flask application factory) in front of the prediction API."""

from __future__ import annotations

import logging
import re

from flask import Flask, render_template, request
from flask_wtf import CSRFProtect
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from pneumonia_common.http_metrics import instrument
from pneumonia_web.api_client import ApiClient, ApiError, ApiUnavailable
from pneumonia_web.settings import WebSettings

log = logging.getLogger(__name__)
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: WebSettings | None = None) -> Flask:
    """Build the UI."""
    settings = settings or WebSettings.from_env()
    if not settings.secret_key:
        raise RuntimeError("FLASK_SECRET_KEY must be set (sessions and CSRF tokens are signed with it)")
    if not settings.api_token:
        raise RuntimeError("API_TOKEN must be set: the UI authenticates to the API with it")
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_upload_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
    )
    CSRFProtect(app)
    instrument(app, "ui")
    client = ApiClient(settings.api_urls, settings.api_token, settings.api_timeout_seconds)
    app.extensions["api_client"] = client

    def _error_page(status: int, title: str, message: str):
        return render_template("error.html", status=status, title=title, message=message), status

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(ApiUnavailable)
    def _api_down(exc: ApiUnavailable):
        return _error_page(503, "Service unavailable",
                           f"{exc}. Please try again in a minute; nothing you uploaded was kept.")

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        status = exc.status if 400 <= exc.status < 500 else 502
        return _error_page(status, "Could not analyse this file", exc.message)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return _error_page(400, "Form expired", "The form was missing its security token. Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.code == 413:
            return _error_page(413, "File too large", f"The upload limit is {settings.max_upload_bytes // 2**20} MB.")
        return _error_page(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error")
        return _error_page(500, "Something went wrong", "The error was logged.")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/")
    def index():
        return render_template("index.html", max_mb=settings.max_upload_bytes // 2**20)

    @app.post("/predict")
    def predict():
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return _error_page(400, "No file chosen", "Choose a chest X-ray (JPEG, PNG or DICOM) to upload.")
        result = client.predict(upload.read(), upload.filename)
        return render_template("result.html", result=result, fresh=True)

    @app.get("/results")
    def results():
        return render_template("results.html", results=client.recent())

    @app.get("/results/<result_id>")
    def result(result_id: str):
        if not RESULT_ID.match(result_id):
            return _error_page(404, "Not found", "No such result.")
        return render_template("result.html", result=client.result(result_id), fresh=False)

    return app
