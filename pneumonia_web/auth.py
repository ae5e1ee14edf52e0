"""Sign-in, sign-out and the guard that makes every other page need a signed-in user.

The browser's cookie (signed by Flask, HttpOnly, SameSite=Lax, Secure over TLS) carries only
a session id; the API keeps the session in Redis with its idle timeout and lifetime.
"""

from __future__ import annotations

from functools import wraps
from typing import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from pneumonia_web.api_client import ApiClient, ApiError, Caller

bp = Blueprint("auth", __name__)
OPEN_ENDPOINTS = {"auth.sign_in", "healthz", "metrics", "static"}  # metrics: hidden by Nginx


class TlsAwareSessionInterface(SecureCookieSessionInterface):
    """Marks the cookie ``Secure`` whenever the request came over HTTPS (or when configured)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def _client() -> ApiClient:
    return current_app.extensions["api_client"]


def caller() -> Caller:
    """The signed-in browser session as the API sees it."""
    return Caller(session_id=session.get("sid", ""), address=request.remote_addr or "")


def require_user() -> object:
    """``before_request``: resolve the session, or send the browser to the sign-in page."""
    if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
        return None
    if session.get("sid"):
        try:
            g.user = _client().session(caller())
            return None
        except ApiError as exc:
            if exc.status != 401:
                raise
            session.clear()
            flash("Your session has ended. Please sign in again.")
    return redirect(url_for("auth.sign_in", next=request.full_path if request.method == "GET" else None))


def admin_required(view: Callable) -> Callable:
    """Allow the view to admins only (others get 403)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.user["role"] != "admin":
            abort(403, "This page is for administrators.")
        return view(*args, **kwargs)
    return wrapper


def _safe_next(target: str | None) -> str:
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("views.index")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if request.method == "GET":
        return render_template("signin.html", next=request.args.get("next", ""))
    try:
        answer = _client().sign_in(request.form.get("username", ""), request.form.get("password", ""),
                                   request.remote_addr or "")
    except ApiError as exc:
        if exc.status not in (400, 401, 429):
            raise
        return render_template("signin.html", error=exc.message, next=request.form.get("next", "")), exc.status
    session.clear()  # a fresh cookie (and CSRF token) for the new session
    session["sid"] = answer["session_id"]
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/sign-out")
def sign_out():
    _client().sign_out(caller())
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.sign_in"))
