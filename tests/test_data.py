"""Patient ids, patient-level splits on the real file names, and messy folders."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest

from model.data import (
    SUBTYPE_NAMES,
    DatasetError,
    Sample,
    class_counts,
    list_samples,
    load_arrays,
    patient_folds,
    patient_id,
    patient_split,
    resolve_split_dir,
)
from model.preprocessing import PreprocessSpec
from tests.helpers import FIXTURES, XRAYS


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person123_bacteria_456.jpeg", "PERSON123"),
        ("person123_virus_7.jpeg", "PERSON123"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0588-0001.jpeg", "NORMAL2-IM-0588"),
        ("something_else.png", "SOMETHING_ELSE"),
    ],
)
def test_patient_id(name: str, patient: str) -> None:
    assert patient_id(name) == patient


@pytest.fixture(scope="module")
def real_train_samples() -> list[Sample]:
    """The 5,216 real training file names (no image data needed)."""
    lines = (FIXTURES / "train_filenames.txt").read_text().split()
    return [Sample(Path(line), int(line.startswith("PNEUMONIA/"))) for line in lines]


def test_subtypes_from_the_real_file_names(real_train_samples: list[Sample]) -> None:
    counts = Counter(SUBTYPE_NAMES[s.subtype] for s in real_train_samples)
    assert counts == {"NORMAL": 1341, "bacterial": 2530, "viral": 1345}  # the Kermany train split's
    assert Sample(Path("PNEUMONIA/person1_virus_6.jpeg"), 1).subtype == 2
    assert Sample(Path("PNEUMONIA/person1_bacteria_1.jpeg"), 1).subtype == 1
    assert Sample(Path("PNEUMONIA/upload.png"), 1).subtype == 1  # no subtype in the name: the majority one


def test_split_on_real_names_keeps_patients_apart(real_train_samples: list[Sample]) -> None:
    train, val = patient_split(real_train_samples, 0.2, seed=7)
    assert not {s.patient for s in train} & {s.patient for s in val}
    assert len(train) + len(val) == len(real_train_samples)
    # stratified: the pneumonia share is about the same on both sides
    share = lambda ss: class_counts(ss)["PNEUMONIA"] / len(ss)  # noqa: E731
    assert abs(share(train) - share(val)) < 0.03
    assert 0.15 < len(val) / len(real_train_samples) < 0.25


def test_split_is_deterministic_per_seed(real_train_samples: list[Sample]) -> None:
    a = patient_split(real_train_samples, 0.2, seed=1)[1]
    b = patient_split(real_train_samples, 0.2, seed=1)[1]
    c = patient_split(real_train_samples, 0.2, seed=2)[1]
    assert a == b and a != c


def test_folds_partition_patients(real_train_samples: list[Sample]) -> None:
    folds = patient_folds(real_train_samples, 5, seed=3)
    assert sum(map(len, folds)) == len(real_train_samples)
    patients = [{s.patient for s in fold} for fold in folds]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not patients[i] & patients[j]


def test_corrupt_and_foreign_files_are_named_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(XRAYS, tmp_path / "train")
    (tmp_path / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "PNEUMONIA" / "person9_bad_1.jpeg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    with caplog.at_level(logging.WARNING):
        samples = list_samples(resolve_split_dir(tmp_path, "train"))
        images, labels, kept = load_arrays(samples, PreprocessSpec(input_size=32))
    assert "notes.txt" in caplog.text and "person9_bad_1.jpeg" in caplog.text
    assert len(kept) == 16 == len(images) == len(labels)


def test_missing_or_empty_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        resolve_split_dir(tmp_path / "nope", "train")
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "PNEUMONIA").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        list_samples(resolve_split_dir(tmp_path))
