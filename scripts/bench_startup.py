"""API start-up time and memory per engine, side by side in one run.

``python -m scripts.bench_startup [--model models/best_model.keras]``

For each engine (ONNX Runtime, Keras) starts gunicorn with one worker on a free loopback port
without the heat-map warm-up, times the seconds until ``/readyz`` answers (Redis is not needed: 503
"degraded" still means the model is loaded), and reads the worker's peak RSS (VmHWM) from /proc;
then ONNX with the warm-up (``API_WARM_HEATMAP=1``, the default), until ``/readyz`` reports the
heat-map ready as well.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(model: Path, engine: str, warm_heatmap: bool = False) -> tuple[float, float]:
    """Seconds to ready (with ``warm_heatmap``: to heat-map ready) and the worker's peak RSS in MB."""
    port = _free_port()
    env = {**os.environ, "MODEL_PATH": str(model.resolve()), "API_TOKEN": "bench", "INFERENCE_ENGINE": engine,
           "API_WARM_HEATMAP": str(int(warm_heatmap)),
           "API_BIND": f"127.0.0.1:{port}", "API_WORKERS": "1", "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-metrics-")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn_config.py", "app:app"],
                            cwd=REPO / "pneumonia_api", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if answer.status_code in (200, 503) and (answer.json()["heatmap_ready"] or not warm_heatmap):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
            if time.perf_counter() - started > 120 or proc.poll() is not None:
                raise RuntimeError(f"{engine}: API did not become ready")
        ready = time.perf_counter() - started
        worker = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0]
        status = Path(f"/proc/{worker}/status").read_text()
        peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        return ready, peak_kb / 1024
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "best_model.keras")
    args = parser.parse_args(argv)
    results = {"onnx": measure(args.model, "onnx"), "keras": measure(args.model, "keras"),
               "onnx + heat-map warm-up": measure(args.model, "onnx", warm_heatmap=True)}
    print(f"{'engine':<24}{'seconds to ready':>18}{'worker peak RSS MB':>20}")
    for engine, (ready, rss) in results.items():
        print(f"{engine:<24}{ready:>18.2f}{rss:>20.0f}")
    (k_ready, k_rss), (o_ready, o_rss) = results["keras"], results["onnx"]
    print(f"onnx vs keras: {k_ready / o_ready:.1f}x faster to ready, {k_rss / o_rss:.1f}x less memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
