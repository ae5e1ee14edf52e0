"""Atypicality: the Gaussian fit, the features output of both engines, the CLI and the stored flag."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.artifacts import ModelArtifactError, load_metadata
from model.atypicality import Atypicality, flag_report, statistics_path
from model.predictor import Predictor
from model.preprocessing import load_gray, scale
from model.store import PredictionRecord, ResultStore
from tests.conftest import RedisServer
from tests.helpers import REPO, XRAYS, fixture_images


def _clusters(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    return rng.normal(size=(n, 8)) + 4.0 * labels[:, None], labels


def test_fit_flags_the_validation_quantile_and_far_films() -> None:
    rng = np.random.default_rng(0)
    train, labels = _clusters(rng, 2000)
    validation, _ = _clusters(rng, 1000)
    stats = Atypicality.fit(train, labels, validation, quantile=0.9)
    assert np.mean(stats.score(validation) >= 1.0) == pytest.approx(0.1, abs=0.002)
    fresh, _ = _clusters(rng, 4000)  # the same distribution: about the same share flagged
    assert np.mean(stats.score(fresh) >= 1.0) == pytest.approx(0.1, abs=0.03)
    between = np.full((1, 8), 2.0)  # halfway between the class means: typical of neither
    assert stats.score(between)[0] > 1.0 > stats.score(np.zeros((1, 8)))[0]
    assert np.all(stats.score(fresh + 10.0) > 1.0)


def test_statistics_survive_a_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train, labels = _clusters(rng, 300)
    stats = Atypicality.fit(train, labels, train[:100])
    stats.save(tmp_path / "s.npz")
    loaded = Atypicality.load(tmp_path / "s.npz")
    assert loaded.threshold == stats.threshold
    np.testing.assert_allclose(loaded.score(train), stats.score(train), rtol=1e-4)


def test_flag_report_counts_errors_among_flagged_films() -> None:
    report = flag_report(np.array([0.2, 1.5, 3.0, 0.5]), np.array([0, 0, 1, 1]), np.array([False, True, True, False]))
    assert report["flagged"] == 2 and report["errors_total"] == 2 and report["errors_flagged"] == 1
    assert report["error_rate_flagged"] == 0.5 and report["error_rate_unflagged"] == 0.5
    assert flag_report(np.array([0.1]), np.array([0]), np.array([False]))["error_rate_flagged"] is None


def test_both_engines_give_the_same_features(tiny_model_with_statistics: Path) -> None:
    """The scores themselves are compared on the shipped model: this one-epoch model's features hardly
    vary between films, so its distances magnify float round-off (test_shipped_model)."""
    onnx_engine = Predictor(tiny_model_with_statistics, engine="onnx")
    keras_engine = Predictor(tiny_model_with_statistics, engine="keras")
    grays = np.stack([load_gray(p.read_bytes(), onnx_engine.spec) for p, _ in fixture_images()])
    x = scale(grays.astype(np.float32), onnx_engine.spec.scaling)
    (p_onnx, f_onnx), (p_keras, f_keras) = onnx_engine.run_inputs(x), keras_engine.run_inputs(x)
    assert f_onnx.shape == (16, 256)
    np.testing.assert_allclose(p_onnx, p_keras, atol=1e-4)
    np.testing.assert_allclose(f_onnx, f_keras, atol=1e-5)
    scores = onnx_engine.assess_gray(grays)[1]
    assert scores.shape == (16,) and np.all(scores >= 0)
    plain = Predictor(tiny_model_with_statistics, with_atypicality=False)
    assert plain.atypicality is None and plain.assess_gray(grays)[1] is None


def test_cli_fits_saves_and_records(tiny_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    model = tmp_path / tiny_model.name
    for suffix in (".keras", ".json", ".onnx"):
        shutil.copy(tiny_model.with_suffix(suffix), model.with_suffix(suffix))
    proc = subprocess.run([sys.executable, "-m", "model.atypicality", "--model", str(model), "--data", str(tiny_dataset),
                           "--external", str(tiny_dataset / "train")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "validation:" in proc.stdout and "external:" in proc.stdout
    entry = load_metadata(model)["atypicality"]
    counts = load_metadata(model)["validation_counts"]
    assert entry["validation"]["n_images"] == sum(counts.values()) and entry["external"]["n_images"] == 16
    assert entry["file"] == statistics_path(model).name and statistics_path(model).is_file()
    assert entry["features"] == 256 and entry["fitted_on_films"] == 16 - sum(counts.values())
    assert Predictor(model).atypicality is not None


def test_evaluate_reports_atypical_films(tiny_model_with_statistics: Path, tmp_path: Path) -> None:
    from model.evaluate import evaluate, format_report

    result = evaluate([tiny_model_with_statistics], XRAYS, predictions=tmp_path / "p.csv")
    report = result["atypicality"]
    assert report["n_images"] == 16 and report["errors_total"] == result["confusion_matrix"]["fp"] + \
        result["confusion_matrix"]["fn"]
    assert "atypical films: " in format_report(result)
    with open(tmp_path / "p.csv") as fh:
        scores = [float(row["atypicality"]) for row in csv.DictReader(fh)]
    assert sum(s >= 1.0 for s in scores) == report["flagged"]
    assert "atypicality" not in evaluate([tiny_model_with_statistics] * 2, XRAYS)  # an ensemble of files: none


def test_missing_statistics_fail_at_load(tiny_model_with_statistics: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.keras"
    for suffix in (".keras", ".json"):
        shutil.copy(tiny_model_with_statistics.with_suffix(suffix), model.with_suffix(suffix))
    with pytest.raises(ModelArtifactError, match="atypicality statistics unreadable"):
        Predictor(model, engine="keras")


def test_cli_reports_a_wrong_data_folder_without_traceback(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    proc = subprocess.run([sys.executable, "-m", "model.atypicality", "--model", str(tiny_model),
                           "--data", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "atypicality" not in json.loads(tiny_model.with_suffix(".json").read_text())


def test_stored_records_keep_the_score_or_its_absence(redis_server: RedisServer) -> None:
    store = ResultStore(redis_server.client())
    flagged = PredictionRecord("NORMAL", 0.1, 0.3, "v", "0" * 64, atypicality=1.25)
    unscored = PredictionRecord("NORMAL", 0.1, 0.3, "v", "1" * 64)
    store.save(flagged)
    store.save(unscored)
    assert store.get(flagged.id).to_dict() == flagged.to_dict() and store.get(flagged.id).atypical is True
    assert store.get(unscored.id).atypicality is None and store.get(unscored.id).to_dict()["atypical"] is None
