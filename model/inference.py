"""Batch inference: classify every image in a folder and store each result in Redis.

``python -m model.inference --data DIR [--model PATH]``; Redis from ``REDIS_URL`` and
``REDIS_PASSWORD``, with the same key schema as the API (:mod:`model.store`).
DIR may hold images directly or in sub-folders (class folders are not needed). Every file is
read whatever its name (a PACS export names DICOM files without an extension); what is not a JPEG,
PNG or DICOM image is reported and counted as skipped. Hidden files and folders are left out.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as ``python model/inference.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from model.artifacts import ModelArtifactError  # noqa: E402
from model.intended_use import intended_use_note  # noqa: E402
from model.preprocessing import ImageDecodeError, load_gray  # noqa: E402
from model.store import DEFAULT_TTL_SECONDS, PredictionRecord, ResultStore, redis_from_env  # noqa: E402

DEFAULT_MODEL = os.environ.get("MODEL_PATH", "models/best_model.keras")


def find_images(folder: Path) -> list[Path]:
    """Every file under ``folder``, recursively, sorted, except hidden files and folders; the
    decoder tells images from other files by their content, not their names."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def run(data: Path, model_path: Path, store: ResultStore, batch_size: int = 32) -> Counter:
    """Predict every image and store one record each; returns counts by label (and ``skipped``;
    ``atypical``: films unlike the training films, :mod:`model.atypicality`; ``outside intended use``:
    DICOM films whose header says so, :mod:`model.intended_use`)."""
    from model.predictor import Predictor

    predictor = Predictor(model_path)
    counts: Counter = Counter()
    paths = find_images(data)
    for start in range(0, len(paths), batch_size):
        batch, grays = [], []
        for path in paths[start : start + batch_size]:
            raw = path.read_bytes()
            try:
                grays.append(load_gray(raw, predictor.spec))
            except ImageDecodeError as exc:
                print(f"skipping {path}: {exc}", file=sys.stderr)
                counts["skipped"] += 1
                continue
            batch.append((path, hashlib.sha256(raw).hexdigest(), intended_use_note(raw)))
        if not batch:
            continue
        probs, atypicality = predictor.assess_gray(np.stack(grays))
        for i, ((path, digest, outside), prob) in enumerate(zip(batch, probs)):
            record = PredictionRecord(
                label=predictor.label(float(prob)), probability=float(prob), threshold=predictor.threshold,
                model_version=predictor.version, image_sha256=digest, source="batch", file_name=path.name,
                atypicality=None if atypicality is None else float(atypicality[i]), outside_intended_use=outside,
            )
            store.save(record)
            counts[record.label] += 1
            counts["atypical"] += bool(record.atypical)
            counts["outside intended use"] += bool(outside)
            flags = "atypical  " * bool(record.atypical) + (f"outside intended use ({outside})  " if outside else "")
            print(f"{record.id}  {record.label:<9}  {prob:.4f}  {flags}{path}")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 2 on bad input, 3 when Redis is unreachable."""
    parser = argparse.ArgumentParser(prog="python -m model.inference", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of images (searched recursively)")
    parser.add_argument("--model", type=Path, default=Path(DEFAULT_MODEL))
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: data folder not found: {args.data}", file=sys.stderr)
        return 2
    store = ResultStore(redis_from_env(), int(os.environ.get("RESULT_TTL_SECONDS", DEFAULT_TTL_SECONDS)))
    if not store.ping():
        print("error: cannot reach Redis at REDIS_URL (is it running, and is REDIS_PASSWORD right?)", file=sys.stderr)
        return 3
    try:
        counts = run(args.data, args.model, store, args.batch_size)
    except ModelArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"error: Redis failed during the run: {exc}", file=sys.stderr)
        return 3
    total = sum(v for k, v in counts.items() if k not in ("skipped", "atypical", "outside intended use"))
    print(f"stored {total} results: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
