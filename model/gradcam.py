"""Grad-CAM: where the model looked, as a heat-map over the X-ray (PNG)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from model.preprocessing import PreprocessSpec, scale


class GradCam:
    """Gradient-weighted class activation map of one convolutional layer.

    For an ensemble (:mod:`model.ensemble`) the layer of every member counts, as one layer with
    all the members' channels: the map explains the ensemble's averaged score.
    """

    def __init__(self, net: Any, layer_name: str) -> None:
        import keras  # deferred: only Grad-CAM needs TensorFlow in a lean API worker

        has_layer = layer_name in {layer.name for layer in net.layers}
        members = [net] if has_layer else [m for m in net.layers if isinstance(m, keras.Model)]
        self._grad_models = [keras.Model(m.inputs, [m.get_layer(layer_name).output, m.output]) for m in members]

    def heatmap(self, model_input: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Map in [0, 1] at the layer's resolution for one input ``(size, size, 3)``.

        The map explains the predicted class: the pneumonia score when the probability
        reaches ``threshold``, else the normal score (its negation).
        """
        import tensorflow as tf

        x = tf.convert_to_tensor(model_input[None], dtype=tf.float32)
        with tf.GradientTape() as tape:
            activations, predictions = zip(*(model(x, training=False) for model in self._grad_models))
            prediction = tf.add_n(predictions) / len(predictions)
            score = prediction[:, 0] if float(prediction[0, 0]) >= threshold else -prediction[:, 0]
        grads = tape.gradient(score, list(activations))
        # one weight per channel (the mean gradient), summed over every member's channels
        cam = tf.nn.relu(tf.add_n([tf.reduce_sum(a * tf.reduce_mean(g, axis=(1, 2))[:, None, None, :], axis=-1)
                                   for a, g in zip(activations, grads)]))[0].numpy()
        peak = float(cam.max())
        return cam / peak if peak > 0 else cam

    def overlay_png(self, gray: np.ndarray, spec: PreprocessSpec, threshold: float = 0.5, alpha: float = 0.4) -> bytes:
        """PNG of the grey image with the heat-map blended over it (both at the input size)."""
        cam = self.heatmap(scale(gray.astype(np.float32), spec.scaling), threshold)
        cam_img = Image.fromarray(np.uint8(255 * cam)).resize(gray.shape[::-1], Image.Resampling.BILINEAR)
        heat = _jet(np.asarray(cam_img, dtype=np.float32) / 255.0)
        base = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
        blended = np.clip((1 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(blended, mode="RGB").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()


def _jet(values: np.ndarray) -> np.ndarray:
    """A blue-green-red colour map for values in [0, 1], as 0..255 RGB."""
    r = np.clip(1.5 - np.abs(4 * values - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * values - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * values - 1), 0, 1)
    return np.stack([r, g, b], axis=-1) * 255.0
