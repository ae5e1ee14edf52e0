"""Inference engines side by side in one process, same model, same preprocessed fixture X-rays.

``python -m scripts.bench_inference [--model models/best_model.keras] [--seconds 5]``

Prints batch-1 latency and batch-32 throughput for Keras ``predict``, ``predict_on_batch``, an
eager call, a ``tf.function``, a ``tf.function`` compiled by XLA and ONNX Runtime (also with the
atypicality score, when the model has its statistics), each as a ratio to
Keras ``predict``; the max abs probability difference to
Keras; this CPU's fp32 matmul GFLOP/s, the model's FLOPs per image, and the served fraction of the
resulting images/s limit.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from model.predictor import Predictor  # noqa: E402
from model.preprocessing import preprocess_bytes  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _timed(fn: Callable[[], object], seconds: float) -> float:
    """Median seconds per call over repeated calls for about ``seconds``."""
    fn()  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_gflops(n: int = 2048, seconds: float = 3.0) -> float:
    """fp32 matrix-multiply GFLOP/s of this machine (NumPy/BLAS)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    return 2 * n**3 / _timed(lambda: a @ b, seconds) / 1e9


def model_gflops(net) -> float:
    """FLOPs per image (2 x multiply-adds) of the conv, depthwise-conv and dense layers."""
    return 2 * _macs(net) / 1e9


def _macs(net) -> int:
    """Multiply-adds per image, counting every member of an ensemble."""
    import keras

    macs = 0
    for layer in net.layers:
        if isinstance(layer, keras.Model):
            macs += _macs(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            macs += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            macs += h * w * c_out * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return macs


def _scored(engine: Predictor, inputs: np.ndarray) -> np.ndarray:
    """Probabilities, after also scoring the films' atypicality (what the API does)."""
    probabilities, features = engine.run_inputs(inputs)
    engine.atypicality.score(features)
    return probabilities


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_inference", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "best_model.keras")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per measurement")
    args = parser.parse_args(argv)

    keras_engine = Predictor(args.model, engine="keras")
    onnx_engine = Predictor(args.model, engine="onnx")
    net = keras_engine.keras_model
    images = [preprocess_bytes(p.read_bytes(), keras_engine.spec)
              for p in sorted((REPO / "tests/fixtures/chest_xray").glob("*/*.jpeg"))]
    one = np.stack(images[:1])
    batch = np.stack((images * 2)[:32])

    import tensorflow as tf

    graph = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    xla = tf.function(lambda x: net(x, training=False), jit_compile=True, reduce_retracing=True)
    candidates = {
        "keras predict": lambda x: net.predict(x, verbose=0),
        "keras predict_on_batch": net.predict_on_batch,
        "keras eager model(x)": lambda x: net(x, training=False),
        "tf.function": graph,
        "tf.function + XLA": xla,
        "onnxruntime": onnx_engine.predict_inputs,
    }
    if onnx_engine.atypicality is not None:
        candidates["onnxruntime + atypicality"] = lambda x: _scored(onnx_engine, x)
    reference = np.asarray(net.predict_on_batch(batch)).reshape(-1)
    print(f"model {args.model} ({keras_engine.version}), input {keras_engine.spec.input_size} px")
    print(f"{'engine':<24}{'batch-1 ms':>12}{'x faster':>10}{'batch-32 img/s':>16}{'x faster':>10}{'max |dp|':>11}")
    base1 = base32 = 0.0
    results = {}
    for name, fn in candidates.items():
        t1 = _timed(lambda: fn(one), args.seconds)
        t32 = _timed(lambda: fn(batch), args.seconds)
        diff = float(np.max(np.abs(np.asarray(fn(batch)).reshape(-1) - reference)))
        base1, base32 = base1 or t1, base32 or t32
        results[name] = 32 / t32
        print(f"{name:<24}{t1 * 1000:>12.1f}{base1 / t1:>10.2f}{32 / t32:>16.1f}{base32 / t32:>10.2f}{diff:>11.1e}")

    gflops = matmul_gflops()
    per_image = model_gflops(net)
    limit = gflops / per_image
    best = max(results.values())
    print(f"\nfp32 matmul: {gflops:.0f} GFLOP/s; model: {per_image:.3f} GFLOP per image "
          f"-> limit {limit:.0f} images/s; fastest engine reaches {best:.1f} images/s = {best / limit:.0%} of it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
