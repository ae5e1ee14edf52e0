"""gunicorn settings for the API: ``gunicorn --config gunicorn_config.py app:app``."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pneumonia_common.gunicorn_base import child_exit, metrics_dir, on_starting  # noqa: E402,F401

metrics_dir("api")
bind = os.environ.get("API_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("API_WORKERS", "2"))
worker_class = "sync"
timeout = int(os.environ.get("API_TIMEOUT_SECONDS", "60"))
graceful_timeout = 20
max_requests = 0
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
raw_env = ["TF_CPP_MIN_LOG_LEVEL=2"]
