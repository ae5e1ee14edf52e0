"""Counterfactual framing tests on the patient-level validation split (no external data).

``python -m scripts.framing_shortcut --model M [--model M2 ...] [--data ../shared/data/chest_xray]``

Every original-size validation film of the model's own split (``pre_resized_by_uploader == 0`` in
``SOURCES.csv``; every film when the data folder has no ``SOURCES.csv``) is re-framed and then goes
through the model's own preprocessing. Two ways of framing are class shortcuts in the train split:

* aspect ratio: the film cropped (central part kept) or widened (side columns repeated outwards)
  to a fixed width/height ratio - train NORMAL films are 1.23 wide, PNEUMONIA 1.50;
* field of view: only the central window of the film kept (a tighter collimation of the same
  chest) - train NORMAL films show head and abdomen around the chest, PNEUMONIA films are tight.

The framings live in ``model.framing``, which the trainer also uses for its threshold rule.
A model that reads the lungs gives nearly the same answer under every framing. Prints, per model
and framing, the specificity on NORMAL and the sensitivity on PNEUMONIA films at the model's stored
threshold, and one summary: the ROC AUC of all re-framed films pooled (high only when the model
both separates the classes and ignores the framing). Last, a check for a resampling cue: the mean
probability of NORMAL films cut to their central 80 / 70 % window from the original film (sharp,
as a tighter collimation would be) and from the film already at input size, enlarged back (blurred,
as a training-time window is). A model that answers differently reads the blur, not the framing.
And the black-margin check: specificity and sensitivity when every film is shown inside a black
margin of 10 / 20 / 40 % (``model.framing.border``; not pooled into the AUC or the threshold).
And the exposure check: the same with every film's mid-tones brightened or darkened by a gamma of
0.5-2 (``model.framing.exposure``; not pooled either): test-era films have brighter mid-tones.
And the texture check: the same with every film blurred (Gaussian, 1 / 2 / 4 px), edge-enhanced
(unsharp mask of 2 / 6 / 20 px) or saved again as a JPEG of quality 30 / 10 (``model.framing.blur``,
``sharpen``, ``recompress``): detectors, processing and exports differ between X-ray systems.
And the tone check: the same with every film given the grey levels of a random film of the other
class (``model.framing.match_tones``): a film's grey levels alone separate the classes here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from model.evaluate import validation_samples  # noqa: E402
from model.framing import (FRAMINGS, Counterfactuals, blur, border, exposure, match_tones,  # noqa: E402
                           original_size, recompress, sharpen, window)
from model.predictor import Predictor  # noqa: E402
from model.preprocessing import decode_gray, resize_films, resize_gray  # noqa: E402

CUE_WINDOWS = (0.8, 0.7)
MARGINS = (0.1, 0.2, 0.4)
GAMMAS = (0.5, 0.67, 0.8, 1.25, 1.5, 2.0)
# (label, alteration, settings) of the texture check, in pixels of the film as stored / JPEG quality
TEXTURES = (("blur", blur, (1.0, 2.0, 4.0)), ("unsharp mask", sharpen, (2.0, 6.0, 20.0)),
            ("JPEG quality", recompress, (30.0, 10.0)))


def counterfactuals(model: Predictor, data: Path) -> Counterfactuals:
    """The model's probabilities on every re-framing of its original-size validation films."""
    return Counterfactuals(validation_samples([model], data), data,
                           lambda films: model.predict_gray(resize_films(films, model.spec)))


def framing_table(model: Predictor, cf: Counterfactuals) -> dict[str, dict[float, dict]]:
    """Specificity, sensitivity and mean NORMAL probability for each framing and setting."""
    table: dict[str, dict[float, dict]] = {name: {} for name in FRAMINGS}
    for (name, setting), probs in zip(cf.settings, cf.probabilities):
        called = probs >= model.threshold
        table[name][setting] = {"specificity": float(np.mean(~called[cf.labels == 0])),
                                "sensitivity": float(np.mean(called[cf.labels == 1])),
                                "mean_p_normal": float(probs[cf.labels == 0].mean())}
    return table


