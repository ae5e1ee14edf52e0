"""A burst of GETs from one client in a process of its own: ``python -m tests.flood URL N THREADS``.

The suite's own process holds every model its tests have built; a pause there between connecting
and sending looks to Nginx like a slow client, which it drops without an answer. Prints JSON: each
answer's status code (or the error's name) and the first 429 page.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import requests


def _get(url: str) -> tuple[int | str, str]:
    try:
        resp = requests.get(url, timeout=10)
    except requests.RequestException as exc:
        return type(exc).__name__, ""
    return resp.status_code, resp.text


def main(url: str, n: int, threads: int) -> None:
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(_get, [url] * n))
    refused = next((text for code, text in answers if code == 429), "")
    print(json.dumps({"codes": [code for code, _ in answers], "refused_page": refused}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
