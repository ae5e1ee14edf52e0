"""WSGI entry point: ``gunicorn --config gunicorn_config.py app:app`` (from this folder)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pneumonia_web import create_app  # noqa: E402

app = create_app()
