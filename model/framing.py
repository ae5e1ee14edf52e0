"""Counterfactual framings of validation films, and the threshold rule that includes them.

Two ways of framing a film are class shortcuts in the train split: its aspect ratio (train
NORMAL films are 1.23 times as wide as high, PNEUMONIA 1.50) and its field of view (train NORMAL
films show head and abdomen around the chest, PNEUMONIA films are tight; test-era films are
tight). Each original-size validation film is therefore also shown to the model

* cropped (central part kept) or widened (side columns repeated outwards) to fixed width/height
  ratios, and
* cut to its central window (a tighter collimation of the same chest).

A model that reads the lungs answers the same under every framing. The ROC AUC of all re-framed
films pooled summarises discrimination and framing invariance in one validation-only number, and
the decision threshold is chosen on the validation split pooled with these counterfactuals, so that
it also holds for tightly framed films (see :data:`THRESHOLD_RULE`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from model.data import Sample
from model.metrics import choose_threshold, roc_auc
from model.preprocessing import decode_gray

log = logging.getLogger(__name__)

RATIOS = (1.0, 1.25, 1.5, 1.75)
WINDOWS = (1.0, 0.9, 0.8, 0.7)
THRESHOLD_RULE = ("max Youden J (balanced accuracy) subject to sensitivity >= {:.2f} on the validation split "
                  "pooled with its framing counterfactuals (each original-size validation film at "
                  f"width/height {', '.join(map(str, RATIOS))} and central windows {', '.join(map(str, WINDOWS))})")


def reframe(gray: np.ndarray, ratio: float) -> np.ndarray:
    """The film cropped or widened (edge columns repeated) to ``ratio`` times as wide as high."""
    h, w = gray.shape
    target = round(h * ratio)
    if target <= w:
        left = (w - target) // 2
        return gray[:, left:left + target]
    extra = target - w
    return np.pad(gray, ((0, 0), (extra // 2, extra - extra // 2)), mode="edge")


def window(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of the film's height and width (a tighter field of view)."""
    h, w = gray.shape
    ch, cw = round(h * fraction), round(w * fraction)
    top, left = (h - ch) // 2, (w - cw) // 2
    return gray[top:top + ch, left:left + cw]


def border(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The film inside a black margin that adds ``fraction`` to its height and width (a film shown
    zoomed out, scanned or exported with a margin). Not one of :data:`FRAMINGS`: a check beside them."""
    h, w = gray.shape
    dy, dx = round(h * fraction / 2), round(w * fraction / 2)
    return np.pad(gray, ((dy, dy), (dx, dx)), mode="constant")


def _as_film(values: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """``values`` (0..255) in the dtype of the film ``gray``, rounded for integer films."""
    return values.round().astype(gray.dtype) if np.issubdtype(gray.dtype, np.integer) else values.astype(gray.dtype)


def exposure(gray: np.ndarray, gamma: float) -> np.ndarray:
    """The film with its mid-tones brightened (``gamma`` < 1) or darkened (> 1), black and white kept:
    a film exposed or processed otherwise. Not one of :data:`FRAMINGS`: a check beside them, and a
    training augmentation (``fov-exposure``)."""
    out = 255.0 * (np.clip(gray, 0, 255) / 255.0) ** gamma
    return _as_film(out, gray)


def match_tones(gray: np.ndarray, reference: np.ndarray, central: float = 0.6) -> np.ndarray:
    """The film through the monotone tone curve that gives its central ``central`` window the grey
    levels of the reference film's (percentiles 3-97), black and white kept: the same anatomy as
    another film's exposure and processing would show it. A training augmentation (``fov-tones``)."""
    percentiles = np.linspace(0, 100, 33)[1:-1]
    source, target = (np.percentile(window(np.asarray(f, np.float32), central), percentiles) for f in (gray, reference))
    knots = np.maximum.accumulate(np.concatenate([[0.0], source, [255.0]]))
    knots += np.arange(len(knots)) * 1e-3  # strictly increasing where the film has flat stretches
    out = np.interp(np.clip(gray, 0, 255), knots, np.concatenate([[0.0], np.maximum.accumulate(target), [255.0]]))
    return _as_film(out, gray)


def _through_pil(gray: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """``change`` applied to the film as an 8-bit image, returned in the film's dtype."""
    out = np.asarray(change(Image.fromarray(np.clip(gray, 0, 255).round().astype(np.uint8))))
    return out.astype(gray.dtype)


def blur(gray: np.ndarray, radius: float) -> np.ndarray:
    """The film blurred by a Gaussian of ``radius`` pixels (a softer detector or processing). Not
    one of :data:`FRAMINGS`: a texture check beside them."""
    return _through_pil(gray, lambda im: im.filter(ImageFilter.GaussianBlur(radius)))


def sharpen(gray: np.ndarray, radius: float) -> np.ndarray:
    """The film edge-enhanced by an unsharp mask of ``radius`` pixels at 100 % (the processing that
    differs between X-ray systems). A texture check."""
    return _through_pil(gray, lambda im: im.filter(ImageFilter.UnsharpMask(radius, 100, 0)))


def local_contrast(gray: np.ndarray, gain: float, radius: float = 3.0) -> np.ndarray:
    """The film's detail finer than ``radius`` pixels scaled by ``gain`` around its blurred self:
    below 1 a softer film, above 1 an edge-enhanced one (an unsharp mask of ``gain - 1``). A training
    augmentation (``fov-texture``)."""
    base = blur(gray, radius).astype(np.float32)
    out = np.clip(base + (np.asarray(gray, np.float32) - base) * gain, 0, 255)
    return _as_film(out, gray)


def recompress(gray: np.ndarray, quality: float) -> np.ndarray:
    """The film saved once more as a JPEG of ``quality`` (an export or upload that compressed it
    harder). A texture check."""
    def jpeg(im: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=int(quality))
        return Image.open(buffer)
    return _through_pil(gray, jpeg)


FRAMINGS: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], tuple[float, ...]]] = {
    "width/height": (reframe, RATIOS),
    "central window": (window, WINDOWS),
}


