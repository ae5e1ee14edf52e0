"""Framing: the augmentation presets against framing shortcuts and the counterfactual framing test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.pipeline import AUGMENTATIONS, build_augmenter
from scripts import framing_shortcut
from scripts.framing_shortcut import reframe, window


def test_reframe_keeps_the_height_and_sets_the_ratio() -> None:
    film = np.arange(100 * 150, dtype=np.uint8).reshape(100, 150)
    narrow, wide = reframe(film, 1.0), reframe(film, 2.0)
    assert narrow.shape == (100, 100) and np.array_equal(narrow, film[:, 25:125])
    assert wide.shape == (100, 200) and np.array_equal(wide[:, 25:175], film)
    assert np.array_equal(wide[:, 0], film[:, 0])


def test_window_keeps_the_centre() -> None:
    film = np.zeros((100, 200), np.uint8)
    film[45:55, 95:105] = 255
    tight = window(film, 0.5)
    assert tight.shape == (50, 100)
    assert tight.sum() == film.sum()


def _bright_area(preset: str, n: int = 64) -> float:
    """Mean bright area of a centred square after ``preset`` (grows when the preset zooms in)."""
    images = np.zeros((n, 96, 96, 1), np.float32)
    images[:, 32:64, 32:64] = 255.0
    out = np.asarray(build_augmenter(preset, seed=3)(images, training=True))
    assert out.shape == images.shape
    return float((out > 127).sum() / n)


def test_scale_preset_zooms_in_where_the_others_barely_do() -> None:
    assert "scale" in AUGMENTATIONS
    assert build_augmenter("none") is None
    square = 32 * 32
    assert _bright_area("scale") > 1.2 * square
    assert _bright_area("aspect") < 1.1 * square
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_augmenter("mirror")


def test_framing_report_on_a_real_model(tiny_model: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture) -> None:
    assert framing_shortcut.main(["--model", str(tiny_model), "--data", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "original-size validation films" in out
    for setting in ("width/height", "central window", "1.75", "0.7"):
        assert setting in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == len(framing_shortcut.RATIOS) + len(framing_shortcut.WINDOWS)
    assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[1:3])
    pooled = float(out.split("framings pooled:")[1].split()[0])
    assert 0.0 <= pooled <= 1.0
