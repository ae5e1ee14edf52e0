"""Sign-in throttling: failures counted per account name and per client address in Redis.

A name or address that reaches its limit within the window is locked until the window (counted
from its first failure) ends. Names are counted whether or not the account exists, so the
lock-out reveals nothing about which names are real.
"""

from __future__ import annotations

import hashlib

import redis


class SignInThrottle:
    """Failure counters with a TTL: ``<prefix>:signin-failures:{account,address}:<sha256>``."""

    def __init__(self, client: redis.Redis, max_per_account: int, max_per_address: int, window_seconds: int,
                 prefix: str = "pneumonia") -> None:
        self.client = client
        self.limits = {"account": max_per_account, "address": max_per_address}
        self.window_seconds = window_seconds
        self.prefix = prefix

    def _key(self, kind: str, value: str) -> str:
        return f"{self.prefix}:signin-failures:{kind}:{hashlib.sha256(value.lower().encode()).hexdigest()}"

    def _keys(self, username: str, address: str) -> dict[str, str]:
        return {"account": self._key("account", username), "address": self._key("address", address)}

    def locked(self, username: str, address: str) -> bool:
        """True when the name or the address has used up its failures."""
        keys = self._keys(username, address)
        counts = self.client.mget(list(keys.values()))
        return any(int(count or 0) >= self.limits[kind] for kind, count in zip(keys, counts))

    def failed(self, username: str, address: str) -> None:
        """Count one failure against the name and the address."""
        pipe = self.client.pipeline(transaction=True)
        for key in self._keys(username, address).values():
            pipe.incr(key)
            pipe.expire(key, self.window_seconds, nx=True)
        pipe.execute()

    def succeeded(self, username: str) -> None:
        """Clear the name's failures after a good sign-in (the address keeps its count)."""
        self.client.delete(self._key("account", username))
