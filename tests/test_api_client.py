"""The UI's API client over several API hosts: one that takes no connection costs the connect timeout."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Iterator

import pytest

from pneumonia_web.api_client import ApiClient, Caller
from tests.helpers import QuietHandler, http_server


class _ModelInfo(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"model_version": "v1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def answering_api() -> Iterator[str]:
    with http_server(_ModelInfo) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def unreachable_api() -> Iterator[str]:
    """A host whose connections never complete, as a new host before it is up: a listening socket
    whose accept queue is full, so that the kernel drops further connection attempts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    time.sleep(0.2)
    yield f"http://{address[0]}:{address[1]}"
    for filler in fillers:
        filler.close()
    server.close()


def test_a_host_that_takes_no_connection_is_skipped_after_the_connect_timeout(
        answering_api: str, unreachable_api: str, caplog: pytest.LogCaptureFixture) -> None:
    """Before the connect timeout, such a host held a request for the whole answer timeout (30 s by
    default); now it costs the connect timeout and the next host answers."""
    client = ApiClient((unreachable_api, answering_api), "token", timeout=60.0, connect_timeout=0.5)
    caplog.set_level(logging.WARNING, logger="pneumonia_web.api_client")
    started = time.monotonic()
    for _ in range(2):  # round-robin: one of the two calls starts at the unreachable host
        assert client.model(Caller(actor="test")) == {"model_version": "v1"}
    assert "ConnectTimeout" in caplog.text and unreachable_api in caplog.text
    assert time.monotonic() - started < 30.0  # far below the answer timeout of 60 s


def test_the_connect_timeout_never_exceeds_the_answer_timeout() -> None:
    assert ApiClient(("http://127.0.0.1:1",), "t", timeout=2.0, connect_timeout=3.0).timeout == (2.0, 2.0)
    assert ApiClient(("http://127.0.0.1:1",), "t", timeout=30.0).timeout == (3.0, 30.0)
