"""The UI on its own (Flask test client): sign-in guard, CSRF, honest errors when the API is down or slow."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest
from flask.testing import FlaskClient

from pneumonia_web import create_app
from pneumonia_web.settings import WebSettings
from tests.helpers import csrf_token, free_port


def _client(api_url: str, timeout: float = 2.0) -> FlaskClient:
    settings = WebSettings(api_urls=(api_url,), api_token="t", secret_key="s" * 32, api_timeout_seconds=timeout)
    return create_app(settings).test_client()


def _sign_in(client: FlaskClient, next_url: str = ""):
    page = client.get("/sign-in").get_data(as_text=True)
    return client.post("/sign-in", data={"csrf_token": csrf_token(page), "username": "alice",
                                         "password": "alice-password-for-tests", "next": next_url})


@pytest.fixture()
def silent_api() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_sign_in_page_has_csrf_token_and_security_headers() -> None:
    resp = _client("http://127.0.0.1:1").get("/sign-in")
    assert resp.status_code == 200 and 'name="csrf_token"' in resp.get_data(as_text=True)
    assert resp.headers["X-Frame-Options"] == "DENY" and "default-src 'self'" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/results", "/results/" + "a" * 32, "/model", "/admin/users", "/admin/audit",
                                  "/admin/agreement"])
def test_every_page_needs_a_signed_in_user(path: str) -> None:
    resp = _client("http://127.0.0.1:1").get(path)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/sign-in")


def test_forms_without_csrf_token_are_refused() -> None:
    client = _client("http://127.0.0.1:1")
    for path in ("/sign-in", "/sign-out", "/predict", "/admin/users", "/admin/users/bob/disable"):
        resp = client.post(path, data={"username": "alice", "password": "x"})
        assert resp.status_code == 400 and "security token" in resp.get_data(as_text=True), path


def test_api_down_gives_an_honest_503_page() -> None:
    resp = _sign_in(_client(f"http://127.0.0.1:{free_port()}"))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503 and "unavailable" in body and "Traceback" not in body


def test_api_slow_gives_a_timeout_page(silent_api: str) -> None:
    resp = _sign_in(_client(silent_api, timeout=0.5))
    assert resp.status_code == 503 and "did not answer in time" in resp.get_data(as_text=True)


def test_ui_refuses_to_start_without_secrets() -> None:
    with pytest.raises(RuntimeError, match="FLASK_SECRET_KEY"):
        create_app(WebSettings(api_token="t", secret_key=""))
    with pytest.raises(RuntimeError, match="API_TOKEN"):
        create_app(WebSettings(api_token="", secret_key="k"))


def test_session_cookie_is_secure_over_tls_only() -> None:
    plain = _client("http://127.0.0.1:1").get("/sign-in").headers["Set-Cookie"]
    tls = _client("http://127.0.0.1:1").get("/sign-in", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    assert "Secure" in tls and "HttpOnly" in tls
