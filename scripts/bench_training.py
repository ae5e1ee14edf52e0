"""Training throughput per backbone, and the input pipeline's cost, side by side in one run.

``python -m scripts.bench_training [--size 224] [--steps 6] [--backbones mobilenetv2,resnet50,...]``

For each backbone (from scratch, all layers training, batch 32): images/s of training steps fed by
the real tf.data pipeline (fixture X-rays, ``xray`` augmentation) and of the same steps fed by one
batch of tensors already in memory; the ratio is the input pipeline's share of step time.
Then the input side alone, with the seed's augmentations (rotation 15, shifts 0.3, zoom 0.2,
horizontal flip): this tf.data pipeline against the seed's ``ImageDataGenerator`` reading the files
(``flow_from_directory``) and fed the same decoded arrays (``flow``), in images/s.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from model.architecture import BACKBONES, build_model  # noqa: E402
from model.data import list_samples, load_arrays  # noqa: E402
from model.pipeline import build_augmenter, make_dataset  # noqa: E402
from model.preprocessing import PreprocessSpec  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BATCH = 32


def _rate(step, batches, steps: int) -> float:
    step(*next(batches))  # compile / warm up
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    return steps * BATCH / (time.perf_counter() - start)


def _producer_rate(batches, count: int) -> float:
    next(batches)  # warm up
    start = time.perf_counter()
    produced = sum(len(next(batches)[0]) for _ in range(count))
    return produced / (time.perf_counter() - start)


def input_rates(size: int, count: int = 20) -> dict[str, float]:
    """Images/s of batches produced with the seed's augmentations, no model."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator  # the seed's API (needs scipy)

    folder = REPO / "tests" / "fixtures" / "chest_xray"
    spec = PreprocessSpec(size, BACKBONES["resnet50"].scaling)
    images, labels, _ = load_arrays(list_samples(folder), spec)
    pipeline = make_dataset(images, labels, spec, BATCH, build_augmenter("seed"), shuffle=True).repeat()
    generator = ImageDataGenerator(rotation_range=15, width_shift_range=0.3, height_shift_range=0.3, zoom_range=0.2,
                                   horizontal_flip=True, fill_mode="nearest")
    rgb = np.repeat(images[..., None], 3, axis=-1).astype(np.float32)
    return {
        "tf.data (decoded once, Keras layers)": _producer_rate(iter(pipeline.as_numpy_iterator()), count),
        "ImageDataGenerator.flow_from_directory": _producer_rate(generator.flow_from_directory(
            str(folder), target_size=(size, size), batch_size=BATCH, class_mode="binary"), count),
        "ImageDataGenerator.flow (decoded once)": _producer_rate(generator.flow(rgb, labels, batch_size=BATCH),
                                                                  count),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_training", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--backbones", default=",".join(sorted(BACKBONES)))
    args = parser.parse_args(argv)
    samples = list_samples(REPO / "tests" / "fixtures" / "chest_xray")
    print(f"{'backbone':<16}{'pipeline img/s':>16}{'in-memory img/s':>17}{'pipeline share':>16}")
    for name in args.backbones.split(","):
        spec = PreprocessSpec(args.size, BACKBONES[name].scaling)
        images, labels, _ = load_arrays(samples, spec)
        reps = -(-BATCH // len(images))
        images, labels = np.tile(images, (reps, 1, 1))[:BATCH], np.tile(labels, reps)[:BATCH]
        dataset = make_dataset(images, labels, spec, BATCH, build_augmenter("xray"), shuffle=True).repeat()
        net = build_model(name, args.size, "none")
        net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        fed = _rate(net.train_on_batch, iter(dataset.as_numpy_iterator()), args.steps)
        x, y = next(iter(dataset.as_numpy_iterator()))
        resident = _rate(net.train_on_batch, iter(lambda: (x, y), None), args.steps)
        print(f"{name:<16}{fed:>16.1f}{resident:>17.1f}{max(0.0, 1 - fed / resident):>16.0%}", flush=True)
    rates = input_rates(args.size)
    base = rates["tf.data (decoded once, Keras layers)"]
    print(f"\n{'input producer (seed augmentations, no model)':<48}{'images/s':>10}{'x tf.data':>11}")
    for name, rate in rates.items():
        print(f"{name:<48}{rate:>10.1f}{rate / base:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
