"""Prometheus request metrics for a Flask app, multiprocess-safe under gunicorn.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn configs set it), every worker
writes its samples there and ``/metrics`` aggregates all workers.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("http_requests_total", "HTTP requests by app, endpoint, method and status.",
                   ["app", "endpoint", "method", "status"])
LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency in seconds.",
                    ["app", "endpoint", "method"], buckets=LATENCY_BUCKETS)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def instrument(app: Flask, app_name: str) -> None:
    """Count and time every request, and serve ``GET /metrics``."""

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.pop("request_started", None)
        if started is not None:
            LATENCY.labels(app_name, endpoint, request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(app_name, endpoint, request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)
