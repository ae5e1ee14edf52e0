"""mixup (``model.cnn --mixup``): films, labels and class weights blended alike."""

from __future__ import annotations

import numpy as np
import pytest

from model.pipeline import ArrayBatches, Mixup, Subtypes, make_dataset
from model.preprocessing import PreprocessSpec

WEIGHTS = {0: 2.0, 1: 0.5}


def _partner_and_lam(blended: np.ndarray, films: np.ndarray, i: int) -> tuple[int, float]:
    """The film j and the lam with ``blended[i] == lam * films[i] + (1 - lam) * films[j]`` (least squares)."""
    best = (-1, 0.0, np.inf)
    for j in range(len(films)):
        if j == i:
            continue
        direction, offset = (films[i] - films[j]).ravel(), (blended[i] - films[j]).ravel()
        lam = float(direction @ offset / (direction @ direction))
        residual = float(np.abs(offset - lam * direction).max())
        if residual < best[2]:
            best = (j, lam, residual)
    assert best[2] < 1e-3, f"film {i} is no blend of two films of its batch"
    return best[0], best[1]


def test_each_film_label_and_weight_are_blended_by_one_lam() -> None:
    rng = np.random.default_rng(0)
    films = rng.uniform(0, 255, (12, 6, 5)).astype(np.float32)
    labels = np.array([0, 1] * 6)
    blended, soft, weights = Mixup(0.4, WEIGHTS)(films, labels, np.random.default_rng(1))
    assert blended.shape == films.shape and soft.shape == weights.shape == (12,)
    assert {blended.dtype, soft.dtype, weights.dtype} == {np.dtype(np.float32)}
    class_weight = np.where(labels == 1, WEIGHTS[1], WEIGHTS[0])
    mixed = 0
    for i in range(len(films)):
        if np.allclose(blended[i], films[i], atol=1e-3):  # lam ~ 1 or its own partner: unchanged
            assert soft[i] == pytest.approx(labels[i], abs=1e-3)
            continue
        j, lam = _partner_and_lam(blended, films, i)
        assert -1e-4 <= lam <= 1 + 1e-4
        assert soft[i] == pytest.approx(lam * labels[i] + (1 - lam) * labels[j], abs=1e-4)
        assert weights[i] == pytest.approx(lam * class_weight[i] + (1 - lam) * class_weight[j], abs=1e-4)
        mixed += 1
    assert mixed >= 6


def test_small_alpha_keeps_most_films_close_to_one_of_the_two() -> None:
    films = np.random.default_rng(0).uniform(0, 255, (400, 4, 4)).astype(np.float32)
    labels = np.repeat([0, 1], 200)
    _, soft, _ = Mixup(0.2, WEIGHTS)(films, labels, np.random.default_rng(2))
    assert np.all((soft >= 0) & (soft <= 1))
    near_a_class = np.mean((soft < 0.1) | (soft > 0.9))
    assert near_a_class > 0.5  # Beta(0.2, 0.2) puts most lam near 0 or 1
    _, soft_wide, _ = Mixup(4.0, WEIGHTS)(films, labels, np.random.default_rng(2))
    assert np.mean((soft_wide < 0.1) | (soft_wide > 0.9)) < near_a_class


def test_both_batch_sources_blend_input_label_and_weight_alike() -> None:
    # black NORMAL and white PNEUMONIA films: a blend's grey level says its label
    labels = np.repeat([0, 1], 5)
    films = (labels * 255)[:, None, None] * np.ones((10, 32, 32), np.uint8)
    spec = PreprocessSpec(32, "tf", "squash")
    mixup = Mixup(0.4, WEIGHTS)
    dataset = make_dataset(films, labels, spec, 4, shuffle=True, mixup=mixup)
    batches = [*dataset.as_numpy_iterator(), *ArrayBatches(films, labels, spec, 4, shuffle=True, mixup=mixup)]
    assert any(np.any((soft > 0.05) & (soft < 0.95)) for _, soft, _ in batches)
    for x, soft, weights in batches:
        assert x.shape == (len(soft), 32, 32, 3) and weights.shape == soft.shape
        np.testing.assert_allclose(x, np.broadcast_to((2 * soft - 1)[:, None, None, None], x.shape), atol=1e-5)
        np.testing.assert_allclose(weights, WEIGHTS[0] + (WEIGHTS[1] - WEIGHTS[0]) * soft, atol=1e-5)
    with pytest.raises(ValueError, match="subtypes"):
        make_dataset(films, labels, spec, 4, mixup=mixup, subtypes=Subtypes(np.zeros(10, np.int32)))
