"""Dataset discovery, patient-level splits and the tf.data training pipeline.

Layout: ``<root>/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (Kaggle), or a split
folder with ``NORMAL/`` and ``PNEUMONIA/`` directly inside; JPEG, PNG or DICOM files.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from model.preprocessing import ImageDecodeError, PreprocessSpec, load_gray

log = logging.getLogger(__name__)

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
# The finer labels in the Kermany file names (person12_virus_34.jpeg), for ``model.cnn --subtype-weight``.
SUBTYPE_NAMES = ("NORMAL", "bacterial", "viral")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm", ".dicom"}

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),  # person123_bacteria_456.jpeg
    re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-\d+", re.IGNORECASE),  # IM-0115-0001, NORMAL2-IM-0588-0001
)


class DatasetError(RuntimeError):
    """The dataset folder is missing, empty or malformed."""


@dataclass(frozen=True)
class Sample:
    """One labelled image file."""

    path: Path
    label: int

    @property
    def patient(self) -> str:
        return patient_id(self.path.name)

    @property
    def subtype(self) -> int:
        """Index into :data:`SUBTYPE_NAMES`: a PNEUMONIA film is viral if its name says ``virus``."""
        return 0 if self.label == 0 else 2 if "virus" in self.path.name.lower() else 1


def patient_id(filename: str) -> str:
    """Patient id from a Kermany file name; unknown patterns are their own patient."""
    name = Path(filename).name
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1).upper()
    return Path(name).stem.upper()


def resolve_split_dir(root: Path, split: str | None = None) -> Path:
    """``root/split`` for a Kaggle root, or ``root`` itself if it holds the class folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    if split and (root / split).is_dir():
        return root / split
    if all((root / name).is_dir() for name in CLASS_NAMES):
        return root
    wanted = f"'{split}/' or " if split else ""
    raise DatasetError(f"{root} holds neither {wanted}the class folders {', '.join(CLASS_NAMES)}")


def list_samples(folder: Path) -> list[Sample]:
    """All images under ``folder/{NORMAL,PNEUMONIA}``, sorted; other files are reported and skipped."""
    samples: list[Sample] = []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = Path(folder) / name
        if not class_dir.is_dir():
            raise DatasetError(f"missing class folder: {class_dir}")
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path, label))
            elif not path.name.startswith("."):
                log.warning("skipping %s: not a %s file", path, "/".join(sorted(IMAGE_SUFFIXES)))
    if not samples:
        raise DatasetError(f"no images found in {folder}")
    return samples


def class_counts(samples: Iterable[Sample]) -> dict[str, int]:
    """Images per class name."""
    counts = Counter(s.label for s in samples)
    return {name: counts.get(i, 0) for i, name in enumerate(CLASS_NAMES)}


def _patients_by_class(samples: Sequence[Sample]) -> dict[int, list[str]]:
    """Patients grouped by their (majority) label, sorted for determinism."""
    labels: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        labels[s.patient][s.label] += 1
    by_class: dict[int, list[str]] = defaultdict(list)
    for patient, counts in sorted(labels.items()):
        by_class[counts.most_common(1)[0][0]].append(patient)
    return by_class


def patient_folds(samples: Sequence[Sample], k: int, seed: int = 42) -> list[list[Sample]]:
    """Split into ``k`` stratified folds with every patient in exactly one fold."""
    if k < 2:
        raise ValueError("need at least 2 folds")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for _, patients in sorted(_patients_by_class(samples).items()):
        order = rng.permutation(len(patients))
        for rank, idx in enumerate(order):
            fold_of[patients[idx]] = rank % k
    folds: list[list[Sample]] = [[] for _ in range(k)]
    for s in samples:
        folds[fold_of[s.patient]].append(s)
    return folds


def patient_split(
    samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 42
) -> tuple[list[Sample], list[Sample]]:
    """Stratified patient-level train/validation split, deterministic for a seed."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for _, patients in sorted(_patients_by_class(samples).items()):
        n_val = max(1, round(len(patients) * val_fraction))
        chosen = rng.choice(len(patients), size=n_val, replace=False)
        val_patients.update(patients[i] for i in chosen)
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


def fingerprint(samples: Iterable[Sample]) -> str:
    """SHA-256 over sorted (class, file name, size): identifies the training data."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: (s.label, s.path.name)):
        digest.update(f"{s.label}/{s.path.name}/{s.path.stat().st_size}\n".encode())
    return digest.hexdigest()


def load_arrays(
    samples: Sequence[Sample], spec: PreprocessSpec, workers: int = 4
) -> tuple[np.ndarray, np.ndarray, list[Sample]]:
    """Decode and resize every image once: ``(N, size, size) uint8``, labels, kept samples.

    Unreadable files are logged by name and left out.
    """

    def _load(sample: Sample) -> np.ndarray | None:
        try:
            return load_gray(sample.path.read_bytes(), spec)
        except (ImageDecodeError, OSError) as exc:
            log.warning("skipping %s: %s", sample.path, exc)
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(_load, samples))
    kept = [s for s, a in zip(samples, arrays) if a is not None]
    if not kept:
        raise DatasetError("no readable images")
    images = np.stack([a for a in arrays if a is not None])
    labels = np.array([s.label for s in kept], dtype=np.float32)
    return images, labels, kept
