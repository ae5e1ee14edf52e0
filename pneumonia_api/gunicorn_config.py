"""gunicorn settings for the API: ``gunicorn --config gunicorn_config.py app:app``."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pneumonia_common.gunicorn_base import child_exit, on_starting, post_fork, settings  # noqa: E402,F401

_config = settings("api", 5000)
# The cores shared among the workers: with ONNX Runtime's default (every core in every worker) two
# workers on two cores served 113 images/s, with one thread each 230 (documentation/PERFORMANCE.md).
os.environ.setdefault("ONNX_THREADS", str(max(1, (os.cpu_count() or 1) // _config["workers"])))
globals().update(_config)
