"""Hostile input, floods, slow clients, load and faults against the real stack (loopback only)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import redis
import requests
from PIL import Image

from model.store import ResultStore
from scripts import loadtest
from scripts.stack import Stack
from tests.helpers import REPO, csrf_token, fixture_images, make_dicom, sign_in, wait_for
from tests.test_api import BAD_INPUTS, _png

XRAY = fixture_images()[-1][0]


def _store(stack: Stack) -> ResultStore:
    return ResultStore(redis.Redis(port=stack.config.redis_port, password=stack.secrets()["REDIS_PASSWORD"],
                                   decode_responses=True))


def _stored_count(stack: Stack) -> int:
    return _store(stack).client.zcard(_store(stack).index_key)


def _auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.secrets()['API_TOKEN']}"}


def _targets(stack: Stack) -> dict[str, str]:
    return {"nginx": stack.config.url + "api/predict", "api": f"http://127.0.0.1:{stack.config.api_port}/predict"}


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


GRAY = Image.open(XRAY).convert("L")
VALID = {
    "jpeg": XRAY.read_bytes(),
    "png_16_bit": _png(Image.fromarray(np.asarray(GRAY, dtype=np.uint16) * 257)),
    "png_palette": _png(GRAY.convert("P")),
    "png_rgba": _png(GRAY.convert("RGBA")),
    "jpeg_cmyk": _jpeg(GRAY.convert("CMYK")),
    "dicom_monochrome2_16_bit": make_dicom(np.asarray(GRAY).astype(np.uint16) * 16),
    "dicom_monochrome1_16_bit": make_dicom((255 - np.asarray(GRAY)).astype(np.uint16) * 16, "MONOCHROME1"),
    "polyglot_jpeg_with_html_tail": XRAY.read_bytes() + b"<html><script>alert(1)</script></html>",
}
HOSTILE = {name: data for name, (data, _) in BAD_INPUTS.items() if name != "too_large"}
HOSTILE["malformed_dicom"] = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 10
EXPECTED = {**{name: status for name, (_, status) in BAD_INPUTS.items()}, "malformed_dicom": 422}
FILENAMES = ["../../../etc/passwd.jpg", "x\x00.jpg", "a" * 5000 + ".jpg", "<script>.jpg"]


def _check_clean(resp: requests.Response) -> None:
    assert resp.status_code < 500, resp.text[:300]
    assert "Traceback" not in resp.text and 'File "' not in resp.text


@pytest.mark.parametrize("route", ["nginx", "api"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_upload_gets_clear_4xx_and_stores_nothing(stack: Stack, route: str, case: str) -> None:
    before = _stored_count(stack)
    resp = requests.post(_targets(stack)[route], files={"file": ("x.jpg", HOSTILE[case])}, headers=_auth(stack),
                         timeout=30)
    _check_clean(resp)
    assert resp.status_code == EXPECTED[case] and resp.json()["error"]
    assert _stored_count(stack) == before


@pytest.mark.parametrize("route", ["nginx", "api"])
def test_thirty_megabytes_is_413(stack: Stack, route: str) -> None:
    resp = requests.post(_targets(stack)[route], data=b"\xff\xd8\xff" + b"\0" * (30 * 2**20),
                         headers=_auth(stack), timeout=60)
    assert resp.status_code == 413


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_images_get_a_correct_answer(stack: Stack, case: str) -> None:
    resp = requests.post(_targets(stack)["nginx"], files={"file": ("img", VALID[case])}, headers=_auth(stack),
                         timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["label"] in ("NORMAL", "PNEUMONIA") and resp.json()["stored"] is True


@pytest.mark.parametrize("name", FILENAMES, ids=["traversal", "nul", "very_long", "html"])
def test_hostile_file_names_are_ignored(stack: Stack, name: str) -> None:
    resp = requests.post(_targets(stack)["nginx"], files={"file": (name, XRAY.read_bytes())}, headers=_auth(stack),
                         timeout=60)
    _check_clean(resp)
    assert resp.status_code == 200
    assert _store(stack).get(resp.json()["id"]).file_name == ""


@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_wrong_or_missing_token(stack: Stack, header: dict) -> None:
    before = _stored_count(stack)
    resp = requests.post(_targets(stack)["nginx"], files={"file": XRAY.read_bytes()}, headers=header, timeout=30)
    assert resp.status_code == 401 and _stored_count(stack) == before


def _edge_refusals(stack: Stack) -> float:
    """Nginx's own 429s on the UI side, as mtail exports them from the edge log."""
    text = requests.get(f"http://127.0.0.1:{stack.config.edge_metrics_port}/metrics", timeout=10).text
    pattern = r'^nginx_edge_responses_total\{origin="nginx",prog="nginx_edge.mtail",side="ui",status="429"\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def test_flood_from_one_client_gets_429_and_the_service_stays_up(stack: Stack) -> None:
    url = stack.config.url + "healthz"
    before = _edge_refusals(stack)
    done = subprocess.run([sys.executable, "-m", "tests.flood", url, "400", "16"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    flood = json.loads(done.stdout)
    codes = Counter(flood["codes"])
    assert 429 in codes and set(codes) <= {200, 429}, codes
    assert "<h1>Too many requests</h1>" in flood["refused_page"]
    # every refusal is counted for Prometheus, though no app saw it
    try:
        wait_for(lambda: _edge_refusals(stack) == before + codes[429], 10, "mtail")
    except TimeoutError:
        pytest.fail(f"mtail counted {_edge_refusals(stack) - before:.0f} of {codes[429]} refusals")
    time.sleep(2)  # the bucket refills
    assert requests.get(url, timeout=10).status_code == 200


def test_slow_loris_upload_is_timed_out(stack: Stack) -> None:
    sock = socket.create_connection(("127.0.0.1", stack.config.http_port), timeout=30)
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                 b"Content-Type: application/octet-stream\r\n\r\n\xff\xd8\xff")
    started = time.monotonic()
    answer = sock.recv(4096)  # Nginx answers 408 or closes once client_body_timeout passes
    waited = time.monotonic() - started
    sock.close()
    assert waited < 20 and (answer == b"" or b"408" in answer.split(b"\r\n")[0])
    assert requests.get(stack.config.url + "healthz", timeout=10).status_code == 200


def test_load_nothing_lost(stack: Stack) -> None:
    summary = loadtest.run(stack.config.url, stack.secrets()["API_TOKEN"], n=60, concurrency=8)
    assert summary["status_counts"] == {"200": 60}
    check = loadtest.verify(_store(stack), summary["results"])
    assert check == {"stored": 60, "not_stored": 0, "missing_or_changed": 0}


def _redis_errors(stack: Stack) -> float:
    text = requests.get(f"http://127.0.0.1:{stack.config.api_port}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('pneumonia_redis_errors_total{operation="save"}'))


def test_redis_stopped_during_load_then_back(stack: Stack) -> None:
    errors_before = _redis_errors(stack)
    clinician = sign_in(stack.config.url, "alice")
    stack.stop_service("redis")
    try:
        summary = loadtest.run(stack.config.url, stack.secrets()["API_TOKEN"], n=16, concurrency=4)
        assert summary["status_counts"] == {"200": 16}
        assert not any(stored for _, _, stored in summary["results"])
        assert _redis_errors(stack) >= errors_before + 16
        assert requests.get(f"http://127.0.0.1:{stack.config.api_port}/readyz", timeout=10).status_code == 503
        page = clinician.get(stack.config.url, timeout=30)  # sessions live in Redis: fail closed
        assert page.status_code == 503 and "sign-in service unavailable" in page.text and "Traceback" not in page.text
    finally:
        stack.start_service("redis")
    assert clinician.get(stack.config.url, timeout=10).status_code == 200  # the session outlived the outage
    wait_for(lambda: requests.post(_targets(stack)["nginx"], files={"file": XRAY.read_bytes()},
                                   headers=_auth(stack), timeout=30).json()["stored"], 20, "storage resumes")


def _workers(stack: Stack) -> list[int]:
    master = stack.pid("api")
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_killed_api_worker_is_replaced(stack: Stack) -> None:
    workers = _workers(stack)
    assert len(workers) == stack.config.api_workers
    os.kill(workers[0], signal.SIGKILL)
    summary = loadtest.run(stack.config.url, stack.secrets()["API_TOKEN"], n=16, concurrency=4)
    assert set(summary["status_counts"]) <= {"200", "502"}  # an in-flight request may fail, clearly
    wait_for(lambda: len(_workers(stack)) == stack.config.api_workers and workers[0] not in _workers(stack), 60,
             "replacement worker")
    wait_for(lambda: requests.get(f"http://127.0.0.1:{stack.config.api_port}/readyz", timeout=5).ok, 60, "ready")


def test_api_down_gives_an_honest_page(stack: Stack) -> None:
    session = sign_in(stack.config.url, "alice")
    token = csrf_token(session.get(stack.config.url, timeout=10).text)
    stack.stop_service("api")
    try:
        assert session.get(stack.config.url, timeout=10).status_code == 503
        resp = session.post(stack.config.url + "predict", data={"csrf_token": token},
                            files={"file": (XRAY.name, XRAY.read_bytes())}, timeout=60)
        assert resp.status_code == 503 and "unavailable" in resp.text and "Traceback" not in resp.text
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{stack.config.api_port}/readyz", timeout=5)
        api = requests.get(stack.config.url + "api/results", headers=_auth(stack), timeout=10)
        assert api.status_code == 502 and "not answering" in api.json()["error"]
    finally:
        stack.start_service("api")


@pytest.mark.parametrize("model", ["missing", "corrupt"])
def test_api_refuses_to_start_with_a_bad_model(tmp_path, model: str) -> None:
    path = tmp_path / "best_model.keras"
    if model == "corrupt":
        path.write_bytes(b"PK\x03\x04 definitely not a keras archive")
        (tmp_path / "best_model.json").write_text((REPO / "models" / "best_model.json").read_text())
    env = {**os.environ, "MODEL_PATH": str(path), "API_TOKEN": "t", "API_BIND": "127.0.0.1:0", "API_WORKERS": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "--config", "gunicorn_config.py", "app:app"],
                          cwd=REPO / "pneumonia_api", env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    expected = "model metadata not found" if model == "missing" else "model file unreadable"
    assert expected in proc.stdout + proc.stderr


def test_results_accounts_and_audit_survive_a_redis_restart(stack: Stack) -> None:
    """deploy/redis/redis.conf keeps an append-only file (fsync every second)."""
    resp = requests.post(_targets(stack)["nginx"], files={"file": XRAY.read_bytes()}, headers=_auth(stack), timeout=60)
    result_id = resp.json()["id"]
    created = stack.cli("users", "create", "restart-check", "--role", "clinician", "--password-stdin",
                        stdin="restart-check-password\n")
    assert created.returncode == 0, created.stderr
    audit_before = _store(stack).client.xlen("pneumonia:audit")
    stack.stop_service("redis")
    stack.start_service("redis")
    record = _store(stack).get(result_id)
    assert record is not None and record.label == resp.json()["label"]
    assert _store(stack).client.xlen("pneumonia:audit") >= audit_before > 0
    session = sign_in(stack.config.url, "restart-check", "restart-check-password")
    assert "restart-check" in session.get(stack.config.url, timeout=10).text
