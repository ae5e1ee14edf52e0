"""Shared gunicorn settings: multiprocess Prometheus metrics and logging to stdout/stderr.

Each app's ``gunicorn_config.py`` sets ``bind``/``workers`` and imports these hooks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def metrics_dir(app_name: str) -> str:
    """The multiprocess metrics folder: ``PROMETHEUS_MULTIPROC_DIR`` or a per-app temp folder."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(Path(tempfile.gettempdir()) / f"prom-{app_name}-{os.getpid()}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def on_starting(server: Any) -> None:
    """Start with an empty metrics folder: stale files from a previous run would add up."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
