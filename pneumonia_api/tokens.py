"""API tokens for integrations (one per calling system), created and revoked by the admin CLI.

Only the token's SHA-256 is stored: ``<prefix>:token:<sha256>`` -> name, and the
``<prefix>:tokens`` hash of name -> SHA-256 for listing and revoking.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone

import redis

TOKEN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class TokenError(ValueError):
    """A bad, taken or unknown token name."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Create, identify, list and revoke integration tokens."""

    def __init__(self, client: redis.Redis, prefix: str = "pneumonia") -> None:
        self.client = client
        self.prefix = prefix

    def create(self, name: str, created_by: str) -> str:
        """A new token for ``name`` (returned once, never stored in clear)."""
        if not TOKEN_NAME.match(name):
            raise TokenError("a token name is 2-64 characters: lower-case letters, digits, '.', '_' or '-'")
        token = "pnt_" + secrets.token_urlsafe(32)
        digest = _digest(token)
        if not self.client.hsetnx(f"{self.prefix}:tokens", name, digest):
            raise TokenError(f"token {name!r} already exists; revoke it first")
        self.client.hset(f"{self.prefix}:token:{digest}", mapping={
            "name": name, "created_by": created_by,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return token

    def identify(self, token: str) -> str | None:
        """The integration's name for a valid token, else None."""
        if not token.startswith("pnt_"):
            return None
        return self.client.hget(f"{self.prefix}:token:{_digest(token)}", "name")

    def list(self) -> list[dict[str, str]]:
        """Name, creator and creation time of every live token."""
        digests = self.client.hgetall(f"{self.prefix}:tokens")
        return [{"name": name, **self.client.hgetall(f"{self.prefix}:token:{digest}")}
                for name, digest in sorted(digests.items())]

    def revoke(self, name: str) -> None:
        """Invalidate a token at once."""
        digest = self.client.hget(f"{self.prefix}:tokens", name)
        if digest is None:
            raise TokenError(f"no token {name!r}")
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{self.prefix}:token:{digest}")
        pipe.hdel(f"{self.prefix}:tokens", name)
        pipe.execute()
