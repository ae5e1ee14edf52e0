"""Run inside a namespace: try TCP connections and print what happened, as JSON.

``python -m scripts.rehearsal.probe TIMEOUT < [[ip, port], ...]`` -> ``[[ip, port, result], ...]``
with result ``open`` (connected), ``refused`` (reset: the host answered, nothing listens) or
``blocked`` (no answer before the timeout: a firewall dropped it).
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def attempt(ip: str, port: int, timeout: float) -> str:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        code = sock.connect_ex((ip, port))
    if code == 0:
        return "open"
    return "refused" if code == errno.ECONNREFUSED else "blocked"


def main() -> None:
    timeout = float(sys.argv[1])
    targets = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda t: attempt(t[0], t[1], timeout), targets))
    json.dump([[ip, port, r] for (ip, port), r in zip(targets, results)], sys.stdout)


if __name__ == "__main__":
    main()
