"""tf.data input pipeline: decoded-once images in memory, augmentation, shared scaling."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model.preprocessing import PreprocessSpec, scale

# Each preset lists the Keras preprocessing layers applied to grey images in 0..255.
AUGMENTATIONS = ("seed", "xray", "aspect", "scale", "none")
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


def build_augmenter(name: str, seed: int = 42) -> keras.Sequential | None:
    """Augmentation preset: ``seed`` (the original recipe), ``xray`` (no flip, milder geometry,
    brightness/contrast jitter for scanner differences), ``aspect`` (``xray`` with the width zoomed
    independently of the height, against the aspect-ratio shortcut), ``scale`` (``aspect`` with
    strong zoom-in, against the field-of-view shortcut) or ``none``."""
    if name == "none":
        return None
    if name == "seed":
        layers = [
            keras.layers.RandomRotation(15 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.3, 0.3, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(0.2, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomFlip("horizontal", seed=seed + 3),
        ]
    elif name in ("xray", "aspect", "scale"):
        height_zoom, width_zoom = {"xray": (0.15, None), "aspect": (0.15, ASPECT_WIDTH_ZOOM),
                                   "scale": (SCALE_HEIGHT_ZOOM, SCALE_WIDTH_ZOOM)}[name]
        layers = [
            keras.layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(height_zoom, width_factor=width_zoom, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomBrightness(0.15, value_range=(0.0, 255.0), seed=seed + 3),
            keras.layers.RandomContrast(0.25, value_range=(0.0, 255.0), seed=seed + 4),
        ]
    else:
        raise ValueError(f"unknown augmentation {name!r}; expected one of {AUGMENTATIONS}")
    return keras.Sequential(layers, name=f"augment_{name}")


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    spec: PreprocessSpec,
    batch_size: int,
    augmenter: keras.Sequential | None = None,
    shuffle: bool = False,
    seed: int = 42,
) -> tf.data.Dataset:
    """Batches of ``(model input, label)`` from decoded grey images ``(N, H, W) uint8``."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def _prepare(gray: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(gray, tf.float32)
        if augmenter is not None:
            x = tf.clip_by_value(augmenter(x[..., None], training=True)[..., 0], 0.0, 255.0)
        return scale(x, spec.scaling), label

    return ds.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
