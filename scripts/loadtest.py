"""Load test: N uploads of real X-rays at concurrency C through Nginx, then check nothing was lost.

``python -m scripts.loadtest [--requests 1000] [--concurrency 16] [--ui USER]``

Loopback only, bounded in count and time. Reads the API token and Redis password from the stack's
``run/secrets.env`` (or ``API_TOKEN`` / ``REDIS_PASSWORD``). By default it posts to Nginx ``/api/``
with the token; ``--ui USER`` (password in ``LOADTEST_PASSWORD``) signs in once per client thread
and uploads through the UI form instead (Nginx -> UI -> API, with the Grad-CAM heat-map the UI asks
for). Prints throughput, p50/p95/p99 latency, errors and the CPU seconds the load generator itself
used, then fetches every returned id from Redis and compares the label.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import redis
import requests

from model.store import ResultStore

REPO = Path(__file__).resolve().parent.parent
IMAGES = sorted((REPO / "tests" / "fixtures" / "chest_xray").glob("*/*.jpeg"))
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
RESULT = re.compile(r'id="label">(?P<label>\w+)<.*?id="result-id">(?P<id>[0-9a-f]{32})<', re.S)


def _secrets(run_dir: Path) -> dict[str, str]:
    path = run_dir / "secrets.env"
    stored = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else {}
    return {k: os.environ.get(k) or stored.get(k, "") for k in ("API_TOKEN", "REDIS_PASSWORD")}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


class _ApiClient:
    """Uploads to the API (through Nginx ``/api/``) with the bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def upload(self, data: bytes) -> tuple[int, dict | None]:
        resp = self.session.post(self.url, files={"file": ("x.jpeg", data)}, timeout=60)
        body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else None
        return resp.status_code, body


class _UiClient:
    """A signed-in browser session uploading through the UI form."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        page = self.session.get(base_url + "sign-in", timeout=30).text
        self.session.post(base_url + "sign-in", timeout=30,
                          data={"csrf_token": CSRF.search(page).group(1), "username": user, "password": password})
        self.csrf = CSRF.search(self.session.get(base_url, timeout=30).text).group(1)

    def upload(self, data: bytes) -> tuple[int, dict | None]:
        resp = self.session.post(self.base_url + "predict", data={"csrf_token": self.csrf},
                                 files={"file": ("x.jpeg", data, "image/jpeg")}, timeout=60)
        found = RESULT.search(resp.text)
        if resp.status_code != 200 or found is None:
            return resp.status_code, None
        return 200, {"id": found["id"], "label": found["label"], "stored": "Stored</dt><dd>yes" in resp.text}


def run(base_url: str, token: str, n: int, concurrency: int, path: str = "api/predict",
        time_limit: float = 600.0, ui_account: tuple[str, str] | None = None) -> dict:
    """Send ``n`` uploads; returns the summary and the successful (id, label) pairs."""
    host = urlparse(base_url).hostname or ""
    if not (host == "localhost" or ipaddress.ip_address(host).is_loopback):
        raise SystemExit("refusing to load-test a non-loopback address")
    session_local = threading.local()
    deadline = time.monotonic() + time_limit
    payloads = [p.read_bytes() for p in IMAGES]

    def one(i: int) -> tuple[int, float, dict | None]:
        if time.monotonic() > deadline:
            return -1, 0.0, None
        if getattr(session_local, "client", None) is None:
            session_local.client = (_UiClient(base_url, *ui_account) if ui_account
                                    else _ApiClient(base_url + path, token))
        started = time.perf_counter()
        try:
            status, body = session_local.client.upload(payloads[i % len(payloads)])
        except requests.RequestException:
            return 0, time.perf_counter() - started, None
        return status, time.perf_counter() - started, body

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - cpu
    ok = [(lat, body) for status, lat, body in outcomes if status == 200 and body]
    latencies = [lat for lat, _ in ok]
    return {
        "requests": n, "concurrency": concurrency, "wall_seconds": round(wall, 2),
        "throughput_per_second": round(len(ok) / wall, 2) if wall else 0.0,
        "p50_ms": round(1000 * _percentile(latencies, 0.50), 1),
        "p95_ms": round(1000 * _percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "status_counts": dict(Counter(str(s) for s, _, _ in outcomes)),
        "load_generator_cpu_seconds": round(client_cpu, 1),
        "results": [(body["id"], body["label"], body["stored"]) for _, body in ok],
    }


def verify(store: ResultStore, results: list[tuple[str, str, bool]]) -> dict:
    """Every stored result is retrievable with the same label."""
    stored = [(i, label) for i, label, was_stored in results if was_stored]
    missing = [i for i, label in stored if (r := store.get(i)) is None or r.label != label]
    return {"stored": len(stored), "not_stored": len(results) - len(stored), "missing_or_changed": len(missing)}


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when there were no errors and nothing was lost."""
    parser = argparse.ArgumentParser(prog="python -m scripts.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('STACK_HTTP_PORT', '8080')}/")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--path", default="api/predict", help="api/predict (Nginx -> API)")
    parser.add_argument("--ui", metavar="USER", help="upload through the UI as USER (password: LOADTEST_PASSWORD)")
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("STACK_RUN_DIR", REPO / "run")))
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    secret = _secrets(args.run_dir)
    ui_account = (args.ui, os.environ.get("LOADTEST_PASSWORD", "")) if args.ui else None
    summary = run(args.url, secret["API_TOKEN"], args.requests, args.concurrency, args.path, ui_account=ui_account)
    store = ResultStore(redis.Redis(port=args.redis_port, password=secret["REDIS_PASSWORD"], decode_responses=True))
    summary["verification"] = verify(store, summary.pop("results"))
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    errors = sum(v for k, v in summary["status_counts"].items() if k != "200")
    return 0 if errors == 0 and summary["verification"]["missing_or_changed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
