"""Where the model looks, in numbers: Grad-CAM mass near the image edge on validation films.

``python -m scripts.gradcam_focus --model M [--data ../shared/data/chest_xray] [--films 120]``

For a random sample of correctly called films of each class of the model's own patient-level
validation split, the Grad-CAM map that the UI shows (upsampled to the input size) is split into
the outer band (an eighth of the side on every edge, where burned-in markers, collimator edges and
borders sit; 44 % of the area) and the centre (the chest). Prints, per class, the share of the map's
mass in the band and how often its peak lies there. A map spread evenly puts 44 % in the band; a
model that reads markers or borders puts more.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from model.data import CLASS_NAMES, load_arrays  # noqa: E402
from model.evaluate import validation_samples  # noqa: E402
from model.gradcam import GradCam  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.preprocessing import scale  # noqa: E402

BAND = 1 / 8  # of the side, on every edge


def edge_band(size: int) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the outer band."""
    mask = np.ones((size, size), dtype=bool)
    width = round(size * BAND)
    mask[width:size - width, width:size - width] = False
    return mask


def band_share(heatmap: np.ndarray, size: int) -> tuple[float, bool] | None:
    """``(share of the mass in the band, peak in the band)`` of a heat-map upsampled to ``size``;
    None for an empty map."""
    up = np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize((size, size),
                                                                               Image.Resampling.BILINEAR))
    total = float(up.sum())
    if total <= 0:
        return None
    band = edge_band(size)
    return float(up[band].sum()) / total, bool(band[np.unravel_index(up.argmax(), up.shape)])


def focus(model: Predictor, data: Path, films: int, seed: int = 0) -> dict[str, tuple[int, float, float]]:
    """``{class: (films measured, mean band share, share of peaks in the band)}``."""
    cam = GradCam(model.keras_model, model.metadata["gradcam_layer"])
    grays, labels, _ = load_arrays(validation_samples([model], data), model.spec)
    called = model.predict_gray(grays) >= model.threshold
    rng = np.random.default_rng(seed)
    result = {}
    for label, name in enumerate(CLASS_NAMES):
        right = np.flatnonzero((labels == label) & (called == bool(label)))
        picked = rng.choice(right, min(films, len(right)), replace=False)
        found = [band_share(cam.heatmap(scale(grays[i].astype(np.float32), model.spec.scaling), model.threshold),
                            model.spec.input_size) for i in picked]
        found = [f for f in found if f is not None]
        if found:
            shares, peaks = zip(*found)
            result[name] = (len(found), float(np.mean(shares)), float(np.mean(peaks)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gradcam_focus", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    parser.add_argument("--films", type=int, default=120, help="correctly called validation films per class")
    args = parser.parse_args(argv)
    model = Predictor(args.model, engine="keras")
    print(f"{model.version}: Grad-CAM on correctly called validation films, outer band "
          f"{BAND:.3f} of the side ({edge_band(model.spec.input_size).mean():.0%} of the area)")
    for name, (count, share, peaks) in focus(model, args.data, args.films).items():
        print(f"  {name:<10} {count:>4} films: {share:.0%} of the map's mass in the band, peak in the band "
              f"on {peaks:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
