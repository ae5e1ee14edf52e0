"""Load test: N uploads of real X-rays at concurrency C through Nginx, then check nothing was lost.

``python -m scripts.loadtest [--requests 1000] [--concurrency 16] [--path api/predict]``

Loopback only, bounded in count and time. Reads the API token and Redis password from the stack's
``run/secrets.env`` (or ``API_TOKEN`` / ``REDIS_PASSWORD``). Prints throughput, p50/p95/p99 latency
and errors, then fetches every returned id from Redis and compares the label.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
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


def _secrets(run_dir: Path) -> dict[str, str]:
    path = run_dir / "secrets.env"
    stored = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else {}
    return {k: os.environ.get(k) or stored.get(k, "") for k in ("API_TOKEN", "REDIS_PASSWORD")}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def run(base_url: str, token: str, n: int, concurrency: int, path: str = "api/predict",
        time_limit: float = 600.0) -> dict:
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
        session = getattr(session_local, "s", None) or requests.Session()
        session_local.s = session
        started = time.perf_counter()
        try:
            resp = session.post(base_url + path, files={"file": ("x.jpeg", payloads[i % len(payloads)])},
                                headers={"Authorization": f"Bearer {token}"}, timeout=60)
        except requests.RequestException:
            return 0, time.perf_counter() - started, None
        body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else None
        return resp.status_code, time.perf_counter() - started, body

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
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
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("STACK_RUN_DIR", REPO / "run")))
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    secret = _secrets(args.run_dir)
    summary = run(args.url, secret["API_TOKEN"], args.requests, args.concurrency, args.path)
    store = ResultStore(redis.Redis(port=args.redis_port, password=secret["REDIS_PASSWORD"], decode_responses=True))
    summary["verification"] = verify(store, summary.pop("results"))
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    errors = sum(v for k, v in summary["status_counts"].items() if k != "200")
    return 0 if errors == 0 and summary["verification"]["missing_or_changed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
