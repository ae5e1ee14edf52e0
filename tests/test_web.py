"""The UI on its own (Flask test client): pages, CSRF, and honest errors when the API is down or slow."""

from __future__ import annotations

import io
import re
import socket
import threading
from typing import Iterator

import pytest
from flask.testing import FlaskClient

from pneumonia_web import create_app
from pneumonia_web.settings import WebSettings
from tests.helpers import fixture_images, free_port

XRAY = fixture_images()[0][0]


def _client(api_url: str, timeout: float = 2.0) -> FlaskClient:
    settings = WebSettings(api_urls=(api_url,), api_token="t", secret_key="s" * 32, api_timeout_seconds=timeout)
    return create_app(settings).test_client()


def _csrf(client: FlaskClient) -> str:
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _upload(client: FlaskClient) -> "object":
    return client.post("/predict", data={"csrf_token": _csrf(client), "file": (io.BytesIO(XRAY.read_bytes()), XRAY.name)},
                       content_type="multipart/form-data")


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


def test_upload_page_has_csrf_token_and_security_headers() -> None:
    resp = _client("http://127.0.0.1:1").get("/")
    assert resp.status_code == 200 and 'name="csrf_token"' in resp.get_data(as_text=True)
    assert resp.headers["X-Frame-Options"] == "DENY" and "default-src 'self'" in resp.headers["Content-Security-Policy"]


def test_api_down_gives_an_honest_503_page() -> None:
    resp = _upload(_client(f"http://127.0.0.1:{free_port()}"))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503 and "unavailable" in body and "Traceback" not in body


def test_api_slow_gives_a_timeout_page(silent_api: str) -> None:
    resp = _upload(_client(silent_api, timeout=0.5))
    assert resp.status_code == 503 and "did not answer in time" in resp.get_data(as_text=True)


def test_results_page_when_api_down() -> None:
    resp = _client(f"http://127.0.0.1:{free_port()}").get("/results")
    assert resp.status_code == 503


def test_missing_file_and_bad_result_id() -> None:
    client = _client("http://127.0.0.1:1")
    assert client.post("/predict", data={"csrf_token": _csrf(client)}).status_code == 400
    assert client.get("/results/not-an-id").status_code == 404


def test_ui_refuses_to_start_without_secrets() -> None:
    with pytest.raises(RuntimeError, match="FLASK_SECRET_KEY"):
        create_app(WebSettings(api_token="t", secret_key=""))
    with pytest.raises(RuntimeError, match="API_TOKEN"):
        create_app(WebSettings(api_token="", secret_key="k"))
