"""Calls from the UI to the API: timeouts, round-robin over API hosts, one retry elsewhere."""

from __future__ import annotations

import itertools
import logging
import threading
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


class ApiClient:
    """A small client for the prediction API."""

    def __init__(self, base_urls: tuple[str, ...], token: str, timeout: float) -> None:
        if not base_urls:
            raise ValueError("at least one API URL is needed")
        self.base_urls = base_urls
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._next = itertools.cycle(range(len(base_urls)))
        self._lock = threading.Lock()

    def _hosts(self) -> list[str]:
        """Every host once, starting with the next one in round-robin order."""
        with self._lock:
            start = next(self._next)
        return [self.base_urls[(start + i) % len(self.base_urls)] for i in range(len(self.base_urls))]

    def _call(self, method: str, path: str, attempts: int = 2, **kwargs: Any) -> dict[str, Any]:
        hosts = self._hosts()
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
            return resp.json()
        if isinstance(last_error, requests.Timeout):
            raise ApiUnavailable("the prediction service did not answer in time") from last_error
        raise ApiUnavailable("the prediction service is unavailable") from last_error

    def predict(self, data: bytes, filename: str) -> dict[str, Any]:
        """Prediction with Grad-CAM heat-map for one image."""
        return self._call("POST", "/predict?heatmap=1", files={"file": (filename or "upload", data)})

    def result(self, result_id: str) -> dict[str, Any]:
        """One stored result."""
        return self._call("GET", f"/results/{result_id}")

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest stored results."""
        return self._call("GET", f"/results?limit={limit}")["results"]


def _message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", resp.reason))
    except ValueError:
        return resp.reason or f"HTTP {resp.status_code}"
