"""Monitoring as code: promtool checks and unit tests, dashboard structure, and every dashboard
query run against the live Prometheus of the running stack after real traffic."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from scripts.stack import Stack
from tests.helpers import REPO, fixture_images, wait_for

PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PLOTS = REPO / "documentation" / "monitoring"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=120)


def test_promtool_check_config_and_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", *map(str, PROM.glob("rules/*.yml")))):
        proc = _promtool(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_of_every_alert() -> None:
    proc = _promtool("test", "rules", "tests/rules_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "tests/rules_test.yml").read_text()))
    defined = set(re.findall(r"alert: (\w+)", (PROM / "rules/pneumonia.yml").read_text()))
    assert defined == tested, f"alerts without a unit test: {defined - tested}"


def _panels(path: Path) -> list[dict]:
    return json.loads(path.read_text())["panels"]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(dashboard: Path) -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    uids = {s["uid"] for s in sources}
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel["datasource"]["uid"] in uids
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert all(t["datasource"]["uid"] in uids for t in panel["targets"])


def _query(stack: Stack, expr: str) -> list:
    resp = requests.get(f"http://127.0.0.1:{stack.config.prometheus_port}/api/v1/query", params={"query": expr},
                        timeout=10).json()
    assert resp["status"] == "success", f"{expr}: {resp}"
    return resp["data"]["result"]


def _traffic(stack: Stack, n: int) -> None:
    token = stack.secrets()["API_TOKEN"]
    for i in range(n):
        path = fixture_images()[i % 16][0]
        resp = requests.post(stack.config.url + "api/predict", files={"file": path.read_bytes()},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert resp.status_code == 200
    reading = requests.post(stack.config.url + f"api/results/{resp.json()['id']}/reading", json={"reading": "NORMAL"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert reading.status_code == 200, reading.text
    requests.post(stack.config.url + "api/predict", data=b"not an image",
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    requests.get(stack.config.url, timeout=10)


def _api_metric(stack: Stack, name: str) -> float:
    text = requests.get(f"http://127.0.0.1:{stack.config.api_port}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def test_metrics_add_up_across_gunicorn_workers(stack: Stack) -> None:
    assert stack.config.api_workers >= 2
    before = _api_metric(stack, "pneumonia_predictions_total")
    _traffic(stack, 12)  # gunicorn spreads these over both workers
    assert _api_metric(stack, "pneumonia_predictions_total") == before + 12


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    # rates need an increase between two scrapes: let Prometheus see the counters first
    wait_for(lambda: bool(_query(stack, 'up{job="api"} == 1')), 30, "first scrape of the API")
    _traffic(stack, 1)
    wait_for(lambda: bool(_query(stack, "pneumonia_predictions_total")), 30, "predictions counter scraped")
    _traffic(stack, 8)
    wait_for(lambda: bool(_query(stack, "rate(pneumonia_predictions_total[5m]) > 0")), 60, "rates in Prometheus")
    PLOTS.mkdir(parents=True, exist_ok=True)
    for dashboard in DASHBOARDS:
        results = {}
        for panel in _panels(dashboard):
            for target in panel["targets"]:
                expr = target["expr"]
                try:
                    wait_for(lambda: bool(_query(stack, expr)), 30, expr)
                except TimeoutError:
                    pytest.fail(f"{dashboard.name} / {panel['title']}: no data for {expr}")
                results[f"{panel['title']} [{target['refId']}]"] = _query(stack, expr)
        _plot(dashboard, results)


def _plot(dashboard: Path, results: dict[str, list]) -> None:
    """What each panel's query returned, as bars: the honest picture without Grafana."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(9, 1.6 * len(results)))
    for ax, (title, data) in zip(axes, results.items()):
        labels = [",".join(f"{k}={v}" for k, v in r["metric"].items() if k not in ("__name__",))[:60] or "value"
                  for r in data][:8]
        values = [float(r["value"][1]) if r["value"][1] not in ("NaN", "+Inf") else 0.0 for r in data][:8]
        ax.barh(labels, values)
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(PLOTS / f"{dashboard.stem}_panels.png", dpi=90)
    plt.close(fig)
