"""Calls from the UI to the API: timeouts, round-robin over API hosts, one retry elsewhere."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)


class ApiUnavailable(RuntimeError):
    """No API host answered (down, refused or timed out)."""


class ApiError(RuntimeError):
    """The API answered with an error status; ``status`` and ``message`` come from it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    """On whose behalf the UI calls: a signed-in session, the client address, or the CLI's actor."""

    session_id: str = ""
    address: str = ""
    actor: str = ""

    def headers(self) -> dict[str, str]:
        pairs = {"X-Session-Id": self.session_id, "X-Client-Address": self.address, "X-Actor": self.actor}
        return {name: value for name, value in pairs.items() if value}


class ApiClient:
    """A small client for the prediction API."""

    def __init__(self, base_urls: tuple[str, ...], token: str, timeout: float, connect_timeout: float = 3.0) -> None:
        """``timeout``: for an answer; ``connect_timeout``: for a connection, so that a host that is down
        or not yet up (e.g. a new one in the host lists) costs seconds before the next host is tried."""
        if not base_urls:
            raise ValueError("at least one API URL is needed")
        self.base_urls = base_urls
        self.timeout = (min(connect_timeout, timeout), timeout)
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._next = itertools.cycle(range(len(base_urls)))
        self._lock = threading.Lock()

    def _hosts(self) -> list[str]:
        """Every host once, starting with the next one in round-robin order."""
        with self._lock:
            start = next(self._next)
        return [self.base_urls[(start + i) % len(self.base_urls)] for i in range(len(self.base_urls))]

    def _call(self, method: str, path: str, caller: Caller, attempts: int = 2, **kwargs: Any) -> Any:
        hosts = self._hosts()
        kwargs["headers"] = caller.headers()
        last_error: Exception | None = None
        for i in range(attempts):
            url = hosts[i % len(hosts)] + path
            try:
                resp = self._session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:  # refused, reset, timed out
                log.warning("API call %s %s failed: %s", method, url, exc)
                last_error = exc
                continue
            if resp.status_code >= 500:
                log.warning("API call %s %s answered %s", method, url, resp.status_code)
                last_error = ApiError(resp.status_code, _message(resp))
                continue
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, _message(resp))
            return resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else resp.text
        if isinstance(last_error, requests.Timeout):
            raise ApiUnavailable("the prediction service did not answer in time") from last_error
        if isinstance(last_error, ApiError):
            raise ApiUnavailable(f"the prediction service answered: {last_error.message}") from last_error
        raise ApiUnavailable("the prediction service is unavailable") from last_error

    def predict(self, data: bytes, filename: str, caller: Caller) -> dict[str, Any]:
        """Prediction with Grad-CAM heat-map for one image."""
        return self._call("POST", "/predict?heatmap=1", caller, files={"file": (filename or "upload", data)})

    def result(self, result_id: str, caller: Caller) -> dict[str, Any]:
        """One stored result the caller may see."""
        return self._call("GET", f"/results/{result_id}", caller)

    def recent(self, caller: Caller, limit: int = 50) -> list[dict[str, Any]]:
        """The newest stored results the caller may see."""
        return self._call("GET", f"/results?limit={limit}", caller)["results"]

    def record_reading(self, result_id: str, reading: str, caller: Caller) -> dict[str, Any]:
        """Add the clinician's own reading (a class name) to a stored result; the updated result."""
        return self._call("POST", f"/results/{result_id}/reading", caller, json={"reading": reading})

    def model(self, caller: Caller) -> dict[str, Any]:
        """The served model: version, threshold and its recorded metrics (the API's ``GET /model``)."""
        return self._call("GET", "/model", caller)

    def sign_in(self, username: str, password: str, address: str) -> dict[str, Any]:
        """A new session (``session_id``, ``username``, ``role``); ApiError 401/429 when refused."""
        return self._call("POST", "/auth/sign-in", Caller(address=address), attempts=1,
                          json={"username": username, "password": password})

    def session(self, caller: Caller) -> dict[str, Any]:
        """The signed-in user (``username``, ``role``); ApiError 401 once the session has ended."""
        return self._call("GET", "/auth/session", caller)

    def sign_out(self, caller: Caller) -> None:
        self._call("POST", "/auth/sign-out", caller)

    def admin(self, method: str, path: str, caller: Caller, **kwargs: Any) -> Any:
        """An ``/admin/...`` call (accounts, tokens, audit trail)."""
        return self._call(method, "/admin/" + path.lstrip("/"), caller, **kwargs)


def _message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", resp.reason))
    except ValueError:
        return resp.reason or f"HTTP {resp.status_code}"
