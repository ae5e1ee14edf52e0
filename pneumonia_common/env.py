"""Typed reads of environment variables with safe defaults."""

from __future__ import annotations

import os
from typing import Any, Callable


def env_str(name: str, default: str = "") -> str:
    """A string setting."""
    return os.environ.get(name, default)


def _env_number(name: str, default: float, cast: Callable[[str], float], kind: str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be {kind}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    """An integer setting; a malformed value is a start-up error naming the variable."""
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    """A float setting; a malformed value is a start-up error naming the variable."""
    return _env_number(name, default, float, "a number")


def env_bool(name: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in ("1", "true", "yes", "on")
