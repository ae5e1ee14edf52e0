#!/usr/bin/env python3
"""Write Alertmanager's configuration: ``write_alertmanager.py OUT [--sns-topic ARN --region R]
[--webhook URL] [--link URL] [--group-wait 30s]``.

Every alert Prometheus fires goes to one receiver, ``operators``, grouped by alert and job (a host that is
down as a whole, its node_exporter silent, does not also report each of its services): on AWS
the project's SNS topic (terraform/alerts.tf; its e-mail subscriptions come from
``alert_email_addresses``), on the local stack a webhook when ``ALERT_WEBHOOK_URL`` is set; with
neither, alerts are kept in Alertmanager's API and nothing is sent. Used by the monitoring host's
provisioning and by the local stack (``scripts/stack.py``). Standard library only; the file is JSON,
which Alertmanager reads as YAML.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

# SNS e-mail subjects must stay under 100 characters: the alert's name and count, never its labels.
SUBJECT = ('[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
           'pneumonia platform: {{ .GroupLabels.alertname }}')
MESSAGE = ('{{ range .Alerts }}{{ .Status | toUpper }} {{ .Labels.alertname }} ({{ .Labels.severity }}), '
           'since {{ .StartsAt.Format "2006-01-02 15:04 MST" }}\n'
           '{{ .Annotations.summary }}\n{{ .Annotations.description }}\n\n{{ end }}')


def config(sns_topic: str = "", region: str = "", webhook: str = "", link: str = "",
           group_wait: str = "30s") -> dict[str, Any]:
    """The configuration as a dict: one route to the ``operators`` receiver."""
    if bool(sns_topic) != bool(region):
        raise ValueError("an SNS topic needs its region, and a region its topic")
    receiver: dict[str, Any] = {"name": "operators"}
    message = MESSAGE + (f"Dashboards: {link}\n" if link else "")
    if sns_topic:
        receiver["sns_configs"] = [{"topic_arn": sns_topic, "sigv4": {"region": region}, "subject": SUBJECT,
                                    "message": message, "send_resolved": True}]
    if webhook:
        receiver["webhook_configs"] = [{"url": webhook, "send_resolved": True}]
    return {
        "route": {"receiver": "operators", "group_by": ["alertname", "job"], "group_wait": group_wait,
                  "group_interval": "5m", "repeat_interval": "4h"},
        "receivers": [receiver],
        "inhibit_rules": [{"source_matchers": ['alertname="InstanceDown"', 'job="node"'],
                           "target_matchers": ['alertname="InstanceDown"', 'job!="node"'], "equal": ["host"]}],
    }


def write_config(path: Path, **options: str) -> None:
    """Write :func:`config` to ``path`` (mode 0640: the topic and webhook are not for every user)."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(config(**options), indent=2) + "\n")
    os.chmod(partial, 0o640)
    partial.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sns-topic", default="", help="SNS topic ARN (AWS)")
    parser.add_argument("--region", default="", help="the topic's region")
    parser.add_argument("--webhook", default="", help="a webhook URL (Alertmanager's JSON format)")
    parser.add_argument("--link", default="", help="a URL every message ends with (Grafana)")
    parser.add_argument("--group-wait", default="30s")
    args = parser.parse_args()
    write_config(args.out, sns_topic=args.sns_topic, region=args.region, webhook=args.webhook, link=args.link,
                 group_wait=args.group_wait)


if __name__ == "__main__":
    main()
