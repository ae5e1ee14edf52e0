"""gunicorn settings for the UI: ``gunicorn --config gunicorn_config.py app:app``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pneumonia_common.gunicorn_base import child_exit, on_starting, post_fork, settings  # noqa: E402,F401

globals().update(settings("ui", 5001, worker_class="gthread", threads=8))
