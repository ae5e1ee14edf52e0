"""Self-supervised in-domain pre-training of a backbone (SimCLR-style contrastive learning).

Two augmented views of every training film are pulled together and pushed away from the other
films of the batch (the NT-Xent loss of Chen et al. 2020); no label is read. Only the training side
of the trainer's patient-level split is used, so the validation patients stay unseen, and never the
external folder. The backbone's weights go to a ``.weights.h5`` file that ``model.cnn --weights``
fine-tunes::

    python -m model.pretrain --data ../shared/data/chest_xray --output runs/ssl/backbone.weights.h5
    python -m model.cnn --data ../shared/data/chest_xray --weights runs/ssl/backbone.weights.h5 ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from model.architecture import BACKBONES, set_batchnorm_momentum  # noqa: E402
from model.cli import exit_code  # noqa: E402
from model.data import (  # noqa: E402
    DatasetError,
    fingerprint,
    list_samples,
    load_arrays,
    patient_split,
    resolve_split_dir,
)
from model.pipeline import AUGMENTATIONS, augment_batch, build_augmenter  # noqa: E402
from model.preprocessing import RESIZE_MODES, PreprocessSpec, scale  # noqa: E402


class ViewPairs(keras.utils.PyDataset):
    """Batches of two augmented views of each film, stacked as ``(2B, H, W, 3)`` (all first views,
    then all second views), with dummy targets; an epoch drops its last partial batch."""

    def __init__(self, images: np.ndarray, spec: PreprocessSpec, batch_size: int,
                 augmenter: keras.Sequential | None, seed: int = 42) -> None:
        super().__init__()
        self.images, self.spec, self.batch_size, self.augmenter = images, spec, batch_size, augmenter
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x = self.images[self.order[index * self.batch_size:(index + 1) * self.batch_size]].astype(np.float32)
        views = np.concatenate([np.asarray(augment_batch(x, self.augmenter)) for _ in range(2)])
        return np.asarray(scale(views, self.spec.scaling), dtype=np.float32), np.zeros(len(views), np.float32)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))


def _pair_logits(z: Any, temperature: float) -> tuple[Any, Any]:
    """Cosine similarities / temperature of ``2B`` embeddings (self-similarity masked out) and the
    index of each view's partner."""
    z = keras.ops.normalize(z, axis=-1)
    n = keras.ops.shape(z)[0] // 2
    logits = keras.ops.matmul(z, keras.ops.transpose(z)) / temperature - 1e9 * keras.ops.eye(2 * n)
    partner = keras.ops.concatenate([keras.ops.arange(n, 2 * n), keras.ops.arange(0, n)])
    return logits, partner


def nt_xent(temperature: float = 0.2) -> Any:
    """The NT-Xent loss of each view (the targets are ignored)."""
    def loss(_: Any, z: Any) -> Any:
        logits, partner = _pair_logits(z, temperature)
        return keras.ops.sparse_categorical_crossentropy(partner, logits, from_logits=True)
    return loss


def pair_accuracy(_: Any, z: Any) -> Any:
    """How often a view's most similar other view in the batch is its partner."""
    logits, partner = _pair_logits(z, 1.0)
    return keras.ops.cast(keras.ops.argmax(logits, axis=-1) == partner, "float32")


def build_encoder(backbone: str, input_size: int, bn_momentum: float = 0.9,
                  projection: int = 128) -> tuple[keras.Model, keras.Model]:
    """A from-scratch backbone (BatchNorm momentum ``bn_momentum``) and the encoder that adds the
    projection head GAP -> Dense(512) -> BN -> ReLU -> Dense(``projection``)."""
    base = BACKBONES[backbone].constructor(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
    set_batchnorm_momentum(base, bn_momentum)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(512, name="proj_dense1")(x)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization(name="proj_bn")(x))
    z = keras.layers.Dense(projection, dtype="float32", name="proj_dense2")(x)
    return base, keras.Model(base.input, z, name=f"simclr_{backbone}")


