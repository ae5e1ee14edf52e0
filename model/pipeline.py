"""Input pipeline: decoded-once images in memory, augmentation, shared scaling.

With the TensorFlow backend (CPU training, the default) batches come from ``tf.data``; with
another Keras backend (JAX or PyTorch, e.g. on a GPU host without TensorFlow) from a
``keras.utils.PyDataset`` that applies the same augmentation and scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from PIL import Image

from model.framing import exposure, local_contrast, match_tones
from model.preprocessing import PreprocessSpec, scale

# Each preset lists the Keras preprocessing layers applied to grey images in 0..255.
AUGMENTATIONS = ("seed", "xray", "aspect", "scale", "fov", "fov-neutral", "fov-tight", "fov-margin", "fov-exposure",
                 "fov-texture", "fov-tones", "scale-margin", "none")
# Width zoom independent of height zoom for ``aspect``: the aspect ratio of the source film is a
# class shortcut here (train originals: NORMAL 1.23 +- 0.13 wide, PNEUMONIA 1.50 +- 0.23; squashing
# to a square turns it into a horizontal compression the network can see), so it is jittered.
ASPECT_WIDTH_ZOOM = (-0.3, 0.3)
# Zoom (negative = in) for ``scale``: the field of view is a class shortcut too (train NORMAL films
# show head and abdomen around a small chest, PNEUMONIA films are collimated tight; the test-era
# NORMAL films are tight), so films are zoomed in up to a 65 % (height) / 55 % (width) window,
# width still independent of height.
SCALE_HEIGHT_ZOOM = (-0.35, 0.1)
SCALE_WIDTH_ZOOM = (-0.45, 0.25)


@dataclass(frozen=True)
class NormalWindow:
    """Class-conditional counterfactual framing for ``fov``: a NORMAL film is, with ``probability``,
    cut to a random window (height and width each a random ``fraction`` of the film's, anywhere in
    it) and resized back. Tight framing then stops meaning PNEUMONIA; cutting a NORMAL film never
    changes its label, whereas cutting a PNEUMONIA film could cut away the opacity.

    Enlarging a window blurs it, so with ``fov`` blur means NORMAL (a cue the ``fov`` models learned:
    NORMAL validation films cut to 70 % score 0.13-0.20 when enlarged from the input size, 0.29-0.62
    when cut from the original film). With ``neutral`` (``fov-neutral``) every other film is, with
    the same probability, shrunk by the same random fractions and enlarged back: the same blur,
    whatever the class, and the same field of view.

    ``fov-tight`` is ``fov-neutral`` with more and tighter windows: 80 % of the NORMAL films, cut to
    60-90 % (and as many films of either class blurred alike).

    With ``margin`` (``fov-margin``) a film of either class is then, with that probability, shrunk
    into a black margin that adds a random ``margin_fraction`` to its height and width, at a random
    place (a film zoomed out, scanned or exported with a border): a margin stops meaning anything.
    ``scale-margin`` does that alone (``probability`` 0: no windows, no blur).

    With ``exposure`` (``fov-exposure``) a film of either class is, with that probability, given a
    random gamma, log-uniform in ``gamma`` (a film exposed or processed otherwise: brighter or darker
    mid-tones, same black and white). Brighter mid-tones read as PNEUMONIA to models trained without
    it (``scripts.framing_shortcut``'s exposure check).

    With ``texture`` (``fov-texture``) a film of either class is, with that probability, made softer
    or edge-enhanced: its detail finer than a random ``detail_radius`` (pixels at input size) scaled
    by a random gain, log-uniform in ``detail_gain``. A softer film reads as PNEUMONIA to models
    trained without it (``scripts.framing_shortcut``'s texture check).

    With ``tones`` (``fov-tones``) a film of either class is, with that probability, given the grey
    levels of a random film of the other class in its batch (:func:`model.framing.match_tones`): a
    film's grey-level distribution alone separates the classes (and flags the test-era NORMAL films
    that the models over-call), so it is made to say nothing about the class."""

    probability: float = 0.5
    fraction: tuple[float, float] = (0.65, 0.95)
    neutral: bool = False
    margin: float = 0.0
    margin_fraction: tuple[float, float] = (0.05, 0.5)
    exposure: float = 0.0
    gamma: tuple[float, float] = (0.6, 1.0 / 0.6)
    texture: float = 0.0
    detail_gain: tuple[float, float] = (0.4, 2.5)
    detail_radius: tuple[float, float] = (1.0, 4.0)
    tones: float = 0.0

    def __call__(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Grey images ``(N, H, W)`` (float32, 0..255) with some films re-framed (and others blurred alike)."""
        out = np.array(images, dtype=np.float32, copy=True)
        height, width = out.shape[1:3]
        normal = np.asarray(labels) == 0
        chosen = rng.random(len(out)) < self.probability
        for i in np.flatnonzero(chosen if self.neutral else chosen & normal):
            h, w = (max(8, round(side * rng.uniform(*self.fraction))) for side in (height, width))
            if normal[i]:
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                small = Image.fromarray(out[i, top:top + h, left:left + w], mode="F")
            else:
                # every other film keeps a subset of its own pixels, as a window does (no averaging)
                small = Image.fromarray(out[i], mode="F").resize((w, h), Image.Resampling.NEAREST)
            out[i] = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
        for i in np.flatnonzero(rng.random(len(out)) < self.margin):
            grow = 1.0 + rng.uniform(*self.margin_fraction)
            h, w = round(height / grow), round(width / grow)
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            small = np.asarray(Image.fromarray(out[i], mode="F").resize((w, h), Image.Resampling.BILINEAR))
            out[i] = 0.0
            out[i, top:top + h, left:left + w] = small
        for i in np.flatnonzero(rng.random(len(out)) < self.exposure):
            out[i] = exposure(out[i], float(np.exp(rng.uniform(*np.log(self.gamma)))))
        for i in np.flatnonzero(rng.random(len(out)) < self.texture):
            out[i] = local_contrast(out[i], float(np.exp(rng.uniform(*np.log(self.detail_gain)))),
                                    float(rng.uniform(*self.detail_radius)))
        for i in np.flatnonzero(rng.random(len(out)) < self.tones):
            others = np.flatnonzero(normal != normal[i])
            if len(others):
                out[i] = match_tones(out[i], np.asarray(images[rng.choice(others)], np.float32))
        return out


@dataclass(frozen=True)
class Subtypes:
    """The auxiliary targets of ``model.cnn --subtype-weight``: each film's index into
    :data:`model.data.SUBTYPE_NAMES`, and the binary class weights, which become per-film sample
    weights (Keras applies ``class_weight`` to single-output models only)."""

    labels: np.ndarray
    class_weight: dict[int, float] | None = None

    def targets(self, label: Any, subtype: Any) -> tuple[Any, ...]:
        """``({"pneumonia": label, "subtype": subtype},)``, with the batch's sample weights if weighted."""
        targets = {"pneumonia": label, "subtype": subtype}
        if self.class_weight is None:
            return (targets,)
        weights = keras.ops.where(keras.ops.cast(label, "int32") == 1, self.class_weight[1], self.class_weight[0])
        return targets, weights


@dataclass(frozen=True)
class Mixup:
    """mixup (Zhang et al. 2018) for ``model.cnn --mixup ALPHA``: each film of a training batch is
    blended with a random film of the same batch, ``lam * a + (1 - lam) * b`` with ``lam ~ Beta(alpha,
    alpha)`` drawn per film, and so are its label and its class weight (the batch's sample weights)."""

    alpha: float
    class_weight: dict[int, float]

    def __call__(self, images: np.ndarray, labels: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blended images ``(N, H, W)``, soft labels and sample weights (all float32)."""
        lam = rng.beta(self.alpha, self.alpha, len(images)).astype(np.float32)
        partner = rng.permutation(len(images))
        y = np.asarray(labels, dtype=np.float32)
        weights = np.where(y >= 0.5, self.class_weight[1], self.class_weight[0]).astype(np.float32)

        def blend(a: np.ndarray) -> np.ndarray:
            shape = (-1,) + (1,) * (a.ndim - 1)
            return (lam.reshape(shape) * a + (1.0 - lam.reshape(shape)) * a[partner]).astype(np.float32)

        return blend(np.asarray(images, dtype=np.float32)), blend(y), blend(weights)


def normal_window(name: str) -> NormalWindow | None:
    """The counterfactual part of an augmentation preset (``fov``, ``fov-neutral``, ``fov-tight``,
    ``fov-margin``, ``fov-exposure``, ``fov-texture``, ``fov-tones``, ``scale-margin``)."""
    return {"fov": NormalWindow(), "fov-neutral": NormalWindow(neutral=True),
            "fov-tight": NormalWindow(probability=0.8, fraction=(0.6, 0.9), neutral=True),
            "fov-margin": NormalWindow(neutral=True, margin=0.25),
            "fov-exposure": NormalWindow(neutral=True, exposure=0.5),
            "fov-texture": NormalWindow(neutral=True, texture=0.5),
            "fov-tones": NormalWindow(neutral=True, tones=0.5),
            "scale-margin": NormalWindow(probability=0.0, margin=0.25)}.get(name)


def build_augmenter(name: str, seed: int = 42) -> keras.Sequential | None:
    """Augmentation preset: ``seed`` (the original recipe), ``xray`` (no flip, milder geometry,
    brightness/contrast jitter for scanner differences), ``aspect`` (``xray`` with the width zoomed
    independently of the height, against the aspect-ratio shortcut), ``scale`` (``aspect`` with
    strong zoom-in, against the field-of-view shortcut), ``fov``, ``fov-neutral``, ``fov-tight``,
    ``fov-margin``, ``fov-exposure``, ``fov-texture``, ``fov-tones`` and ``scale-margin`` (``scale``; the trainer adds
    :class:`NormalWindow`) or ``none``."""
    if name == "none":
        return None
    if name == "seed":
        layers = [
            keras.layers.RandomRotation(15 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.3, 0.3, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomFlip("horizontal", seed=seed + 3),
        ]
    elif name in AUGMENTATIONS:  # the presets built from ``xray`` (``seed`` and ``none`` are above)
        geometry = "scale" if normal_window(name) else name  # the counterfactual presets add to ``scale``
        height_zoom, width_zoom = {"xray": (0.15, None), "aspect": (0.15, ASPECT_WIDTH_ZOOM),
                                   "scale": (SCALE_HEIGHT_ZOOM, SCALE_WIDTH_ZOOM)}[geometry]
        layers = [
            keras.layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(height_zoom, width_factor=width_zoom, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomBrightness(0.15, value_range=(0.0, 255.0), seed=seed + 3),
            keras.layers.RandomContrast(0.25, value_range=(0.0, 255.0), seed=seed + 4),
        ]
    else:
        raise ValueError(f"unknown augmentation {name!r}; expected one of {AUGMENTATIONS}")
    return keras.Sequential(layers, name=f"augment_{name.replace('-', '_')}")


def augment_batch(x: Any, augmenter: keras.Sequential | None) -> Any:
    """Keras augmentation of grey images ``(N, H, W)`` in 0..255, clipped back to that range."""
    if augmenter is None:
        return x
    return keras.ops.clip(augmenter(x[..., None], training=True)[..., 0], 0.0, 255.0)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    spec: PreprocessSpec,
    batch_size: int,
    augmenter: keras.Sequential | None = None,
    shuffle: bool = False,
    seed: int = 42,
    window: NormalWindow | None = None,
    subtypes: Subtypes | None = None,
    mixup: Mixup | None = None,
) -> Any:
    """Batches of ``(model input, label)`` from decoded grey images ``(N, H, W) uint8``:
    a ``tf.data.Dataset`` with the TensorFlow backend, else an :class:`ArrayBatches`.
    With ``subtypes``, batches of ``(model input, targets, sample weights)`` (:class:`Subtypes`);
    with ``mixup`` (not with ``subtypes``), ``(blended input, soft label, sample weights)``."""
    if subtypes is not None and mixup is not None:
        raise ValueError("mixup blends the binary label only; it does not combine with subtypes")
    if keras.backend.backend() != "tensorflow":
        return ArrayBatches(images, labels, spec, batch_size, augmenter, shuffle, seed, window, subtypes, mixup)
    import tensorflow as tf

    columns = (images, labels) if subtypes is None else (images, labels, subtypes.labels)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    rng = np.random.default_rng(seed)

    def _prepare(gray: tf.Tensor, label: tf.Tensor, *subtype: tf.Tensor) -> tuple[Any, ...]:
        x = tf.cast(gray, tf.float32)
        if window is not None:
            x = tf.ensure_shape(tf.numpy_function(lambda g, y: window(g, y, rng), [x, label], tf.float32), x.shape)
        x = augment_batch(x, augmenter)
        if mixup is not None:
            x, soft, weights = tf.numpy_function(lambda g, y: mixup(g, y, rng), [x, label],
                                                 (tf.float32, tf.float32, tf.float32))
            return (scale(tf.ensure_shape(x, gray.shape), spec.scaling), tf.ensure_shape(soft, label.shape),
                    tf.ensure_shape(weights, label.shape))
        x = scale(x, spec.scaling)
        return (x, label) if subtypes is None else (x, *subtypes.targets(label, subtype[0]))

    return ds.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """The same batches as :func:`make_dataset` for backends without ``tf.data``; a shuffled
    epoch drops its last partial batch (one compiled step shape)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: PreprocessSpec, batch_size: int,
                 augmenter: keras.Sequential | None = None, shuffle: bool = False, seed: int = 42,
                 window: NormalWindow | None = None, subtypes: Subtypes | None = None,
                 mixup: Mixup | None = None) -> None:
        super().__init__()
        self.images, self.labels, self.spec, self.batch_size = images, labels, spec, batch_size
        self.augmenter, self.shuffle, self.window, self.subtypes = augmenter, shuffle, window, subtypes
        self.mixup = mixup
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images)) if shuffle else np.arange(len(images))

    def __len__(self) -> int:
        rounding = math.floor if self.shuffle and len(self.images) >= self.batch_size else math.ceil
        return rounding(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = self.images[rows].astype(np.float32), self.labels[rows]
        if self.window is not None:
            x = self.window(x, y, self.rng)
        x = np.asarray(augment_batch(x, self.augmenter), dtype=np.float32)
        if self.mixup is not None:
            x, soft, weights = self.mixup(x, y, self.rng)
            return np.asarray(scale(x, self.spec.scaling), dtype=np.float32), soft, weights
        x = np.asarray(scale(x, self.spec.scaling), dtype=np.float32)
        return (x, y) if self.subtypes is None else (x, *self.subtypes.targets(y, self.subtypes.labels[rows]))

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.images))
