"""Who is calling the API: the UI's service token (optionally on behalf of a signed-in user)
or an integration token; plus the stores behind accounts, sessions and the audit trail.

* ``Authorization: Bearer <API_TOKEN>`` - the UI (and the admin CLI): trusted to pass
  ``X-Session-Id`` (a signed-in user), ``X-Client-Address`` and ``X-Actor``;
* ``Authorization: Bearer pnt_...`` - an integration token created with the admin CLI.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import redis
from flask import Response, abort, g, jsonify, request

from pneumonia_api import metrics
from pneumonia_api.accounts import AccountStore
from pneumonia_api.audit import AuditLog
from pneumonia_api.sessions import SessionStore
from pneumonia_api.settings import ApiSettings
from pneumonia_api.throttle import SignInThrottle
from pneumonia_api.tokens import TokenStore


@dataclass(frozen=True)
class Principal:
    """The caller: ``kind`` is ``service``, ``token`` or ``user``; ``role`` only for users."""

    kind: str
    name: str
    address: str
    role: str = ""

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def owner(self) -> str:
        """Who owns the results this caller creates ('' for the service itself)."""
        return "" if self.kind == "service" else self.actor

    @property
    def sees_everything(self) -> bool:
        return self.kind == "service" or self.role == "admin"

    def may_read(self, owner: str) -> bool:
        return self.sees_everything or owner == self.owner


@dataclass
class Security:
    """The Redis-backed stores of the security features, sharing one client."""

    accounts: AccountStore
    sessions: SessionStore
    throttle: SignInThrottle
    tokens: TokenStore
    audit: AuditLog

    @classmethod
    def build(cls, client: redis.Redis, settings: ApiSettings) -> "Security":
        return cls(
            accounts=AccountStore(client),
            sessions=SessionStore(client, settings.session_idle_seconds, settings.session_max_seconds,
                                  settings.request_timeout_seconds),
            throttle=SignInThrottle(client, settings.signin_max_failures_per_account,
                                    settings.signin_max_failures_per_address, settings.signin_window_seconds),
            tokens=TokenStore(client),
            audit=AuditLog(client, settings.audit_retention_days, scan_max=settings.audit_scan_max),
        )


def _error(status: int, message: str):
    return jsonify(error=message, status=status), status


def authenticate(security: Security, service_token: str):
    """``before_request`` hook: set ``g.principal`` or answer 401/503."""
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if token and hmac.compare_digest(token.encode(), service_token.encode()):
        address = request.headers.get("X-Client-Address", request.remote_addr or "")
        session_id = request.headers.get("X-Session-Id", "")
        if not session_id:
            g.principal = Principal("service", request.headers.get("X-Actor", "ui"), address)
            return None
        try:
            user = security.sessions.resolve(session_id, security.accounts)
        except redis.RedisError:
            metrics.REDIS_ERRORS.labels("session").inc()
            return _error(503, "sign-in service unavailable")
        if user is None:
            return _error(401, "session expired or signed out")
        g.principal = Principal("user", user.username, address, user.role)
        return None
    try:
        name = security.tokens.identify(token) if token else None
    except redis.RedisError:
        metrics.REDIS_ERRORS.labels("token").inc()
        return _error(503, "token check unavailable")
    if name is None:
        metrics.REJECTED.labels("unauthorized").inc()
        return _error(401, "missing or wrong bearer token")
    g.principal = Principal("token", name, request.remote_addr or "")
    return None


def renew_session(security: Security, response: Response) -> Response:
    """``after_request`` hook: a signed-in user's session idles from the end of a request, not its
    start (an upload answered after longer than the idle timeout must not end the session)."""
    caller = g.get("principal")
    if caller is not None and caller.kind == "user":  # a user principal comes from X-Session-Id alone
        try:
            security.sessions.renew(request.headers["X-Session-Id"])
        except redis.RedisError:
            metrics.REDIS_ERRORS.labels("session").inc()  # the answer stands; the session idles from its start
    return response


def principal() -> Principal:
    """The authenticated caller of this request."""
    return g.principal


def require(*kinds: str, admin: bool = False) -> Principal:
    """The caller, or abort 403 unless it is one of ``kinds`` (an admin user when ``admin``)."""
    caller = principal()
    allowed = caller.kind in kinds or (admin and caller.kind == "user" and caller.role == "admin")
    if not allowed:
        abort(403, "not allowed for this caller")
    return caller
