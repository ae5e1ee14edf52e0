"""Integration: the real stack (redis-server, gunicorn API + UI, nginx, Prometheus, exporters) on free ports.

Uploads real X-rays through Nginx -> UI -> API, checks Redis, the public surface of Nginx,
Prometheus's targets, and that ``down`` leaves no process behind.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import redis
import requests

from model.store import ResultStore
from scripts.stack import Stack, StackConfig
from tests.conftest import free_ports
from tests.helpers import REPO, csrf_token, fixture_images, sign_in, wait_for

XRAY, XRAY_LABEL = fixture_images()[-1]
def _token(stack: Stack) -> str:
    return stack.secrets()["API_TOKEN"]


def _store(stack: Stack) -> ResultStore:
    client = redis.Redis(port=stack.config.redis_port, password=stack.secrets()["REDIS_PASSWORD"],
                         decode_responses=True)
    return ResultStore(client)


def test_upload_through_the_ui_form_lands_in_redis(stack: Stack) -> None:
    session = sign_in(stack.config.url, "alice")
    token = csrf_token(session.get(stack.config.url, timeout=10).text)
    with XRAY.open("rb") as fh:
        resp = session.post(stack.config.url + "predict", data={"csrf_token": token},
                            files={"file": (XRAY.name, fh, "image/jpeg")}, timeout=60)
    assert resp.status_code == 200, resp.text[:500]
    assert "decision support, not a diagnosis" in resp.text
    assert 'id="heatmap"' in resp.text
    result_id = re.search(r'id="result-id">([0-9a-f]{32})<', resp.text).group(1)
    label = re.search(r'id="label">(\w+)<', resp.text).group(1)
    stored = _store(stack).get(result_id)
    assert stored is not None and stored.label == label and stored.source == "api" and stored.owner == "user:alice"
    history = session.get(stack.config.url + "results", timeout=10)
    assert result_id in history.text
    assert session.get(stack.config.url + f"results/{result_id}", timeout=10).status_code == 200


def test_every_api_worker_warms_its_heatmap_model_and_logs_it(stack: Stack) -> None:
    """The API's own log records reach its log: each of the two workers reports its model and, in the
    background, its ready heat-map model (API_WARM_HEATMAP's default)."""
    log = stack.log_dir / "api.log"
    wait_for(lambda: log.read_text(errors="replace").count("heat-map model ready after") >= 2, timeout=180,
             what="both API workers' heat-map warm-up")
    assert log.read_text(errors="replace").count("pneumonia_api: model ") >= 2


def test_api_through_nginx_needs_the_token(stack: Stack) -> None:
    url = stack.config.url + "api/predict"
    ok = requests.post(url, files={"file": XRAY.read_bytes()}, headers={"Authorization": f"Bearer {_token(stack)}"},
                       timeout=60)
    assert ok.status_code == 200 and ok.json()["stored"] is True
    assert _store(stack).get(ok.json()["id"]).label == ok.json()["label"]
    assert requests.post(url, files={"file": XRAY.read_bytes()}, timeout=30).status_code == 401


def test_ui_form_without_csrf_token_is_refused(stack: Stack) -> None:
    session = sign_in(stack.config.url, "alice")
    resp = session.post(stack.config.url + "predict", files={"file": XRAY.read_bytes()}, timeout=30)
    assert resp.status_code == 400 and "security token" in resp.text


def test_private_endpoints_are_not_exposed(stack: Stack) -> None:
    for path in ("metrics", "api/metrics", "api/auth/session", "api/admin/users", "api/admin/audit",
                 "api/admin/agreement"):
        assert requests.get(stack.config.url + path, timeout=10).status_code == 404
    headers = requests.get(stack.config.url, timeout=10).headers
    assert headers["X-Content-Type-Options"] == "nosniff" and "nginx/" not in headers.get("Server", "")


def test_nginx_rejects_an_upload_over_the_limit(stack: Stack) -> None:
    """Nginx refuses the body itself, in each side's shape: JSON for API clients, a page for the browser."""
    big = b"\xff\xd8\xff" + os.urandom(stack.config.max_upload_mb * 2**20 + 1024)
    limit = f"limit of {stack.config.max_upload_mb} MB"
    resp = requests.post(stack.config.url + "api/predict", data=big,
                         headers={"Authorization": f"Bearer {_token(stack)}"}, timeout=60)
    assert resp.status_code == 413 and limit in resp.json()["error"] and resp.json()["status"] == 413
    page = requests.post(stack.config.url + "predict", files={"file": ("big.jpeg", big)}, timeout=60)
    assert page.status_code == 413 and page.headers["Content-Type"].startswith("text/html")
    assert "<h1>File too large</h1>" in page.text and limit in page.text
    assert page.headers["X-Frame-Options"] == "DENY"


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.config.prometheus_port}/api/v1/targets"

    def health() -> dict[str, str]:
        targets = requests.get(url, timeout=5).json()["data"]["activeTargets"]
        return {t["labels"]["job"]: f"{t['health']} {t.get('lastError', '')}".strip() for t in targets}

    try:
        wait_for(lambda: set(health().values()) == {"up"} and len(health()) == 8, 45, "Prometheus targets")
    except TimeoutError:
        pytest.fail(f"targets not all up: {health()}")
    _targets_table(requests.get(url, timeout=5).json()["data"]["activeTargets"])


def _targets_table(targets: list[dict]) -> None:
    """documentation/monitoring/prometheus_targets.png: Prometheus's /api/v1/targets as a table
    (Debian's Prometheus ships without its web UI assets, so its targets page cannot be shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [[t["labels"]["job"], t["labels"].get("role", ""), t["scrapeUrl"], t["health"],
             f"{t['lastScrapeDuration'] * 1000:.1f} ms"] for t in sorted(targets, key=lambda t: t["labels"]["job"])]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 0.8))
    ax.axis("off")
    ax.set_title("Prometheus targets (GET /api/v1/targets) of the running stack", fontsize=10)
    table = ax.table(cellText=rows, colLabels=["job", "role", "scrape URL", "health", "last scrape"], loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(range(5))
    out = REPO / "documentation" / "monitoring"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "prometheus_targets.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def test_stack_up_is_idempotent_and_status_is_healthy(stack: Stack, capsys: pytest.CaptureFixture) -> None:
    stack.up()
    assert "already running" in capsys.readouterr().out
    assert stack.status()


def test_down_leaves_no_process(shipped_model: Path, tmp_path: Path) -> None:
    stack = Stack(StackConfig(run_dir=tmp_path / "run", model_path=shipped_model, api_workers=1, **free_ports()))
    stack.up()
    try:
        pids = [int(p.read_text()) for p in (tmp_path / "run" / "pids").glob("*.pid")]
        assert len(pids) == 10
    finally:
        stack.down()  # also when the count is wrong: a failed test leaves no stack behind
    time.sleep(0.5)
    for pid in pids:  # each service is its own process group: workers included
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert not list((tmp_path / "run" / "pids").glob("*.pid"))
