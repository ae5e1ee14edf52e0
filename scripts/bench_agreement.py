"""The Agreement page's read of the stored results: every result (the baseline) against the index of
the results that carry a reading (what the page reads), side by side on one throw-away Redis.

``python -m scripts.bench_agreement [--results 50000] [--readings 500] [--repeats 3]``: starts its own
``redis-server`` on a free loopback port, stores that many results with that many readings, then times
each way of reading them plus the agreement computed from them (best of the repeats) and prints the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from typing import Callable

import redis

from model.agreement import agreement
from model.store import PredictionRecord, ResultStore
from tests.helpers import free_port, wait_for


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _fill(store: ResultStore, results: int, readings: int) -> None:
    ids = []
    step = max(results // max(readings, 1), 1)
    for i in range(results):
        record = PredictionRecord(label="PNEUMONIA" if i % 3 == 0 else "NORMAL", probability=(i % 100) / 100,
                                  threshold=0.3, model_version="bench", image_sha256="0" * 64)
        store.save(record)
        ids.append(record.id)
    for i in range(0, results, step)[:readings]:
        store.set_reading(ids[i], "PNEUMONIA" if i % 2 else "NORMAL", "user:bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=50_000)
    parser.add_argument("--readings", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
                                   "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port, decode_responses=True)
            wait_for(client.ping, 10, "redis-server")
            store = ResultStore(client)
            _fill(store, args.results, args.readings)
            ways = {"every result (baseline)": lambda: store.recent(args.results),
                    "read results' index": lambda: store.read(args.results)}
            seconds = {}
            for name, read in ways.items():
                summary = agreement(read(), "PNEUMONIA", "bench")[0]
                seconds[name] = _best_seconds(lambda: agreement(read(), "PNEUMONIA", "bench"), args.repeats)
                print(f"{name:<24} {seconds[name] * 1000:8.1f} ms  ({summary['read']} readings)")
            baseline, indexed = seconds.values()
            print(f"ratio: the index is {baseline / indexed:.1f}x faster for {args.results} results, "
                  f"{args.readings} read")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
