"""Backbones and the classification head of the seed recipe."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    """A Keras application with the scaling its weights expect and its last conv layer."""

    constructor: Callable[..., keras.Model]
    scaling: str
    gradcam_layer: str


BACKBONES: dict[str, Backbone] = {
    "resnet50": Backbone(keras.applications.ResNet50, "caffe", "conv5_block3_out"),
    "densenet121": Backbone(keras.applications.DenseNet121, "torch", "relu"),
    "mobilenetv2": Backbone(keras.applications.MobileNetV2, "tf", "out_relu"),
    "efficientnetb0": Backbone(keras.applications.EfficientNetB0, "raw", "top_activation"),
}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded or read."""


def _make_base(backbone: str, inputs: keras.KerasTensor, weights: str) -> keras.Model:
    spec = BACKBONES[backbone]
    if weights == "none":
        return spec.constructor(include_top=False, weights=None, input_tensor=inputs, input_shape=inputs.shape[1:])
    if weights != "imagenet" and not Path(weights).is_file():
        raise WeightsUnavailableError(f"weights file not found: {weights}")
    try:
        return spec.constructor(include_top=False, weights=weights, input_tensor=inputs, input_shape=inputs.shape[1:])
    except Exception as exc:  # download errors surface as many exception types
        if weights == "imagenet":
            raise WeightsUnavailableError(
                "could not download the ImageNet weights (no network?). "
                "Use --weights none to train from scratch, or --weights PATH for a local file."
            ) from exc
        raise WeightsUnavailableError(f"could not load weights from {weights}: {exc}") from exc


def set_batchnorm_momentum(base: keras.Model, momentum: float) -> None:
    """Set the momentum of every BatchNorm layer of a base that trains from (near) scratch, so that
    its moving averages settle within the first epoch."""
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def build_model(
    backbone: str = "resnet50",
    input_size: int = 224,
    weights: str = "imagenet",
    fine_tune_layers: int = 15,
    bn_momentum: float = 0.9,
    dropout: float = 0.3,
    l2: float = 1e-3,
    full_fine_tune: bool = False,
    subtypes: bool = False,
) -> keras.Model:
    """Backbone + head: GAP -> [Dense(256, L2) -> BN -> ReLU -> Dropout] x 2 -> sigmoid.

    With ``subtypes`` the outputs are a dict: ``pneumonia`` (that sigmoid) and ``subtype``, a softmax
    over :data:`model.data.SUBTYPE_NAMES` from the same features, an auxiliary task for training
    only (:func:`binary_model` takes it off again).

    Pretrained weights: the base is frozen except its top ``fine_tune_layers`` layers,
    and its BatchNorm layers stay in inference mode. From scratch (``weights="none"``)
    every layer trains and the base's BatchNorm momentum is set to ``bn_momentum`` so
    the moving averages settle within the first epoch; so it does from a weights file with
    ``full_fine_tune`` (in-domain weights such as :mod:`model.pretrain`'s: with BatchNorm frozen,
    training the whole base at a from-scratch learning rate collapsed to a constant here).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    base = _make_base(backbone, inputs, weights)
    if weights == "none" or full_fine_tune:
        log.info("all %d base layers train, BatchNorm included (fine-tune depth ignored)", len(base.layers))
        set_batchnorm_momentum(base, bn_momentum)
    else:
        first_trainable = len(base.layers) - fine_tune_layers
        for index, layer in enumerate(base.layers):
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = index >= first_trainable and not is_bn
        log.info("pretrained base frozen except its top %d layers (BatchNorm frozen)", fine_tune_layers)

    x = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
    for i in (1, 2):
        x = keras.layers.Dense(256, kernel_regularizer=keras.regularizers.L2(l2), name=f"head_dense{i}")(x)
        x = keras.layers.BatchNormalization(name=f"head_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"head_relu{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="pneumonia")(x)
    if subtypes:
        subtype = keras.layers.Dense(3, activation="softmax", dtype="float32", name="subtype")(x)
        outputs = {"pneumonia": outputs, "subtype": subtype}
    return keras.Model(inputs, outputs, name=f"pneumonia_{backbone}")


def binary_model(net: keras.Model) -> keras.Model:
    """``net`` with its ``pneumonia`` output alone (the served model), whatever else it was trained with."""
    if not isinstance(net.output, dict):
        return net
    return keras.Model(net.input, net.output["pneumonia"], name=net.name)
