"""Account, token and audit administration, and the model's agreement with the clinicians' readings:
an admin user through the UI, or the admin CLI (the service token with ``X-Actor``). Never reachable
through the public Nginx."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import chain

from flask import Blueprint, Response, current_app, jsonify, request

from model.agreement import MIN_READINGS_PER_CLASS, agreement
from pneumonia_api.accounts import AccountError, generate_password
from pneumonia_api.audit import EVENT_ID
from pneumonia_api.request_body import json_object
from pneumonia_api.security import Principal, Security, principal, require
from pneumonia_api.service import PredictionService
from pneumonia_api.tokens import TokenError

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _security() -> Security:
    return current_app.extensions["security"]


@bp.before_request
def _admins_only():
    require("service", admin=True)


def _caller() -> Principal:
    return principal()  # _admins_only has checked it


def _audit(action: str, target: str = "", detail: str = "") -> None:
    caller = _caller()
    _security().audit.record(caller.actor, action, address=caller.address, target=target, detail=detail)


@bp.errorhandler(AccountError)
@bp.errorhandler(TokenError)
def _bad_request(exc: ValueError):
    return jsonify(error=str(exc), status=400), 400


@bp.get("/users")
def users():
    return jsonify(users=[u.public() for u in _security().accounts.list()])


@bp.post("/users")
def create_user():
    body = json_object()
    password = str(body.get("password") or generate_password())
    user = _security().accounts.create(str(body.get("username", "")).strip().lower(), str(body.get("role", "")),
                                       password, created_by=_caller().actor)
    _audit("account_created", user.username, f"role={user.role}")
    answer = {"user": user.public()}
    if not body.get("password"):
        answer["password"] = password
    return jsonify(answer), 201


@bp.post("/users/<username>/<action>")
def change_user(username: str, action: str):
    accounts = _security().accounts
    if action in ("disable", "enable"):
        accounts.set_disabled(username, action == "disable")
        _audit(f"account_{action}d", username)
        return jsonify(user=accounts.get(username).public())
    if action == "password":
        given = json_object().get("password")
        password = str(given or generate_password())
        accounts.set_password(username, password)
        _audit("password_reset", username)
        return jsonify(user=accounts.get(username).public(), **({} if given else {"password": password}))
    return jsonify(error=f"unknown action {action!r}", status=404), 404


@bp.get("/tokens")
def tokens():
    return jsonify(tokens=_security().tokens.list())


@bp.post("/tokens")
def create_token():
    name = str(json_object().get("name", "")).strip().lower()
    token = _security().tokens.create(name, created_by=_caller().actor)
    _audit("token_created", name)
    return jsonify(name=name, token=token), 201


@bp.delete("/tokens/<name>")
def revoke_token(name: str):
    _security().tokens.revoke(name)
    _audit("token_revoked", name)
    return jsonify(revoked=name)


def _since() -> datetime | None:
    raw = request.args.get("since", "")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise AccountError("since must be an ISO date or time, such as 2026-11-25T08:00") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@bp.get("/audit")
def audit():
    try:
        limit = min(max(int(request.args.get("limit", "200")), 1), 1000)
    except ValueError:
        raise AccountError("limit must be an integer") from None
    before = request.args.get("before", "")
    if before and not EVENT_ID.fullmatch(before):
        raise AccountError("before must be an audit event id, such as 1795800000000-0")
    events, next_before = _security().audit.query(actor=request.args.get("actor", ""),
                                                  action=request.args.get("action", ""), since=_since(), limit=limit,
                                                  before=before)
    _audit("audit_viewed", detail=request.query_string.decode()[:200])
    return jsonify(events=[e.__dict__ for e in events], next_before=next_before)


@bp.get("/audit/export")
def audit_export():
    since = _since()
    _audit("audit_exported", detail=f"since={since.isoformat() if since else 'start'}")
    lines = _security().audit.export(since)
    first = next(lines, "")  # read here, so that Redis failing is still a JSON 503, not a broken stream
    return Response(chain([first], lines), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=audit.jsonl"})


@bp.get("/agreement")
def readings_agreement():
    """How the stored results agree with the readings recorded on them, per model version, over the
    newest ``AGREEMENT_SCAN_MAX`` results with a reading (results expire after ``RESULT_TTL_SECONDS``)."""
    service: PredictionService = current_app.extensions["prediction_service"]
    scan_max = current_app.config["AGREEMENT_SCAN_MAX"]
    service.store.index_readings()  # once: results read before the store indexed the read ones
    records = service.store.read(scan_max)
    class_names = service.predictor.class_names
    summaries = agreement(records, class_names[1], served_version=service.predictor.version)
    _audit("agreement_viewed", detail=f"{len(records)} readings")
    return jsonify(class_names=class_names, results_scanned=len(records),
                   complete=service.store.count(read=True) <= scan_max, result_ttl_seconds=service.store.ttl_seconds,
                   min_readings_per_class=MIN_READINGS_PER_CLASS, models=summaries)
