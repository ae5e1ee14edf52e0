"""Whether a film lies inside the model's intended use, as far as its DICOM header says.

The model was trained and measured on frontal chest radiographs of children aged 1 to 5 (Kermany et
al. 2018). A DICOM upload carries its patient's age, the body part, the view and the modality, and
:func:`outside_intended_use` names each of those that falls outside; a JPEG or PNG carries none of
them, and a header that leaves a field out says nothing about it. The reasons are coarse on purpose
("patient older than 5 years", never the age itself): they are stored with the result.
"""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any

from model.preprocessing import sniff_format

# DICOM age string (PS3.5 AS): three digits and D, W, M or Y
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
_FRONTAL_VIEWS = {"AP", "PA"}
_RADIOGRAPHY = {"CR", "DX", "RG", "OT"}  # computed / digital radiography, radiographic imaging, other
_CHEST = {"CHEST", "THORAX", "LUNG"}


def outside_intended_use(data: bytes) -> list[str]:
    """Why a DICOM film lies outside the intended use (empty: nothing in its header says so)."""
    if sniff_format(data) != "dicom":
        return []
    import pydicom  # deferred: only DICOM uploads need it

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - an unreadable header says nothing; the pixel decoder judges the file
        return []
    reasons = []
    years = _age_years(ds)
    if years is not None and years < 1:
        reasons.append("patient younger than 1 year")
    elif years is not None and years >= 6:
        reasons.append("patient older than 5 years")
    modality = str(ds.get("Modality", "")).upper()
    if modality and modality not in _RADIOGRAPHY:
        reasons.append(f"modality {modality}, not a radiograph")
    body_part = str(ds.get("BodyPartExamined", "")).upper()
    if body_part and body_part not in _CHEST:
        reasons.append(f"body part {body_part}, not the chest")
    view = str(ds.get("ViewPosition", "")).upper()
    if view and view not in _FRONTAL_VIEWS:
        reasons.append(f"view {view}, not a frontal (AP or PA) film")
    return reasons


def intended_use_note(data: bytes) -> str:
    """The reasons as one line, the form stored with a result ("" when there are none)."""
    return "; ".join(outside_intended_use(data))


def _age_years(ds: Any) -> float | None:
    """The patient's age at the study: PatientAge, else birth date to study date; None if unknown."""
    match = _AGE.match(str(ds.get("PatientAge", "")).strip().upper())
    if match:
        return int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)] / 365.25
    born, taken = _date(ds.get("PatientBirthDate")), _date(ds.get("StudyDate") or ds.get("AcquisitionDate"))
    return (taken - born).days / 365.25 if born and taken and taken >= born else None


def _date(value: object) -> date | None:
    """A DICOM DA value (YYYYMMDD) as a date; None if absent or malformed."""
    text = str(value or "").strip()
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None
