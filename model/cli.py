"""What the model package's command-line tools share."""

from __future__ import annotations

import sys
from typing import Callable


def exit_code(action: Callable[[], object], *expected: type[Exception]) -> int:
    """Run a tool's ``action``: 0, or 2 with an ``expected`` error's message on stderr (no traceback)."""
    try:
        action()
    except expected as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
