"""gunicorn settings for the UI: ``gunicorn --config gunicorn_config.py app:app``."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pneumonia_common.gunicorn_base import child_exit, metrics_dir, on_starting  # noqa: E402,F401

metrics_dir("ui")
bind = os.environ.get("UI_BIND", "127.0.0.1:5001")
workers = int(os.environ.get("UI_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("UI_THREADS", "8"))
timeout = int(os.environ.get("UI_TIMEOUT_SECONDS", "60"))
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