def original_size(samples: list[Sample], data_root: Path) -> list[Sample]:
    """The samples that reached us at original size (``pre_resized_by_uploader == 0`` in the
    ``SOURCES.csv`` beside the data folder); all of them when there is no such file."""
    sources = Path(data_root).parent / "SOURCES.csv"
    if not sources.is_file():
        # A data copy without it gives another counterfactual set, pooled AUC and threshold.
        log.warning("no %s: framing counterfactuals of all %d validation films, squashed copies included",
                    sources, len(samples))
        return list(samples)
    with open(sources) as fh:
        squashed = {row["name"] for row in csv.DictReader(fh) if row["pre_resized_by_uploader"] == "1"}
    return [s for s in samples if s.path.name not in squashed]


def reframed(films: list[np.ndarray]) -> Iterator[tuple[str, float, list[np.ndarray]]]:
    """``(framing, setting, re-framed films)`` for every counterfactual framing."""
    for name, (frame, settings) in FRAMINGS.items():
        for setting in settings:
            yield name, setting, [frame(film, setting) for film in films]


class Counterfactuals:
    """The original-size validation films, their labels and the model's probabilities on every
    re-framing of them (in :func:`reframed` order)."""

    def __init__(self, samples: list[Sample], data_root: Path,
                 predict_films: Callable[[list[np.ndarray]], np.ndarray]) -> None:
        originals = original_size(samples, data_root)
        self.labels = np.array([s.label for s in originals], dtype=int)
        films = [decode_gray(s.path.read_bytes()) for s in originals]
        self.settings: list[tuple[str, float]] = []
        self.probabilities: list[np.ndarray] = []
        for name, setting, framed in reframed(films):
            self.settings.append((name, setting))
            self.probabilities.append(np.asarray(predict_films(framed), dtype=np.float64).reshape(-1))

    @property
    def pooled_auc(self) -> float:
        """ROC AUC of every re-framed film pooled."""
        return roc_auc(np.tile(self.labels, len(self.probabilities)), np.concatenate(self.probabilities))

    def pooled(self, labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The validation split (``labels``, ``probabilities``) pooled with the counterfactuals."""
        return (np.r_[np.asarray(labels), np.tile(self.labels, len(self.probabilities))],
                np.r_[np.asarray(probabilities), *self.probabilities])

    def threshold(self, labels: np.ndarray, probabilities: np.ndarray, min_sensitivity: float) -> float:
        """The threshold rule on the validation split pooled with the counterfactuals."""
        return choose_threshold(*self.pooled(labels, probabilities), min_sensitivity)
