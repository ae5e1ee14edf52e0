"""A model's most confident errors on a labelled folder, with their Grad-CAM maps, as one PNG.

``python -m scripts.error_gallery --model M --data DIR --output OUT.png [--films 8] [--threshold T]``

DIR as for ``model.evaluate`` (a Kaggle-layout root or a folder with ``NORMAL/`` and ``PNEUMONIA/``).
The films called wrongly at the stored threshold (or ``--threshold``), most confident first (the
highest probability for a NORMAL film, the lowest for a PNEUMONIA film), each shown at the model's
input size with the map the UI would show, its file name, label and probability beneath. For reading
what the model over- or under-calls; prints the films it shows.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from model.artifacts import ModelArtifactError  # noqa: E402
from model.data import DatasetError, list_samples, load_arrays  # noqa: E402
from model.evaluate import data_folder  # noqa: E402
from model.gradcam import GradCam  # noqa: E402
from model.predictor import Predictor  # noqa: E402

COLUMNS = 4
CAPTION = 26  # pixels of text under each tile: two lines


def confident_errors(labels: np.ndarray, probs: np.ndarray, threshold: float, films: int) -> list[int]:
    """Indices of the wrongly called films, most confident first, at most ``films``."""
    wrong = np.flatnonzero((probs >= threshold) != labels.astype(bool))
    confidence = np.where(labels[wrong] == 1, 1.0 - probs[wrong], probs[wrong])
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][:films]]


def gallery(model: Predictor, data: Path, films: int, threshold: float) -> tuple[Image.Image | None, list[str]]:
    """The PNG tiles of the most confident errors (None when there is none) and their captions."""
    samples = list_samples(data_folder(data))
    grays, labels, kept = load_arrays(samples, model.spec)
    probs = model.predict_gray(grays)
    picked = confident_errors(labels, probs, threshold, films)
    if not picked:
        return None, []
    cam = GradCam(model.keras_model, model.metadata["gradcam_layer"])
    size = model.spec.input_size
    rows = -(-len(picked) // COLUMNS)
    sheet = Image.new("RGB", (size * min(COLUMNS, len(picked)), (size + CAPTION) * rows))
    draw = ImageDraw.Draw(sheet)
    captions = []
    for n, i in enumerate(picked):
        x, y = (n % COLUMNS) * size, (n // COLUMNS) * (size + CAPTION)
        sheet.paste(Image.open(io.BytesIO(cam.overlay_png(grays[i], model.spec, threshold))), (x, y))
        label = f"{model.class_names[int(labels[i])]} p={probs[i]:.2f}"
        draw.text((x + 2, y + size + 1), f"{kept[i].path.name}\n{label}", fill=(255, 255, 255))
        captions.append(f"{kept[i].path.name} {label}")
    return sheet, captions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.error_gallery", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--films", type=int, default=8, help="at most this many errors")
    parser.add_argument("--threshold", type=float, help="operating threshold instead of the stored one")
    args = parser.parse_args(argv)
    try:
        model = Predictor(args.model, engine="keras")
        threshold = model.threshold if args.threshold is None else args.threshold
        sheet, captions = gallery(model, args.data, args.films, threshold)
    except (DatasetError, ModelArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if sheet is None:
        print(f"{model.version}: no film called wrongly at {threshold:.3f}")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"{model.version}: the {len(captions)} most confident errors at {threshold:.3f} -> {args.output}")
    for caption in captions:
        print(f"  {caption}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