def _originals(model: Predictor, data: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The original-size validation films of the model's split, decoded, and their labels."""
    samples = original_size(validation_samples([model], data), data)
    return [decode_gray(s.path.read_bytes()) for s in samples], np.array([s.label for s in samples])


def resampling_cue(model: Predictor, films: list[np.ndarray], labels: np.ndarray) -> dict[float, tuple[float, float]]:
    """``{window: (mean P sharp, mean P enlarged)}`` over the NORMAL ones of ``films``."""
    films = [f for f, label in zip(films, labels) if label == 0]
    small = resize_films(films, model.spec)
    cue = {}
    for fraction in CUE_WINDOWS:
        sharp = model.predict_gray(resize_films([window(f, fraction) for f in films], model.spec))
        enlarged = model.predict_gray(np.stack([resize_gray(window(f, fraction), model.spec.input_size) for f in small]))
        cue[fraction] = (float(sharp.mean()), float(enlarged.mean()))
    return cue


def altered_check(model: Predictor, films: list[np.ndarray], labels: np.ndarray,
                  alter: Callable[[np.ndarray, float], np.ndarray], settings: tuple[float, ...]
                  ) -> dict[float, tuple[float, float]]:
    """``{setting: (specificity, sensitivity)}`` at the stored threshold, every film altered by
    ``alter(film, setting)`` (:func:`model.framing.border`, :func:`model.framing.exposure`, ...)."""
    check = {}
    for setting in settings:
        called = model.predict_gray(resize_films([alter(f, setting) for f in films], model.spec)) >= model.threshold
        check[setting] = (float(np.mean(~called[labels == 0])), float(np.mean(called[labels == 1])))
    return check


def tone_check(model: Predictor, films: list[np.ndarray], labels: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """``(specificity, sensitivity)`` at the stored threshold, every film given the grey levels of a
    random film of the other class (the same draw for every model)."""
    rng = np.random.default_rng(seed)
    others = {label: np.flatnonzero(labels != label) for label in (0, 1)}
    toned = [match_tones(f, films[rng.choice(others[label])]) for f, label in zip(films, labels)]
    called = model.predict_gray(resize_films(toned, model.spec)) >= model.threshold
    return float(np.mean(~called[labels == 0])), float(np.mean(called[labels == 1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.framing_shortcut", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    args = parser.parse_args(argv)
    for path in args.model:
        model = Predictor(path)
        cf = counterfactuals(model, args.data)
        print(f"{model.version}: {len(cf.labels)} original-size validation films "
              f"({int((cf.labels == 0).sum())} NORMAL), threshold {model.threshold:.3f}")
        for name, rows in framing_table(model, cf).items():
            print(f"  {name:<16}{'specificity':>12}{'sensitivity':>12}{'mean P NORMAL':>15}")
            for setting, row in rows.items():
                print(f"  {setting:<16}{row['specificity']:>12.3f}{row['sensitivity']:>12.3f}"
                      f"{row['mean_p_normal']:>15.3f}")
        print(f"  ROC AUC of all {len(cf.settings)} framings pooled: {cf.pooled_auc:.4f}")
        films, labels = _originals(model, args.data)
        for fraction, (sharp, enlarged) in resampling_cue(model, films, labels).items():
            print(f"  resampling cue, NORMAL films' central {fraction:.0%}: mean P {sharp:.3f} cut from the "
                  f"original film, {enlarged:.3f} cut at input size and enlarged")
        for fraction, (specificity, sensitivity) in altered_check(model, films, labels, border, MARGINS).items():
            print(f"  black margin {fraction:.0%}: specificity {specificity:.3f}, sensitivity {sensitivity:.3f}")
        for gamma, (specificity, sensitivity) in altered_check(model, films, labels, exposure, GAMMAS).items():
            print(f"  exposure gamma {gamma:.2f}: specificity {specificity:.3f}, sensitivity {sensitivity:.3f}")
        for label, alter, settings in TEXTURES:
            for setting, (specificity, sensitivity) in altered_check(model, films, labels, alter, settings).items():
                print(f"  {label} {setting:g}: specificity {specificity:.3f}, sensitivity {sensitivity:.3f}")
        specificity, sensitivity = tone_check(model, films, labels)
        print(f"  tones of the other class: specificity {specificity:.3f}, sensitivity {sensitivity:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
