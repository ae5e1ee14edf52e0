"""The intended-use check on DICOM headers: age, body part, view and modality, coarse reasons only."""

from __future__ import annotations

import pytest

from model.intended_use import outside_intended_use
from tests.helpers import dicom_with, fixture_images


def test_a_film_inside_the_intended_use_or_without_a_header_raises_nothing() -> None:
    assert outside_intended_use(dicom_with(PatientAge="003Y", BodyPartExamined="CHEST", ViewPosition="AP")) == []
    assert outside_intended_use(dicom_with(PatientAge="018M", ViewPosition="PA", Modality="DX")) == []
    assert outside_intended_use(dicom_with(Modality="")) == []  # a header that leaves everything out
    assert outside_intended_use(fixture_images()[0][0].read_bytes()) == []  # a JPEG has no header
    assert outside_intended_use(b"\0" * 128 + b"DICM" + b"garbage") == []  # the decoder judges such a file


@pytest.mark.parametrize(("header", "reason"), [
    ({"PatientAge": "045Y"}, "patient older than 5 years"),
    ({"PatientAge": "006Y"}, "patient older than 5 years"),
    ({"PatientAge": "006M"}, "patient younger than 1 year"),
    ({"PatientAge": "003W"}, "patient younger than 1 year"),
    ({"PatientBirthDate": "20100101", "StudyDate": "20200601"}, "patient older than 5 years"),
    ({"BodyPartExamined": "KNEE"}, "body part KNEE, not the chest"),
    ({"ViewPosition": "LL"}, "view LL, not a frontal (AP or PA) film"),
    ({"Modality": "CT"}, "modality CT, not a radiograph"),
])
def test_each_field_outside_the_intended_use_is_named(header: dict[str, str], reason: str) -> None:
    reasons = outside_intended_use(dicom_with(**header))
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
    assert "45" not in reasons[0] and "2010" not in reasons[0]  # never the age or a date itself


def test_every_reason_is_given() -> None:
    reasons = outside_intended_use(dicom_with(PatientAge="070Y", ViewPosition="LATERAL", BodyPartExamined="CHEST"))
    assert [r.split(",")[0] for r in reasons] == ["patient older than 5 years", "view LATERAL"]
