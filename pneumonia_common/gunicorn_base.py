"""Shared gunicorn settings: multiprocess Prometheus metrics and logging to stdout/stderr (the apps'
own log records too).

Each app's ``gunicorn_config.py`` calls :func:`settings` and imports the hooks.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def metrics_dir(app_name: str) -> str:
    """The multiprocess metrics folder: ``PROMETHEUS_MULTIPROC_DIR`` or a per-app temp folder."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(Path(tempfile.gettempdir()) / f"prom-{app_name}-{os.getpid()}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


WORKER_TIMEOUT_SECONDS = 60  # gunicorn kills a worker whose request runs longer
APP_LOGGERS = ("pneumonia_api", "pneumonia_web", "pneumonia_common", "model")


def post_fork(server: Any, worker: Any) -> None:
    """In each worker, before the app loads: the apps' log records at ``LOG_LEVEL`` and up go to
    stderr in gunicorn's format (without this, only warnings reached the log, through Python's
    last-resort handler; the model load and the heat-map warm-up were not logged)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                                           "[%Y-%m-%d %H:%M:%S %z]"))
    for name in APP_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("LOG_LEVEL", "info").upper())
        logger.propagate = False


def on_starting(server: Any) -> None:
    """Start with an empty metrics folder: stale files from a previous run would add up."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def settings(app_name: str, default_port: int, worker_class: str = "sync", threads: int = 1) -> dict[str, Any]:
    """gunicorn settings of one app from ``<APP>_BIND``, ``<APP>_WORKERS``, ``<APP>_WORKER_TIMEOUT_SECONDS``."""
    metrics_dir(app_name)
    prefix = app_name.upper()
    return {
        "bind": os.environ.get(f"{prefix}_BIND", f"127.0.0.1:{default_port}"),
        "workers": int(os.environ.get(f"{prefix}_WORKERS", "2")),
        "worker_class": worker_class,
        "threads": int(os.environ.get(f"{prefix}_THREADS", str(threads))),
        "timeout": int(os.environ.get(f"{prefix}_WORKER_TIMEOUT_SECONDS", str(WORKER_TIMEOUT_SECONDS))),
        "graceful_timeout": 20,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": os.environ.get("LOG_LEVEL", "info"),
        "raw_env": ["TF_CPP_MIN_LOG_LEVEL=2"],
    }
