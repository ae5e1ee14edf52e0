"""Training throughput per backbone, and the input pipeline's cost, side by side in one run.

``python -m scripts.bench_training [--size 224] [--steps 6] [--backbones mobilenetv2,resnet50,...]``

For each backbone (from scratch, all layers training, batch 32): images/s of training steps fed by
the real tf.data pipeline (fixture X-rays, ``xray`` augmentation) and of the same steps fed by one
batch of tensors already in memory; the ratio is the input pipeline's share of step time.
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
