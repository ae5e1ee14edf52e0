"""Framing: the augmentation presets against framing shortcuts and the counterfactual framing test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data import Sample, list_samples
from model.framing import Counterfactuals, original_size
from model.metrics import choose_threshold
from model.pipeline import AUGMENTATIONS, NormalWindow, build_augmenter, normal_window
from tests.helpers import XRAYS
from scripts import framing_shortcut
from model.framing import (FRAMINGS, blur, border, exposure, local_contrast, match_tones, recompress, reframe, sharpen,
                           window)


def test_reframe_keeps_the_height_and_sets_the_ratio() -> None:
    film = np.arange(100 * 150, dtype=np.uint8).reshape(100, 150)
    narrow, wide = reframe(film, 1.0), reframe(film, 2.0)
    assert narrow.shape == (100, 100) and np.array_equal(narrow, film[:, 25:125])
    assert wide.shape == (100, 200) and np.array_equal(wide[:, 25:175], film)
    assert np.array_equal(wide[:, 0], film[:, 0])


def test_border_adds_a_black_margin() -> None:
    film = np.full((100, 200), 200, np.uint8)
    framed = border(film, 0.2)
    assert framed.shape == (120, 240) and np.array_equal(framed[10:110, 20:220], film)
    assert framed.sum() == film.sum()


def test_exposure_moves_the_mid_tones_and_keeps_black_and_white() -> None:
    film = np.array([[0, 64, 128, 255]], np.uint8)
    assert np.array_equal(exposure(film, 0.5), [[0, 128, 181, 255]]) and exposure(film, 0.5).dtype == np.uint8
    assert np.array_equal(exposure(film, 2.0), [[0, 16, 64, 255]])
    assert np.allclose(exposure(film.astype(np.float32), 1.0), film)


def _edge_film() -> np.ndarray:
    """A flat grey film (100) with one vertical edge to 180 at column 48."""
    film = np.full((64, 96), 100, np.uint8)
    film[:, 48:] = 180
    return film


def test_texture_alterations_change_detail_and_keep_the_film() -> None:
    film = _edge_film()

    def step(image: np.ndarray) -> float:
        return float(image[32, 50].astype(int) - image[32, 45].astype(int))

    blurred, sharpened, recompressed = blur(film, 2.0), sharpen(film, 2.0), recompress(film, 10)
    assert all(out.shape == film.shape and out.dtype == np.uint8 for out in (blurred, sharpened, recompressed))
    assert step(blurred) < step(film) == 80 < step(sharpened)  # softer edge, overshooting edge
    assert blurred[32, 5] == sharpened[32, 5] == 100  # flat regions unchanged
    assert 0 < np.abs(recompressed.astype(int) - film).max() < 60
    assert blur(film.astype(np.float32), 2.0).dtype == np.float32


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
    checks = ("blur 4:", "unsharp mask 20:", "JPEG quality 10:", "tones of the other class:")
    for setting in ("width/height", "central window", "1.75", "0.7", *checks):
        assert setting in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == sum(len(settings) for _, settings in FRAMINGS.values())
    assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[1:3])
    pooled = float(out.split("framings pooled:")[1].split()[0])
    assert 0.0 <= pooled <= 1.0
    cue = [line.split("mean P ")[1].split() for line in out.splitlines() if "resampling cue" in line]
    assert len(cue) == 2 and all(0.0 <= float(row[i]) <= 1.0 for row in cue for i in (0, 6))
    margins = [line.split("specificity ")[1].replace(",", "").split() for line in out.splitlines() if "black margin" in line]
    assert len(margins) == 3 and all(0.0 <= float(row[i]) <= 1.0 for row in margins for i in (0, 2))


def test_fov_preset_reframes_normal_films_only() -> None:
    assert normal_window("fov") == NormalWindow() and normal_window("scale") is None
    assert "fov" in AUGMENTATIONS and build_augmenter("fov") is not None
    rng = np.random.default_rng(0)
    films = rng.integers(0, 256, (200, 32, 40)).astype(np.float32)
    labels = np.repeat([0, 1], 100)
    out = NormalWindow(probability=0.5)(films, labels, np.random.default_rng(1))
    assert out.shape == films.shape and out.dtype == np.float32
    changed = np.any(out != films, axis=(1, 2))
    assert not changed[labels == 1].any(), "a PNEUMONIA film was re-framed"
    assert 30 <= changed[labels == 0].sum() <= 70
    always = NormalWindow(probability=1.0, fraction=(0.5, 0.5))(films[:1], labels[:1], np.random.default_rng(2))
    assert always[0].std() < films[0].std(), "a window of half the film, enlarged, is smoother"


def test_fov_tight_windows_four_in_five_normal_films() -> None:
    assert "fov-tight" in AUGMENTATIONS and build_augmenter("fov-tight") is not None
    films = np.random.default_rng(0).integers(0, 256, (400, 40, 40)).astype(np.float32)
    labels = np.repeat([0, 1], 200)
    out = normal_window("fov-tight")(films, labels, np.random.default_rng(1))
    changed = np.any(out != films, axis=(1, 2))
    for label in (0, 1):  # NORMAL films windowed, as many PNEUMONIA films blurred alike
        assert 140 <= changed[labels == label].sum() <= 180


def _roughness(films: np.ndarray) -> np.ndarray:
    """Mean absolute difference between horizontal neighbours, per film (falls with blur)."""
    return np.abs(np.diff(films, axis=2)).mean(axis=(1, 2))


def test_fov_neutral_blurs_both_classes_alike_and_reframes_normal_films_only() -> None:
    assert normal_window("fov-neutral") == NormalWindow(neutral=True)
    assert "fov-neutral" in AUGMENTATIONS and build_augmenter("fov-neutral") is not None
    films = np.random.default_rng(0).integers(0, 101, (400, 32, 40)).astype(np.float32)
    films[:, 10:22, 12:28] = 255.0  # a bright block in the middle: its share of the film shows the framing
    labels = np.repeat([0, 1], 200)
    out = normal_window("fov-neutral")(films, labels, np.random.default_rng(1))
    changed = np.any(out != films, axis=(1, 2))
    rough = _roughness(out) / _roughness(films)
    bright = (out > 178).mean(axis=(1, 2)) / (films > 178).mean(axis=(1, 2))
    for label in (0, 1):
        moved = changed & (labels == label)
        assert 70 <= moved.sum() <= 130, "each class is altered with the same probability"
        assert rough[moved].mean() < 0.8, "an altered film is blurred"
    assert abs(rough[changed & (labels == 0)].mean() - rough[changed & (labels == 1)].mean()) < 0.1
    assert bright[changed & (labels == 0)].mean() > 1.1, "NORMAL films are cut to a tighter window"
    assert abs(bright[changed & (labels == 1)].mean() - 1.0) < 0.1, "PNEUMONIA films keep their field of view"



@pytest.mark.parametrize("preset", ["fov-margin", "scale-margin"])
def test_margin_presets_put_films_of_either_class_inside_a_black_margin(preset: str) -> None:
    assert normal_window(preset).margin == 0.25
    assert preset in AUGMENTATIONS and build_augmenter(preset) is not None
    films = np.full((800, 40, 48), 200.0, dtype=np.float32)
    labels = np.repeat([0, 1], 400)
    out = normal_window(preset)(films, labels, np.random.default_rng(2))
    black = (out == 0).mean(axis=(1, 2))
    margined = black > 0
    for label in (0, 1):
        assert 60 <= (margined & (labels == label)).sum() <= 140, "each class gets a margin equally often"
    assert abs(black[margined & (labels == 0)].mean() - black[margined & (labels == 1)].mean()) < 0.05
    assert 0.1 < black[margined].mean() < 0.5, "the margin is 5-50 % of the side"
    assert np.all(out[~margined] == 200.0), "without a margin only the window and blur apply"
    if preset == "scale-margin":
        assert np.all(out[margined].max(axis=(1, 2)) == 200.0) and normal_window(preset).probability == 0


def test_fov_exposure_moves_the_mid_tones_of_either_class_alike() -> None:
    assert normal_window("fov-exposure") == NormalWindow(neutral=True, exposure=0.5)
    assert "fov-exposure" in AUGMENTATIONS and build_augmenter("fov-exposure") is not None
    films = np.full((800, 8, 8), 128.0, dtype=np.float32)
    films[:, 0, 0], films[:, -1, -1] = 0.0, 255.0
    labels = np.repeat([0, 1], 400)
    out = NormalWindow(probability=0.0, exposure=0.5)(films, labels, np.random.default_rng(3))
    mid = out[:, 4, 4]
    exposed = mid != 128.0
    for label in (0, 1):
        assert 160 <= (exposed & (labels == label)).sum() <= 240, "each class is exposed equally often"
    assert (mid > 128).sum() > 150 and (mid < 128).sum() > 150, "brighter and darker alike"
    assert mid.min() >= 255 * (128 / 255) ** (1 / 0.6) - 0.01 and mid.max() <= 255 * (128 / 255) ** 0.6 + 0.01
    assert np.all(out[:, 0, 0] == 0.0) and np.all(out[:, -1, -1] == 255.0)


def test_local_contrast_softens_or_enhances_the_detail() -> None:
    film = _edge_film()
    softer, enhanced = local_contrast(film, 0.5), local_contrast(film, 2.0)
    assert softer.dtype == enhanced.dtype == np.uint8
    assert 100 < softer[32, 47] < softer[32, 48] < 180, "the edge spreads"
    assert enhanced[32, 47] < 100 and enhanced[32, 48] > 180, "the edge overshoots"
    assert softer[32, 5] == enhanced[32, 5] == 100 and np.array_equal(local_contrast(film, 1.0), film)


def test_fov_texture_changes_the_detail_of_either_class_alike() -> None:
    assert normal_window("fov-texture") == NormalWindow(neutral=True, texture=0.5)
    assert "fov-texture" in AUGMENTATIONS and build_augmenter("fov-texture") is not None
    films = np.full((800, 16, 16), 100.0, dtype=np.float32)
    films[:, :, 8:] = 180.0
    labels = np.repeat([0, 1], 400)
    out = NormalWindow(probability=0.0, texture=0.5)(films, labels, np.random.default_rng(3))
    step = out[:, 8, 8] - out[:, 8, 7]
    changed = step != 80.0
    for label in (0, 1):
        assert 160 <= (changed & (labels == label)).sum() <= 240, "each class is changed equally often"
    assert (step < 80).sum() > 100 and (step > 80).sum() > 100, "softer and sharper alike"
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_match_tones_gives_the_centre_the_reference_grey_levels() -> None:
    ramp = np.tile(np.linspace(0, 255, 64), (64, 1)).astype(np.uint8)
    darker = (ramp.astype(np.float32) * 0.6).astype(np.uint8)
    out = match_tones(ramp, darker)
    assert out.dtype == np.uint8 and out[0, 0] == 0 and out[0, -1] == 255, "black and white kept"
    assert np.all(np.diff(out[0].astype(int)) >= 0), "a monotone tone curve: the anatomy stays"
    centre = (slice(13, 51), slice(13, 51))
    matched, before, reference = (float(np.median(f[centre])) for f in (out, ramp, darker))
    assert abs(matched - reference) <= 2 < before - reference, "the centre takes the reference's grey levels"
    assert np.array_equal(match_tones(ramp, ramp), ramp)


def test_fov_tones_trades_grey_levels_between_the_classes() -> None:
    assert normal_window("fov-tones") == NormalWindow(neutral=True, tones=0.5)
    assert "fov-tones" in AUGMENTATIONS and build_augmenter("fov-tones") is not None
    ramp = np.tile(np.linspace(0, 255, 16), (16, 1)).astype(np.float32)
    labels = np.repeat([0, 1], 400)
    films = np.stack([ramp if label else ramp * 0.5 for label in labels])  # PNEUMONIA films brighter here
    out = NormalWindow(probability=0.0, tones=0.5)(films, labels, np.random.default_rng(3))
    mid = out[:, 8, 8]
    for label, own, other in ((0, films[0, 8, 8], films[-1, 8, 8]), (1, films[-1, 8, 8], films[0, 8, 8])):
        traded = np.isclose(mid[labels == label], other, atol=3)
        assert 160 <= traded.sum() <= 240, "half of each class takes the other class's grey levels"
        assert np.all(traded | (mid[labels == label] == own)), "the others are left as they were"


def test_counterfactuals_price_the_framing_into_the_threshold() -> None:
    """A model fooled by framing (its score grows with the film's width) and the pooled rule."""
    samples = list_samples(XRAYS)

    def by_width(films: list[np.ndarray]) -> np.ndarray:
        return np.array([min(1.0, film.shape[1] / film.shape[0] / 2) for film in films])

    cf = Counterfactuals(samples, XRAYS, by_width)
    assert cf.settings == [(name, setting) for name, (_, settings) in FRAMINGS.items() for setting in settings]
    assert len(cf.labels) == len(samples) and all(len(p) == len(samples) for p in cf.probabilities)
    np.testing.assert_allclose(cf.probabilities[cf.settings.index(("width/height", 1.5))], 0.75, atol=0.01)
    labels = np.array([s.label for s in samples])
    probs = np.where(labels == 1, 0.95, 0.05)  # the films as they are: perfectly separated
    pooled = cf.threshold(labels, probs, 0.95)
    assert choose_threshold(labels, probs, 0.95) == 0.5
    assert pooled == choose_threshold(np.r_[labels, np.tile(cf.labels, 8)], np.r_[probs, *cf.probabilities], 0.95)
    assert pooled != 0.5 and 0.0 <= cf.pooled_auc <= 1.0


def test_counterfactuals_use_the_original_size_films_of_sources_csv(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    samples = [Sample(tmp_path / "chest_xray" / "train" / "NORMAL" / f"IM-{i}.jpeg", 0) for i in range(3)]
    assert original_size(samples, tmp_path / "chest_xray") == samples
    assert "no " in caplog.text and "all 3 validation films" in caplog.text
    (tmp_path / "SOURCES.csv").write_text("name,pre_resized_by_uploader\nIM-0.jpeg,1\nIM-1.jpeg,0\n")
    assert original_size(samples, tmp_path / "chest_xray") == samples[1:]
