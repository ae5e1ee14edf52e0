"""Clinician-facing web UI (Flask application factory) in front of the prediction API.

Every page except sign-in and the health check needs a signed-in user (:mod:`pneumonia_web.auth`);
admins also get account and audit pages (:mod:`pneumonia_web.admin`) and the ``users`` /
``tokens`` CLI (:mod:`pneumonia_web.cli`).
"""

from __future__ import annotations

import logging

from flask import Flask
from flask_wtf import CSRFProtect
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from pneumonia_common.http_metrics import instrument
from pneumonia_web import admin, auth, cli, views
from pneumonia_web.api_client import ApiClient, ApiError, ApiUnavailable
from pneumonia_web.settings import WebSettings

log = logging.getLogger(__name__)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: over HTTPS Flask-WTF rejects a form post without a same-site Referer
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_app(settings: WebSettings | None = None) -> Flask:
    """Build the UI."""
    settings = settings or WebSettings.from_env()
    if not settings.secret_key:
        raise RuntimeError("FLASK_SECRET_KEY must be set (sessions and CSRF tokens are signed with it)")
    if not settings.api_token:
        raise RuntimeError("API_TOKEN must be set: the UI authenticates to the API with it")
    app = Flask(__name__)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)
    app.session_interface = auth.TlsAwareSessionInterface()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_upload_bytes,
        SESSION_COOKIE_NAME="pneumonia_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
    )
    CSRFProtect(app)
    instrument(app, "ui")
    app.extensions["api_client"] = ApiClient(settings.api_urls, settings.api_token, settings.api_timeout_seconds,
                                             settings.api_connect_timeout_seconds)
    for blueprint in (auth.bp, views.bp, admin.bp):
        app.register_blueprint(blueprint)
    app.before_request(auth.require_user)
    app.cli.add_command(cli.users)
    app.cli.add_command(cli.tokens)

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(ApiUnavailable)
    def _api_down(exc: ApiUnavailable):
        return views.error_page(503, "Service unavailable",
                                f"{exc}. Please try again in a minute; nothing you uploaded was kept.")

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        if exc.status == 404:
            return views.error_page(404, "Not found", "No such result.")
        status = exc.status if 400 <= exc.status < 500 else 502
        return views.error_page(status, "Could not complete the request", exc.message)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return views.error_page(400, "Form expired",
                                "The form was missing its security token. Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.code == 413:
            return views.error_page(413, "File too large",
                                    f"The upload limit is {settings.max_upload_bytes // 2**20} MB.")
        return views.error_page(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error")
        return views.error_page(500, "Something went wrong", "The error was logged.")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app
