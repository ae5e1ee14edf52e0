#!/usr/bin/env python3
"""Write Prometheus file_sd target files: ``write_targets.py DIR JOB=HOST:PORT[=ROLE] ...``.

Each argument names a job and space-separated targets; a target may carry its role after a
second ``=`` (default: the job name). Used by the monitoring host's provisioning and by the
local stack (``scripts/stack.py``), so both write the same format. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def parse(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """``"node=10.0.0.1:9100=api 10.0.0.2:9100=ui"`` -> ``("node", [(target, role), ...])``."""
    job, _, targets = spec.partition("=")
    pairs = []
    for item in targets.split():
        target, _, role = item.partition("=")
        pairs.append((target, role or job))
    return job, pairs


def write_targets(folder: Path, jobs: dict[str, list[tuple[str, str]]]) -> None:
    """One ``<job>.json`` per job, each target labelled with its role; each file is replaced
    atomically (write, then rename) so a running Prometheus never reads half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    for job, pairs in jobs.items():
        entries = [{"targets": [target], "labels": {"role": role}} for target, role in pairs]
        partial = folder / f".{job}.json.tmp"
        partial.write_text(json.dumps(entries, indent=2) + "\n")
        partial.replace(folder / f"{job}.json")


if __name__ == "__main__":
    write_targets(Path(sys.argv[1]), dict(parse(spec) for spec in sys.argv[2:]))
