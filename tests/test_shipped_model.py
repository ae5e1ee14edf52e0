"""The shipped model: loads, carries complete metadata, fits the size budget, and classifies the
committed fixture X-rays (the official val split, never trained on).

Known weakness (documentation/MODEL_CARD.md): on test-era films the model still over-calls pneumonia
at its validation-chosen threshold; it gets 13 of the 16 fixtures right (3 tight NORMAL films called
PNEUMONIA, probabilities 0.43-0.70 against the threshold 0.263; the models shipped before it: 3, 4,
5, 5, 5 and 4).
The test pins that count (at most 3 wrong) so a regression shows, and requires every PNEUMONIA fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model.artifacts import REQUIRED_METADATA, load_metadata
from model.predictor import Predictor
from tests.helpers import fixture_images


def test_metadata_is_complete(shipped_model: Path) -> None:
    metadata = load_metadata(shipped_model)
    assert set(REQUIRED_METADATA) <= set(metadata)
    assert metadata["training_command"].startswith(("python -m model.cnn ", "python -m model.ensemble "))
    for member in metadata.get("members", []):  # an ensemble names how each member was trained
        assert member["training_command"].startswith("python -m model.cnn ")
        assert 0 <= member["validation_metrics"]["roc_auc"] <= 1
    assert len(metadata["data_fingerprint"]) == 64
    assert 0 < metadata["threshold"] < 1
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        assert 0 <= metadata["validation_metrics"][key] <= 1


def test_size_budget(shipped_model: Path) -> None:
    assert shipped_model.stat().st_size <= 30 * 2**20


@pytest.fixture(scope="module")
def predictor(shipped_model: Path) -> Predictor:
    return Predictor(shipped_model)


def test_fixture_xrays_are_classified(predictor: Predictor) -> None:
    predicted = {path.name: (predictor.label(predictor.predict_bytes(path.read_bytes())), label)
                 for path, label in fixture_images()}
    wrong = {name: pair for name, pair in predicted.items() if pair[0] != pair[1]}
    assert all(truth == "NORMAL" for _, truth in wrong.values()), f"missed pneumonia: {wrong}"
    assert len(wrong) <= 3, f"misclassified: {wrong}"


def test_onnx_engine_matches_keras(shipped_model: Path) -> None:
    import numpy as np

    from model.preprocessing import load_gray, preprocess_bytes

    onnx_engine, keras_engine = Predictor(shipped_model, engine="onnx"), Predictor(shipped_model, engine="keras")
    x = np.stack([preprocess_bytes(p.read_bytes(), onnx_engine.spec) for p, _ in fixture_images()])
    assert np.max(np.abs(onnx_engine.predict_inputs(x) - keras_engine.predict_inputs(x))) <= 1e-4
    grays = np.stack([load_gray(p.read_bytes(), onnx_engine.spec) for p, _ in fixture_images()])
    np.testing.assert_allclose(onnx_engine.assess_gray(grays)[1], keras_engine.assess_gray(grays)[1], rtol=1e-3)


def test_atypicality_is_fitted_and_flags_films_that_are_not_chest_films(predictor: Predictor) -> None:
    """About 5 % of validation films are atypical by construction; a blank, a black or a noise square,
    which the model calls PNEUMONIA with confidence, must be."""
    import numpy as np

    validation = predictor.metadata["atypicality"]["validation"]
    assert validation["flagged_fraction"] == pytest.approx(0.05, abs=0.005)
    assert validation["error_rate_flagged"] > validation["error_rate_unflagged"]
    size = predictor.spec.input_size
    noise = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    squares = np.stack([np.full((size, size), 128, np.uint8), np.zeros((size, size), np.uint8), noise])
    assert np.all(predictor.assess_gray(squares)[1] >= 1.0)


@pytest.mark.parametrize("warm_heatmap", [False, True])
def test_api_worker_with_onnx_loads_tensorflow_only_for_heatmaps(shipped_model: Path, warm_heatmap: bool) -> None:
    """The lean serving path: loading the API with the ONNX engine never imports TensorFlow, unless
    the heat-map warm-up (``API_WARM_HEATMAP``, on by default: the UI always asks for one) builds
    the Grad-CAM model in the background, which then reports itself ready."""
    import subprocess
    import sys

    from tests.helpers import REPO

    code = ("import sys; from pneumonia_api import create_app; from pneumonia_api.settings import ApiSettings; "
            f"app = create_app(ApiSettings(model_path={str(shipped_model)!r}, api_token='t', "
            f"warm_heatmap={warm_heatmap})); service = app.extensions['prediction_service']; "
            "assert service.predictor.engine == 'onnx'; "
            f"assert service.heatmap_ready.wait({120 if warm_heatmap else 0}) is {warm_heatmap}; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, "
            "app.test_client().get('/readyz').get_json()['heatmap_ready'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(warm_heatmap)] * 3
