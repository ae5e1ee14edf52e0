"""Server-side sign-in sessions in Redis: an idle timeout, an absolute lifetime, revocable.

The browser holds only a random session id (inside the UI's signed cookie); Redis keeps its
SHA-256, so a copy of the database holds no usable session.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import redis

from pneumonia_api.accounts import AccountStore, User


class SessionStore:
    """``<prefix>:session:<sha256(id)>`` hashes whose TTL is the idle timeout, renewed on use.

    Idle time runs from the end of the last request: while a request is being answered the TTL is
    the idle timeout plus ``request_seconds`` (no request runs longer: the worker timeout), and
    :meth:`renew` sets it back to the idle timeout when the answer is ready."""

    def __init__(self, client: redis.Redis, idle_seconds: int, max_seconds: int, request_seconds: int = 60,
                 prefix: str = "pneumonia") -> None:
        self.client = client
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.request_seconds = request_seconds
        self.prefix = prefix

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}:session:{hashlib.sha256(session_id.encode()).hexdigest()}"

    def create(self, user: User) -> str:
        """A new session id for a signed-in user."""
        session_id = secrets.token_urlsafe(32)
        key = self._key(session_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"username": user.username, "created": f"{time.time():.3f}"})
        pipe.expire(key, self.idle_seconds)
        pipe.execute()
        return session_id

    def resolve(self, session_id: str, accounts: AccountStore) -> User | None:
        """The session's user, renewing its idle timeout; None when expired, revoked or disabled."""
        key = self._key(session_id)
        data = self.client.hgetall(key)
        if not data:
            return None
        created = float(data["created"])
        user = accounts.get(data["username"])
        if (user is None or user.disabled or created < user.sessions_valid_after
                or time.time() - created > self.max_seconds):
            self.client.delete(key)
            return None
        self.client.expire(key, self.idle_seconds + self.request_seconds)
        return user

    def renew(self, session_id: str) -> None:
        """Restart the idle timeout of a live session at the end of a request (never revives an ended one)."""
        self.client.expire(self._key(session_id), self.idle_seconds)

    def delete(self, session_id: str) -> None:
        """Sign out."""
        self.client.delete(self._key(session_id))