def pretrain(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Contrastive pre-training on the training side of the patient split; writes the backbone's
    weights and a JSON record beside them."""
    init = _initial_record(args)
    keras.utils.set_random_seed(args.seed)
    spec = PreprocessSpec(args.input_size, BACKBONES[args.backbone].scaling, args.resize_mode)
    samples = list_samples(resolve_split_dir(args.data, "train"))
    train, val = patient_split(samples, args.val_fraction, args.split_seed)
    images, _, train = load_arrays(train, spec)
    print(f"pre-training on {len(images)} films (labels unused); {len(val)} validation films left out")
    views = ViewPairs(images, spec, args.batch_size, build_augmenter(args.augment, args.seed), args.seed)
    base, encoder = build_encoder(args.backbone, args.input_size)
    if init is not None:
        base.load_weights(args.init)
    steps = len(views) * args.epochs
    encoder.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        args.learning_rate, steps, alpha=0.01)), loss=nt_xent(args.temperature), metrics=[pair_accuracy])
    t0 = time.perf_counter()
    history = encoder.fit(views, epochs=args.epochs, verbose=1 if sys.stdout.isatty() else 2).history
    seconds = time.perf_counter() - t0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    base.save_weights(args.output)
    record = {
        "backbone": args.backbone, "preprocessing": spec.to_dict(), "epochs": args.epochs,
        "batch_size": args.batch_size, "temperature": args.temperature, "augment": args.augment,
        "split_seed": args.split_seed, "val_fraction": args.val_fraction, "n_images": len(images),
        "data_fingerprint": fingerprint(train), "train_seconds": round(seconds, 1),
        "history": {k: [float(v) for v in vs] for k, vs in history.items()}, "command": command,
    }
    if init is not None:
        record["init"] = {k: v for k, v in init.items() if k != "history"}
    record_path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.output} ({seconds / 60:.1f} min; final loss {record['history']['loss'][-1]:.3f}, "
          f"pair accuracy {record['history']['pair_accuracy'][-1]:.3f})")
    return record


def _initial_record(args: argparse.Namespace) -> dict[str, Any] | None:
    """The record of the ``--init`` backbone that this run continues, checked against this run: the
    same backbone, preprocessing and split (a backbone from another split has seen validation patients)."""
    if args.init is None:
        return None
    init = pretraining_record(str(args.init))
    if init is None:
        raise FileNotFoundError(f"{args.init} has no pre-training record ({record_path(args.init)}) beside it")
    ours = (args.backbone, args.input_size, args.resize_mode, args.val_fraction, args.split_seed)
    theirs = (init["backbone"], init["preprocessing"]["input_size"], init["preprocessing"]["resize_mode"],
              init["val_fraction"], init["split_seed"])
    if ours != theirs:
        raise DatasetError(f"{args.init} was pre-trained as (backbone, input size, resize mode, val fraction, "
                           f"split seed) {theirs}, not {ours}")
    return init


def record_path(weights: Path | str) -> Path:
    """The JSON record (command, data fingerprint, loss history) written beside a backbone's weights."""
    return Path(str(weights).removesuffix(".weights.h5") + ".json")


def pretraining_record(weights: str) -> dict[str, Any] | None:
    """The record of a backbone made by this module (``None`` for ``none``, ``imagenet`` or another file)."""
    record = None if weights in ("none", "imagenet") else record_path(weights)
    return json.loads(record.read_text()) if record is not None and record.is_file() else None


def _weights_file(value: str) -> Path:
    if not value.endswith(".weights.h5"):
        raise argparse.ArgumentTypeError("a backbone file must end in .weights.h5 (what model.cnn --weights reads)")
    return Path(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="Kaggle-layout root (its train/ split is used)")
    p.add_argument("--output", type=_weights_file, required=True, help="backbone weights file (.weights.h5)")
    p.add_argument("--backbone", choices=sorted(BACKBONES), default="mobilenetv2")
    p.add_argument("--input-size", type=int, default=192)
    p.add_argument("--resize-mode", choices=RESIZE_MODES, default="squash")
    p.add_argument("--init", type=_weights_file, help="continue from this backbone (made by this module on "
                   "the same split); its projection head starts afresh")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="films per step (twice as many views)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--augment", choices=[a for a in AUGMENTATIONS if a != "none"], default="scale",
                   help="the trainer's geometry and intensity preset that makes each view")
    p.add_argument("--val-fraction", type=float, default=0.2, help="as model.cnn: these patients are left out")
    p.add_argument("--split-seed", type=int, default=42, help="as model.cnn's validation split")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if args.batch_size < 2 or args.epochs < 1 or not math.isfinite(args.temperature) or args.temperature <= 0:
        p.error("--batch-size must be at least 2, --epochs at least 1 and --temperature positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m model.pretrain " + shlex.join(sys.argv[1:] if argv is None else argv)
    return exit_code(lambda: pretrain(args, command), DatasetError, FileNotFoundError)


if __name__ == "__main__":
    sys.exit(main())
