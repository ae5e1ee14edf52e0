"""Ensembles as one model, and finishing a checkpoint trained elsewhere (``model.cnn --finish``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.artifacts import REQUIRED_METADATA, load_metadata
from model.predictor import Predictor
from tests.helpers import REPO, fixture_images


@pytest.fixture(scope="module")
def ensemble(tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model import ensemble as ensemble_cli

    out = tmp_path_factory.mktemp("ensemble") / "best_model.keras"
    code = ensemble_cli.main(["--model", str(tiny_model), "--model", str(tiny_model), "--data", str(tiny_dataset),
                              "--output", str(out), "--external", str(tiny_dataset / "train")])
    assert code == 0
    return out


def test_ensemble_is_one_model_with_complete_metadata(ensemble: Path, tiny_model: Path) -> None:
    metadata = load_metadata(ensemble)
    member = load_metadata(tiny_model)
    assert set(REQUIRED_METADATA) <= set(metadata)
    assert metadata["training_command"].startswith("python -m model.ensemble ")
    assert [m["model_version"] for m in metadata["members"]] == [member["model_version"]] * 2
    assert all(m["training_command"].startswith("python -m model.cnn ") for m in metadata["members"])
    assert metadata["data_fingerprint"] == member["data_fingerprint"]
    assert metadata["validation_counts"] == member["validation_counts"]
    assert "framing counterfactuals" in metadata["threshold_rule"]
    assert 0.0 <= metadata["validation_framing_auc"] <= 1.0
    assert metadata["external_metrics"]["n_images"] == 16
    assert ensemble.with_suffix(".onnx").is_file()


def test_ensemble_of_a_model_with_itself_predicts_as_the_model(ensemble: Path, tiny_model: Path) -> None:
    data = [path.read_bytes() for path, _ in fixture_images()[:4]]
    for engine in ("keras", "onnx"):
        single, double = Predictor(tiny_model, engine="keras"), Predictor(ensemble, engine=engine)
        np.testing.assert_allclose([double.predict_bytes(d) for d in data],
                                   [single.predict_bytes(d) for d in data], atol=1e-5)


def test_gradcam_over_the_members(ensemble: Path) -> None:
    from model.gradcam import GradCam
    from model.preprocessing import preprocess_bytes

    predictor = Predictor(ensemble, engine="keras")
    cam = GradCam(predictor.keras_model, predictor.metadata["gradcam_layer"])
    assert len(cam._grad_models) == 2
    heat = cam.heatmap(preprocess_bytes(fixture_images()[0][0].read_bytes(), predictor.spec))
    assert heat.shape == (3, 3) and 0.0 <= heat.min() and heat.max() <= 1.0


def test_ensemble_refuses_one_model_and_other_data(tiny_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "model.ensemble", "--output", str(tmp_path / "e.keras"), "--model", str(tiny_model)]
    one = subprocess.run(base + ["--data", str(tiny_dataset)], cwd=REPO, capture_output=True, text=True)
    assert one.returncode == 2 and "at least two" in one.stderr
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    next((other / "train" / "PNEUMONIA").iterdir()).unlink()
    proc = subprocess.run(base + ["--model", str(tiny_model), "--data", str(other)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "validation split cannot be re-created" in proc.stderr and "Traceback" not in proc.stderr


def test_finish_completes_a_checkpoint(tiny_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """A run stopped after its last epoch (or trained on another host) keeps its weights."""
    from model import cnn

    out = tmp_path / "run"
    out.mkdir()
    for name in ("best_model.keras", "history.csv"):
        shutil.copy(tiny_model.parent / name, out / name)
    options = json.loads(tiny_model.with_suffix(".json").read_text())["training_command"].split()[3:]
    options[options.index("--output") + 1] = str(out)
    assert cnn.main(options + ["--finish"]) == 0
    metadata = load_metadata(out / "best_model.keras")
    assert metadata["config"]["finish"] is True and metadata["train_seconds"] is None
    assert metadata["training_command"] == metadata["finishing_command"] == metadata["config"]["command"]
    # finished again beside the metadata of the run that trained it: that run's record is kept
    trained = load_metadata(tiny_model)
    shutil.copy(tiny_model.with_suffix(".json"), out / "best_model.json")
    assert cnn.main(options + ["--finish"]) == 0
    metadata = load_metadata(out / "best_model.keras")
    assert metadata["training_command"] == trained["training_command"] != metadata["finishing_command"]
    assert metadata["train_seconds"] == trained["train_seconds"] > 0
    assert metadata["keras_backend"] == trained["keras_backend"] == "tensorflow"
    assert metadata["epochs_run"] == load_metadata(tiny_model)["epochs_run"]
    assert metadata["threshold"] == load_metadata(tiny_model)["threshold"]
    assert (out / "best_model.onnx").is_file()
    assert cnn.main(options + ["--output", str(tmp_path / "empty"), "--finish"]) == 2

