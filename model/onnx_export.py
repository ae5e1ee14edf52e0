"""Export a trained model to ONNX beside it: ``python -m model.onnx_export --model models/best_model.keras``.

The API serves the ONNX file with ONNX Runtime when it is present (no TensorFlow in the worker
except for Grad-CAM on request). The file has two outputs: the probability and the penultimate
features (:func:`model.atypicality.feature_model`). The export is refused unless ONNX Runtime and
Keras agree within :data:`MAX_ABS_DIFF` on the committed fixture X-rays' probabilities (and within
:data:`MAX_FEATURE_DIFF` on their features).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as ``python model/onnx_export.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from model.artifacts import load_metadata, preprocess_spec  # noqa: E402
from model.atypicality import feature_model  # noqa: E402
from model.preprocessing import preprocess_bytes  # noqa: E402

MAX_ABS_DIFF = 1e-4
MAX_FEATURE_DIFF = 1e-3
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "chest_xray"


def onnx_path(model_path: Path | str) -> Path:
    """``best_model.keras`` -> ``best_model.onnx``."""
    return Path(model_path).with_suffix(".onnx")


def export(model_path: Path) -> tuple[Path, float]:
    """Write the ONNX file; returns its path and the max abs probability difference on the fixtures."""
    import keras
    import onnxruntime as ort

    spec = preprocess_spec(load_metadata(model_path))
    net = keras.saving.load_model(model_path, compile=False)
    x = np.stack([preprocess_bytes(p.read_bytes(), spec) for p in sorted(FIXTURES.glob("*/*.jpeg"))])
    expected = np.asarray(net.predict_on_batch(x)).reshape(-1)
    both = feature_model(net)
    features = np.asarray(both.predict_on_batch(x)[1])  # also builds the model for export
    out = onnx_path(model_path)
    tmp = out.with_suffix(".onnx.tmp")
    both.export(str(tmp), format="onnx", verbose=False)
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got, got_features = session.run(None, {session.get_inputs()[0].name: x})
    diff = float(np.max(np.abs(got.reshape(-1) - expected)))
    feature_diff = float(np.max(np.abs(got_features - features)))
    if diff > MAX_ABS_DIFF or feature_diff > MAX_FEATURE_DIFF:
        tmp.unlink()
        raise RuntimeError(f"ONNX and Keras disagree by {diff:.2e} (probabilities, at most {MAX_ABS_DIFF:.0e}) "
                           f"and {feature_diff:.2e} (features, at most {MAX_FEATURE_DIFF:.0e}); not exported")
    os.replace(tmp, out)
    return out, diff


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m model.onnx_export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("MODEL_PATH", "models/best_model.keras")))
    args = parser.parse_args(argv)
    out, diff = export(args.model)
    print(f"wrote {out} (max abs difference to Keras on the fixtures: {diff:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
