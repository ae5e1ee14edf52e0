"""How unlike the training films a film looks to the model: a warning beside each prediction.

``python -m model.atypicality --model models/best_model.keras --data ../shared/data/chest_xray [--external DIR]``

The model's penultimate features (the input of each member's output layer, concatenated) are fitted
with one Gaussian per class and a shared covariance on the training side of the model's own
patient-level split. A film's atypicality is its squared Mahalanobis distance to the nearer class
mean, divided by the distance that :data:`QUANTILE` of the validation films stay under: 1 or more
means *atypical* (by construction about 5 % of validation films). The fit goes to
``<model>.atypicality.npz`` beside the model and a summary into its metadata JSON (``atypicality``);
:class:`model.predictor.Predictor` loads it when that key is there. With ``--external`` the report
adds how often flagged and unflagged films of that folder were misclassified (a measurement only:
nothing is fitted on it).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if __package__ in (None, ""):  # run as ``python model/atypicality.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

QUANTILE = 0.95
RIDGE = 0.01  # added to the covariance's diagonal, as a fraction of its mean variance


def statistics_path(model_path: Path | str) -> Path:
    """``models/best_model.keras`` -> ``models/best_model.atypicality.npz``."""
    return Path(model_path).with_suffix(".atypicality.npz")


def feature_model(net: Any) -> Any:
    """A Keras model with the outputs ``(probability, features)`` of ``net`` (one model, or an
    ensemble of :func:`model.ensemble.build_ensemble`, whose probability is its members' mean)."""
    import keras

    members = [layer for layer in net.layers
               if isinstance(layer, keras.Model) and any(inner.name == "pneumonia" for inner in layer.layers)] or [net]
    inputs = keras.Input(net.inputs[0].shape[1:], name="image")
    probabilities, features = [], []
    for member in members:
        both = keras.Model(member.input, [member.output, member.get_layer("pneumonia").input])
        probability, feature = both(inputs)
        probabilities.append(probability)
        features.append(feature)
    if len(members) > 1:
        probability = keras.layers.Average(name="probability")(probabilities)
        feature = keras.layers.Concatenate(name="features")(features)
    return keras.Model(inputs, [probability, feature], name=f"{net.name}_with_features")


@dataclass(frozen=True)
class Atypicality:
    """Class means, shared precision matrix and the validation quantile of the distance."""

    means: np.ndarray  # (2, D)
    precision: np.ndarray  # (D, D)
    threshold: float

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, validation: np.ndarray,
            quantile: float = QUANTILE, ridge: float = RIDGE) -> "Atypicality":
        """Fit on training-side ``features`` and ``labels``; the threshold is the ``quantile`` of the
        ``validation`` features' distances."""
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels).astype(int)
        means = np.stack([features[labels == c].mean(axis=0) for c in (0, 1)])
        covariance = np.cov((features - means[labels]).T)
        covariance += ridge * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        unscaled = cls(means, np.linalg.inv(covariance), 1.0)
        return cls(means, unscaled.precision, float(np.quantile(unscaled.distance(validation), quantile)))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to the nearer class mean."""
        features = np.asarray(features, dtype=np.float64)
        return np.min([((features - m) @ self.precision * (features - m)).sum(axis=1) for m in self.means], axis=0)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Atypicality: the distance in units of the threshold (1 or more: atypical)."""
        return self.distance(features) / self.threshold

    def save(self, path: Path) -> None:
        """Write the statistics (float32) to an ``.npz`` file."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, means=self.means.astype(np.float32), precision=self.precision.astype(np.float32),
                 threshold=np.float64(self.threshold))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Atypicality":
        """Read :meth:`save`'s file."""
        with np.load(path) as data:
            return cls(data["means"].astype(np.float64), data["precision"].astype(np.float64),
                       float(data["threshold"]))


