"""Monitoring as code: promtool checks and unit tests, dashboard structure, every dashboard
query run against the live Prometheus of the running stack after real traffic, and an alert that
Prometheus fires reaching a receiver through the real Alertmanager."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from deploy.provision.write_alertmanager import MESSAGE, SUBJECT, write_config
from scripts.stack import Stack
from tests.helpers import REPO, QuietHandler, fixture_images, free_port, http_server, stop, wait_for

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


ALERTMANAGER_CONFIGS = {
    "none": {},
    "webhook": {"webhook": "http://127.0.0.1:9/alerts"},
    "sns": {"sns_topic": "arn:aws:sns:eu-west-1:123456789012:pneumonia-alerts", "region": "eu-west-1",
            "link": "https://203.0.113.10/grafana/"},
}


@pytest.mark.parametrize("options", ALERTMANAGER_CONFIGS.values(), ids=ALERTMANAGER_CONFIGS.keys())
def test_alertmanager_config_is_valid(options: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    write_config(path, **options)
    proc = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    receiver = yaml.safe_load(path.read_text())["receivers"][0]
    expected = {"name"} | {configs for option, configs in (("sns_topic", "sns_configs"), ("webhook", "webhook_configs"))
                           if option in options}
    assert set(receiver) == expected


def test_alertmanager_refuses_a_topic_without_its_region(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="region"):
        write_config(tmp_path / "alertmanager.yml", sns_topic="arn:aws:sns:eu-west-1:123456789012:x")


def test_sns_subject_and_message_templates_render() -> None:
    # amtool fills the templates with its own example alert; a template error fails here, not on AWS
    for text in (SUBJECT, MESSAGE):
        proc = subprocess.run(["amtool", "template", "render", f"--template.text={text}",
                               "--template.glob=/usr/share/prometheus/alertmanager/*.tmpl"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip(), proc.stdout + proc.stderr
    longest = SUBJECT.replace("{{ .Status | toUpper }}", "RESOLVED").replace("{{ .GroupLabels.alertname }}", "x" * 30)
    assert len(re.sub(r"{{.*?}}", "", longest)) + 3 < 100, "SNS e-mail subjects are at most 100 characters"


class _FakeSns(QuietHandler):
    """SNS's Publish action as Alertmanager's AWS SDK calls it: records each request, answers as SNS does."""

    published: list[tuple[str, dict[str, list[str]]]] = []
    ANSWER = (b"<PublishResponse xmlns='http://sns.amazonaws.com/doc/2010-03-31/'><PublishResult><MessageId>m-1"
              b"</MessageId></PublishResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"
              b"</PublishResponse>")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.published.append((self.headers.get("Authorization", ""), form))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(self.ANSWER)))
        self.end_headers()
        self.wfile.write(self.ANSWER)


def test_alertmanager_publishes_an_alert_to_sns_as_on_aws(tmp_path: Path) -> None:
    """The configuration provision.sh writes on AWS, with only the SNS endpoint pointed at a stand-in
    and static keys instead of the instance role: a real Alertmanager signs and sends the Publish call
    with the subject and message an on-call engineer will read."""
    _FakeSns.published = []
    path, port = tmp_path / "alertmanager.yml", free_port()
    with http_server(_FakeSns) as sns:
        write_config(path, **ALERTMANAGER_CONFIGS["sns"], group_wait="1s")
        config = json.loads(path.read_text())
        receiver = config["receivers"][0]["sns_configs"][0]
        receiver["api_url"] = f"http://127.0.0.1:{sns.server_address[1]}/"
        receiver["sigv4"].update(access_key="AKIDEXAMPLE", secret_key="not-a-secret")
        path.write_text(json.dumps(config))
        proc = subprocess.Popen(["prometheus-alertmanager", f"--config.file={path}", f"--storage.path={tmp_path}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).ok, 30, "Alertmanager")
            labels = {"alertname": "InstanceDown", "job": "node", "host": "10.0.0.1", "severity": "critical"}
            down = {"labels": labels, "annotations": {"summary": "node on 10.0.0.1:9100 is down",
                                                      "description": "Not scraped for 5 min."}}
            service = {"labels": {**labels, "job": "api"}, "annotations": {"summary": "api on 10.0.0.1:5000"}}
            assert requests.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[down, service], timeout=5).ok
            wait_for(lambda: bool(_FakeSns.published), 30, "the Publish call")
            time.sleep(3)  # the service's own group would be sent 1 s after it formed: it is inhibited
        finally:
            stop(proc)
    assert len(_FakeSns.published) == 1, "a host down as a whole is one notification, not one per service"
    authorization, form = _FakeSns.published[0]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/sns/" in authorization
    assert form["Action"] == ["Publish"] and form["TopicArn"] == [ALERTMANAGER_CONFIGS["sns"]["sns_topic"]]
    assert form["Subject"] == ["[FIRING:1] pneumonia platform: InstanceDown"]
    message = form["Message"][0]
    assert re.match(r"FIRING InstanceDown \(critical\), since \d{4}-\d\d-\d\d \d\d:\d\d UTC\n"
                    r"node on 10.0.0.1:9100 is down\nNot scraped for 5 min.\n\n"
                    r"Dashboards: https://203.0.113.10/grafana/\n$", message), message


def _panels(path: Path) -> list[dict]:
    return json.loads(path.read_text())["panels"]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(dashboard: Path) -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    uids = {s["uid"] for s in sources if s["type"] == "prometheus"}  # every panel queries Prometheus
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


class _Receiver(QuietHandler):
    """Records every notification Alertmanager posts (its webhook JSON)."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()


@pytest.fixture
def webhook(stack: Stack) -> Iterator[list[dict]]:
    """A receiver on the stack's ALERT_WEBHOOK_URL: the notifications it got."""
    _Receiver.received = []
    with http_server(_Receiver, urlsplit(stack.config.alert_webhook_url).port):
        yield _Receiver.received


def _reload_prometheus(stack: Stack) -> None:
    os.kill(stack.pid("prometheus"), signal.SIGHUP)


def test_a_firing_alert_reaches_the_receiver(stack: Stack, webhook: list[dict]) -> None:
    """A rule that fires at once, loaded into the running Prometheus: its alert goes through the stack's
    Alertmanager (configured by write_alertmanager.py, as on AWS) to the webhook."""
    wait_for(lambda: bool(_query(stack, "prometheus_notifications_alertmanagers_discovered == 1")), 30,
             "Prometheus discovering Alertmanager")
    rule = stack.conf_dir / "prometheus/rules/delivery_check.yml"
    rule.write_text(yaml.safe_dump({"groups": [{"name": "delivery-check", "rules": [{
        "alert": "DeliveryCheck", "expr": "vector(1)", "labels": {"severity": "info"},
        "annotations": {"summary": "a test alert"}}]}]}))
    try:
        _reload_prometheus(stack)

        def delivered() -> bool:
            return any(a["labels"]["alertname"] == "DeliveryCheck" and a["status"] == "firing"
                       for n in webhook for a in n["alerts"])

        wait_for(delivered, 90, "DeliveryCheck at the webhook")
        note = next(n for n in webhook if n["groupLabels"].get("alertname") == "DeliveryCheck")
        assert note["receiver"] == "operators" and note["commonAnnotations"]["summary"] == "a test alert"
    finally:
        rule.unlink()
        _reload_prometheus(stack)
    assert _query(stack, 'up{job="alertmanager"} == 1'), "Prometheus does not scrape Alertmanager"

