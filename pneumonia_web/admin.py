"""Admin pages: accounts (create, disable, enable, reset password), the audit trail, and how the model's
results agree with the clinicians' readings."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for

from pneumonia_web.api_client import ApiClient, ApiError
from pneumonia_web.auth import admin_required, caller

bp = Blueprint("admin", __name__, url_prefix="/admin")
AUDIT_FILTERS = ("actor", "action", "since")
AUDIT_PAGE = 500  # events a page of the audit trail shows; a full page links to the next, older one


def _client() -> ApiClient:
    return current_app.extensions["api_client"]


@bp.get("/users")
@admin_required
def users():
    return render_template("admin_users.html", users=_client().admin("GET", "users", caller())["users"])


@bp.post("/users")
@admin_required
def create_user():
    form = {"username": request.form.get("username", ""), "role": request.form.get("role", "clinician")}
    try:
        answer = _client().admin("POST", "users", caller(), json=form)
    except ApiError as exc:
        if exc.status != 400:
            raise
        flash(f"Not created: {exc.message}")
        return redirect(url_for("admin.users"))
    flash(f"Account {answer['user']['username']} created. Its one-time password: {answer['password']}")
    return redirect(url_for("admin.users"))


@bp.post("/users/<username>/<action>")
@admin_required
def change_user(username: str, action: str):
    if action not in ("disable", "enable", "password"):
        return redirect(url_for("admin.users"))
    answer = _client().admin("POST", f"users/{username}/{action}", caller(), json={})
    if action == "password":
        flash(f"New one-time password for {username}: {answer['password']}")
    else:
        flash(f"Account {username} {action}d.")
    return redirect(url_for("admin.users"))


@bp.get("/audit")
@admin_required
def audit():
    filters = {name: request.args.get(name, "").strip() for name in AUDIT_FILTERS}
    params = {k: v for k, v in filters.items() if v}
    before = request.args.get("before", "").strip() or None  # requests leaves out a None parameter
    answer = _client().admin("GET", "audit", caller(), params={**params, "limit": AUDIT_PAGE, "before": before})
    events, next_before = answer["events"], answer["next_before"]
    older = {**params, "before": next_before} if next_before else None
    return render_template("admin_audit.html", events=events, filters=filters, older=older,
                           scan_stopped=older is not None and len(events) < AUDIT_PAGE)


@bp.get("/audit/export")
@admin_required
def audit_export():
    since = request.args.get("since", "").strip()
    lines = _client().admin("GET", "audit/export", caller(), params={"since": since} if since else {})
    return Response(lines, mimetype="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=audit.jsonl"})


@bp.get("/agreement")
@admin_required
def agreement():
    return render_template("admin_agreement.html", answer=_client().admin("GET", "agreement", caller()))
