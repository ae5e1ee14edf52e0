"""Where one prediction request spends its time, stage by stage, against the running stack.

``python -m scripts.bench_request [--requests 200]`` after ``make up``: the same fixture X-rays
through each stage alone (decode + resize, model, SHA-256, Redis write, audit append), then the
whole Flask app in-process (no HTTP), the API over HTTP (gunicorn), and Nginx ``/api/`` -> API;
median milliseconds of each and its share of the full Nginx path. Reads the token and the Redis
password from the stack's ``run/secrets.env`` like ``scripts.loadtest``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import redis  # noqa: E402
import requests  # noqa: E402

from model.predictor import Predictor  # noqa: E402
from model.preprocessing import load_gray  # noqa: E402
from model.store import PredictionRecord, ResultStore  # noqa: E402
from pneumonia_api import create_app  # noqa: E402
from pneumonia_api.audit import AuditLog  # noqa: E402
from pneumonia_api.settings import ApiSettings  # noqa: E402
from scripts.loadtest import IMAGES, REPO, _secrets  # noqa: E402


def _median_ms(fn: Callable[[int], object], n: int) -> float:
    fn(0)
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_request", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "best_model.keras")
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("STACK_RUN_DIR", REPO / "run")))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("STACK_HTTP_PORT", "8080")))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "5000")))
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("REDIS_PORT", "6379")))
    args = parser.parse_args(argv)
    secret = _secrets(args.run_dir)
    payloads = [p.read_bytes() for p in IMAGES]
    pick = lambda i: payloads[i % len(payloads)]  # noqa: E731
    predictor = Predictor(args.model)
    client = redis.Redis(port=args.redis_port, password=secret["REDIS_PASSWORD"], decode_responses=True)
    store, audit = ResultStore(client), AuditLog(client, retention_days=1)
    gray = load_gray(pick(0), predictor.spec)
    record = PredictionRecord(label="NORMAL", probability=0.1, threshold=0.5, model_version="bench",
                              image_sha256="0" * 64)
    app = create_app(ApiSettings(model_path=str(args.model), redis_url=f"redis://127.0.0.1:{args.redis_port}/0",
                                 redis_password=secret["REDIS_PASSWORD"], api_token=secret["API_TOKEN"],
                                 warm_heatmap=False)).test_client()  # no heat-map measured here
    headers = {"Authorization": f"Bearer {secret['API_TOKEN']}"}
    session = requests.Session()

    def http(url: str) -> Callable[[int], object]:
        return lambda i: session.post(url, files={"file": ("x.jpeg", pick(i))}, headers=headers, timeout=30)

    stages = {
        "decode + resize (load_gray)": lambda i: load_gray(pick(i), predictor.spec),
        "scale + model (ONNX, batch 1)": lambda i: predictor.predict_gray(gray[None]),
        "SHA-256 of the upload": lambda i: hashlib.sha256(pick(i)).hexdigest(),
        "Redis write (result + indexes)": lambda i: store.save(record),
        "audit append (XADD)": lambda i: audit.record("service:bench", "bench"),
        "Flask app in-process (all of it)": lambda i: app.post("/predict", headers=headers,
                                                               data={"file": (io.BytesIO(pick(i)), "x.jpeg")}),
        "HTTP -> gunicorn API": http(f"http://127.0.0.1:{args.api_port}/predict"),
        "HTTP -> Nginx /api/ -> API": http(f"http://127.0.0.1:{args.http_port}/api/predict"),
    }
    results = {name: _median_ms(fn, args.requests) for name, fn in stages.items()}
    total = results["HTTP -> Nginx /api/ -> API"]
    print(f"{'stage':<36}{'median ms':>10}{'share of Nginx path':>21}")
    for name, ms in results.items():
        print(f"{name:<36}{ms:>10.2f}{ms / total:>21.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