def flag_report(scores: np.ndarray, labels: np.ndarray, called: np.ndarray) -> dict[str, Any]:
    """Share of films flagged, and the error rate among flagged and unflagged films."""
    flagged = np.asarray(scores) >= 1.0
    wrong = np.asarray(called).astype(int) != np.asarray(labels).astype(int)

    def rate(mask: np.ndarray) -> float | None:
        return float(wrong[mask].mean()) if mask.any() else None

    return {"n_images": int(len(flagged)), "flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()),
            "errors_flagged": int(wrong[flagged].sum()), "errors_total": int(wrong.sum()),
            "error_rate_flagged": rate(flagged), "error_rate_unflagged": rate(~flagged)}


def flag_summary(report: dict[str, Any]) -> str:
    """One line of :func:`flag_report`'s numbers."""
    return (f"{report['flagged']} of {report['n_images']} ({report['flagged_fraction']:.1%}); "
            f"{report['errors_flagged']} of {report['errors_total']} errors among them; error rate "
            f"{_percent(report['error_rate_flagged'])} flagged, {_percent(report['error_rate_unflagged'])} not")


def _features(predictor: Any, samples: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, features and labels of ``samples`` (through the model's own preprocessing)."""
    from model.data import load_arrays

    grays, labels, _ = load_arrays(samples, predictor.spec)
    probabilities, features = predictor.run_gray(grays)
    return probabilities, features, labels


def fit_model(model_path: Path, data: Path, external: Path | None = None) -> dict[str, Any]:
    """Fit, save and record the statistics of one model; returns the metadata's ``atypicality`` entry."""
    from model.artifacts import ModelArtifactError, load_metadata, save_metadata
    from model.data import list_samples, patient_split, resolve_split_dir
    from model.evaluate import split_seed, validation_samples
    from model.predictor import Predictor

    predictor = Predictor(model_path, with_atypicality=False)
    if not predictor.has_features:
        raise ModelArtifactError(f"{predictor.engine} model of {model_path} has no features output: "
                                 "re-export it with python -m model.onnx_export")
    config = predictor.metadata["config"]
    val = validation_samples([predictor], data)
    train, _ = patient_split(list_samples(resolve_split_dir(data, "train")), config["val_fraction"],
                             split_seed(config))
    _, train_features, train_labels = _features(predictor, train)
    val_probs, val_features, val_labels = _features(predictor, val)
    stats = Atypicality.fit(train_features, train_labels, val_features)
    stats.save(statistics_path(model_path))
    entry: dict[str, Any] = {
        "file": statistics_path(model_path).name, "quantile": QUANTILE, "ridge": RIDGE,
        "features": int(train_features.shape[1]), "fitted_on_films": len(train),
        "validation": flag_report(stats.score(val_features), val_labels, val_probs >= predictor.threshold),
    }
    if external is not None:
        probs, features, labels = _features(predictor, list_samples(external))
        entry["external"] = flag_report(stats.score(features), labels, probs >= predictor.threshold)
    metadata = load_metadata(model_path)
    metadata["atypicality"] = entry
    save_metadata(model_path, metadata)
    return entry


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from model.artifacts import ModelArtifactError
    from model.cli import exit_code
    from model.data import DatasetError

    parser = argparse.ArgumentParser(prog="python -m model.atypicality", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("MODEL_PATH", "models/best_model.keras")))
    parser.add_argument("--data", type=Path, required=True, help="the model's training data (Kaggle root)")
    parser.add_argument("--external", type=Path, help="folder measured for the report only")
    args = parser.parse_args(argv)

    def run() -> dict[str, Any]:
        entry = fit_model(args.model, args.data, args.external)
        for split in ("validation", "external"):
            if split in entry:
                print(f"{split}: atypical films {flag_summary(entry[split])}")
        print(f"wrote {statistics_path(args.model)} and the metadata's 'atypicality'")
        return entry

    return exit_code(run, DatasetError, ModelArtifactError)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    sys.exit(main())
