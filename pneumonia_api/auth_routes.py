"""Sign-in for the UI (service token only): ``POST /auth/sign-in``, ``GET /auth/session``,
``POST /auth/sign-out``. Answers never reveal whether a username exists."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from pneumonia_api.request_body import json_object
from pneumonia_api.security import Security, require

bp = Blueprint("auth", __name__, url_prefix="/auth")
WRONG = "wrong username or password"
LOCKED = "too many failed sign-ins; try again later"


def _security() -> Security:
    return current_app.extensions["security"]


@bp.post("/sign-in")
def sign_in():
    caller = require("service")
    body = json_object()
    username = str(body.get("username", "")).strip().lower()[:64]
    password = str(body.get("password", ""))
    if not username or not password:
        return jsonify(error="username and password are required", status=400), 400
    security = _security()
    audit = lambda outcome: security.audit.record(  # noqa: E731
        f"user:{username}", "sign_in", outcome, address=caller.address)
    if security.throttle.locked(username, caller.address):
        audit("locked")
        return jsonify(error=LOCKED, status=429), 429
    user = security.accounts.verify(username, password)
    if user is None:
        security.throttle.failed(username, caller.address)
        audit("failed")
        return jsonify(error=WRONG, status=401), 401
    security.throttle.succeeded(username)
    session_id = security.sessions.create(user)
    audit("ok")
    return jsonify(session_id=session_id, username=user.username, role=user.role,
                   idle_seconds=security.sessions.idle_seconds)


@bp.get("/session")
def session():
    caller = require("user")
    return jsonify(username=caller.name, role=caller.role)


@bp.post("/sign-out")
def sign_out():
    caller = require("user")
    security = _security()
    security.sessions.delete(request.headers["X-Session-Id"])
    security.audit.record(caller.actor, "sign_out", address=caller.address)
    return jsonify(signed_out=True)
