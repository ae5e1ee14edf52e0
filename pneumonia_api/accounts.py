"""Clinician and admin accounts in Redis, with argon2id password hashes (argon2-cffi)."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("clinician", "admin")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class AccountError(ValueError):
    """An account request that cannot be done (bad name, weak password, exists, unknown)."""


@dataclass(frozen=True)
class User:
    """An account without its password hash."""

    username: str
    role: str
    disabled: bool
    created_utc: str
    created_by: str
    sessions_valid_after: float

    def public(self) -> dict[str, object]:
        return {"username": self.username, "role": self.role, "disabled": self.disabled,
                "created_utc": self.created_utc, "created_by": self.created_by}


def generate_password() -> str:
    """A random password for a new or reset account, shown once."""
    return secrets.token_urlsafe(15)


def check_password(password: str) -> None:
    """Raise ``AccountError`` when a password is too short or too long."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountError(f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")


class AccountStore:
    """``<prefix>:user:<name>`` hashes plus the ``<prefix>:users`` set of names."""

    def __init__(self, client: redis.Redis, prefix: str = "pneumonia", hasher: PasswordHasher | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    def _key(self, username: str) -> str:
        return f"{self.prefix}:user:{username}"

    def create(self, username: str, role: str, password: str, created_by: str) -> User:
        """A new enabled account; ``AccountError`` for a bad name, role or password, or a taken name."""
        if not USERNAME.match(username):
            raise AccountError("a username is 2-64 characters: lower-case letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        check_password(password)
        if not self.client.hsetnx(self._key(username), "username", username):
            raise AccountError(f"account {username!r} already exists")
        now = time.time()
        self.client.hset(self._key(username), mapping={
            "role": role, "password_hash": self.hasher.hash(password), "disabled": "0",
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "created_by": created_by, "sessions_valid_after": f"{now:.3f}",
        })
        self.client.sadd(f"{self.prefix}:users", username)
        return self._require(username)

    def get(self, username: str) -> User | None:
        """The account, or None."""
        data = self.client.hgetall(self._key(username)) if USERNAME.match(username) else {}
        return _user(data) if data.get("password_hash") else None

    def list(self) -> list[User]:
        """Every account, by name."""
        users = (self.get(name) for name in sorted(self.client.smembers(f"{self.prefix}:users")))
        return [u for u in users if u is not None]

    def has_admin(self) -> bool:
        """True when at least one enabled admin exists."""
        return any(u.role == "admin" and not u.disabled for u in self.list())

    def verify(self, username: str, password: str) -> User | None:
        """The enabled account when the password matches; costs one argon2 check either way."""
        data = self.client.hgetall(self._key(username)) if USERNAME.match(username) else {}
        stored = data.get("password_hash") or self._dummy_hash
        try:
            self.hasher.verify(stored, password[:MAX_PASSWORD_LENGTH])
        except (VerificationError, InvalidHashError):
            return None
        if not data.get("password_hash"):
            return None
        if self.hasher.check_needs_rehash(stored):
            self.client.hset(self._key(username), "password_hash", self.hasher.hash(password))
        user = _user(data)
        return None if user.disabled else user

    def set_password(self, username: str, password: str) -> None:
        """Replace the password and end every session of the account."""
        check_password(password)
        self._require(username)
        self.client.hset(self._key(username), mapping={
            "password_hash": self.hasher.hash(password), "sessions_valid_after": f"{time.time():.3f}"})

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (ending every session) or enable an account."""
        self._require(username)
        mapping = {"disabled": "1" if disabled else "0"}
        if disabled:
            mapping["sessions_valid_after"] = f"{time.time():.3f}"
        self.client.hset(self._key(username), mapping=mapping)

    def _require(self, username: str) -> User:
        user = self.get(username)
        if user is None:
            raise AccountError(f"no account {username!r}")
        return user


def _user(data: dict[str, str]) -> User:
    return User(username=data["username"], role=data["role"], disabled=data.get("disabled") == "1",
                created_utc=data.get("created_utc", ""), created_by=data.get("created_by", ""),
                sessions_valid_after=float(data.get("sessions_valid_after", "0")))
