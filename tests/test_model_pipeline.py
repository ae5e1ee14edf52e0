"""End to end on real X-rays: train -> best_model.keras + metadata -> evaluate, inference, Grad-CAM."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.artifacts import REQUIRED_METADATA, ModelArtifactError, load_metadata, metadata_path
from model.predictor import Predictor
from model.store import ResultStore
from tests.conftest import RedisServer
from tests.helpers import REPO, XRAYS, dicom_with, fixture_images, make_dicom


def test_training_writes_a_loadable_model_with_complete_metadata(tiny_model: Path) -> None:
    assert tiny_model.is_file()
    metadata = load_metadata(tiny_model)
    assert set(REQUIRED_METADATA) <= set(metadata)
    assert 0.0 < metadata["threshold"] < 1.0
    assert metadata["preprocessing"] == {"input_size": 96, "scaling": "tf", "resize_mode": "squash"}
    assert (tiny_model.parent / "history.csv").is_file()
    assert (tiny_model.parent / "training_curves.png").stat().st_size > 1000
    probability = Predictor(tiny_model).predict_bytes(fixture_images()[0][0].read_bytes())
    assert 0.0 <= probability <= 1.0


def test_incomplete_metadata_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m.keras"
    copy.write_bytes(tiny_model.read_bytes())
    metadata_path(copy).write_text(json.dumps({"threshold": 0.5}))
    with pytest.raises(ModelArtifactError, match="lacks"):
        Predictor(copy)


def test_evaluate_prints_and_writes_every_metric(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [sys.executable, "-m", "model.evaluate", "--model", str(tiny_model), "--model", str(tiny_model),
         "--data", str(XRAYS), "--json", str(out), "--plots", str(tmp_path / "plots"),
         "--predictions", str(tmp_path / "predictions.csv")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "brier"):
        assert key in proc.stdout
        assert 0.0 <= result[key] <= 1.0 and 0.0 <= result["at_0.5"][key] <= 1.0
    assert result["n_images"] == 16
    assert sum(result["confusion_matrix"].values()) == 16
    for name in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        lo, hi = result["ci95"][name]
        assert lo <= result[name] <= hi
    for name in ("roc.png", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    with open(tmp_path / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in XRAYS.rglob("*.jpeg"))
    cm = result["confusion_matrix"]
    assert sum(r["label"] == r["called"] == "PNEUMONIA" for r in rows) == cm["tp"]
    assert sum(r["label"] == "NORMAL" != r["called"] for r in rows) == cm["fp"]


def test_evaluate_recreates_the_validation_split(tiny_model: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    from model.evaluate import evaluate

    counts = load_metadata(tiny_model)["validation_counts"]
    result = evaluate([tiny_model], tiny_dataset, split="validation")
    assert result["class_counts"] == counts and result["n_images"] == sum(counts.values())
    assert 0.0 <= result["rule_threshold"] <= 1.0
    low, high = result["rule_near_best"]
    assert 0.0 <= low <= high <= 1.0
    fixed = evaluate([tiny_model], tiny_dataset, split="validation", threshold=0.5)
    assert fixed["threshold"] == 0.5
    assert fixed["confusion_matrix"] == result["at_0.5"]["confusion_matrix"]

    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    next((other / "train" / "NORMAL").iterdir()).unlink()
    proc = subprocess.run([sys.executable, "-m", "model.evaluate", "--model", str(tiny_model), "--data", str(other),
                           "--split", "validation"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "validation split cannot be re-created" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_reports_a_missing_folder_without_traceback(tiny_model: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "model.evaluate", "--model", str(tiny_model),
                           "--data", str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error: data folder not found" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_records_external_metrics_in_the_metadata(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / tiny_model.name
    for suffix in (".keras", ".json", ".onnx"):
        shutil.copy(tiny_model.with_suffix(suffix), model.with_suffix(suffix))
    command = [sys.executable, "-m", "model.evaluate", "--model", str(model), "--data", str(XRAYS), "--record"]
    refused = subprocess.run(command + ["--threshold", "0.5"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--record takes one model" in refused.stderr
    assert "external_metrics" not in load_metadata(model)
    proc = subprocess.run(command + ["--json", str(tmp_path / "m.json")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    recorded, printed = load_metadata(model)["external_metrics"], json.loads((tmp_path / "m.json").read_text())
    assert recorded["n_images"] == 16 and recorded["data"] == str(XRAYS)
    assert all(recorded[key] == printed[key] for key in ("threshold", "accuracy", "specificity", "roc_auc", "ci95"))
    assert recorded["threshold"] == load_metadata(model)["threshold"]
    assert Predictor(model).version == Predictor(tiny_model).version  # still loads; the model itself unchanged


def test_batch_inference_stores_every_image_in_redis(tiny_model: Path, redis_server: RedisServer) -> None:
    env = {"REDIS_URL": redis_server.url, "REDIS_PASSWORD": redis_server.password, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "model.inference", "--data", str(XRAYS), "--model", str(tiny_model)],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "stored 16 results" in proc.stdout
    records = ResultStore(redis_server.client()).recent(100)
    assert len(records) == 16
    assert {r.file_name for r in records} == {p.name for p, _ in fixture_images()}
    assert all(r.source == "batch" and len(r.image_sha256) == 64 and r.label in ("NORMAL", "PNEUMONIA")
               for r in records)


def test_batch_inference_reads_dicom_exports_and_reports_other_files(tiny_model: Path, redis_server: RedisServer,
                                                                     tmp_path: Path) -> None:
    """A PACS export: DICOM files with and without an extension, beside files that are no image."""
    pixels = np.asarray(Image.open(fixture_images()[0][0]).convert("L")).astype(np.uint16) * 16
    (tmp_path / "study" / "series").mkdir(parents=True)
    (tmp_path / "study" / "series" / "1.2.840.113619.2.55").write_bytes(make_dicom(pixels))
    (tmp_path / "study" / "film.DCM").write_bytes(make_dicom(pixels, "MONOCHROME1"))
    (tmp_path / "study" / "lateral.dcm").write_bytes(dicom_with(ViewPosition="LL"))
    shutil.copy(fixture_images()[-1][0], tmp_path / "film.jpeg")
    (tmp_path / "DICOMDIR.txt").write_text("index of the export")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "film.jpeg").write_bytes((tmp_path / "film.jpeg").read_bytes())
    env = {"REDIS_URL": redis_server.url, "REDIS_PASSWORD": redis_server.password, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "model.inference", "--data", str(tmp_path),
                           "--model", str(tiny_model)], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "stored 4 results" in proc.stdout and "skipped 1" in proc.stdout and "outside intended use 1" in proc.stdout
    assert "DICOMDIR.txt: unsupported file type" in proc.stderr and ".hidden" not in proc.stdout + proc.stderr
    records = {r.file_name: r for r in ResultStore(redis_server.client()).recent(100)}
    assert set(records) >= {"1.2.840.113619.2.55", "film.DCM", "film.jpeg", "lateral.dcm"}
    assert records["lateral.dcm"].outside_intended_use.startswith("view LL")
    assert records["film.DCM"].outside_intended_use == ""


def test_evaluate_reads_dicom_class_folders(tiny_model: Path, tmp_path: Path) -> None:
    for path, label in fixture_images():
        (tmp_path / label).mkdir(exist_ok=True)
        pixels = np.asarray(Image.open(path).convert("L")).astype(np.uint16) * 16
        (tmp_path / label / f"{path.stem}.dcm").write_bytes(make_dicom(pixels))
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "model.evaluate", "--model", str(tiny_model), "--data", str(tmp_path),
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["n_images"] == 16


def test_batch_inference_without_redis_fails_cleanly(tiny_model: Path) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "model.inference", "--data", str(XRAYS), "--model", str(tiny_model)],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3
    assert "cannot reach Redis" in proc.stderr and "Traceback" not in proc.stderr


def test_gradcam_overlay_on_a_real_xray(shipped_model: Path) -> None:
    """On the shipped model: a one-epoch toy model predicts a constant and has no map to show."""
    import io

    from model.gradcam import GradCam
    from model.preprocessing import load_gray, scale

    predictor = Predictor(shipped_model)
    size = predictor.spec.input_size
    gray = load_gray(fixture_images()[-1][0].read_bytes(), predictor.spec)
    cam = GradCam(predictor.keras_model, predictor.metadata["gradcam_layer"])
    heat = cam.heatmap(scale(gray.astype(np.float32), predictor.spec.scaling), predictor.threshold)
    assert heat.ndim == 2 and heat.min() >= 0 and heat.max() <= 1
    assert heat.std() > 0, "heat-map is constant"
    png = Image.open(io.BytesIO(cam.overlay_png(gray, predictor.spec, predictor.threshold)))
    assert png.format == "PNG" and png.size == (size, size) and png.mode == "RGB"



def test_gradcam_focus_measures_the_map_near_the_edge(tiny_model: Path, tiny_dataset: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from scripts import gradcam_focus

    edge, centre = np.zeros((6, 6)), np.zeros((6, 6))
    edge[0, 5], centre[2:4, 2:4] = 1.0, 1.0
    share, peak = gradcam_focus.band_share(edge, 96)
    assert share > 0.9 and peak
    share, peak = gradcam_focus.band_share(centre, 96)
    assert share < 0.1 and not peak
    share, _ = gradcam_focus.band_share(np.ones((6, 6)), 96)
    assert share == pytest.approx(gradcam_focus.edge_band(96).mean(), abs=0.01)
    assert gradcam_focus.band_share(np.zeros((6, 6)), 96) is None
    assert gradcam_focus.main(["--model", str(tiny_model), "--data", str(tiny_dataset), "--films", "3"]) == 0
    assert "outer band 0.125 of the side (44% of the area)" in capsys.readouterr().out


def test_error_gallery_shows_the_most_confident_errors(tiny_model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from scripts import error_gallery

    labels, probs = np.array([0, 0, 1, 1, 0]), np.array([0.9, 0.2, 0.1, 0.8, 0.6])
    assert error_gallery.confident_errors(labels, probs, 0.5, 5) == [0, 2, 4]
    assert error_gallery.confident_errors(labels, probs, 0.5, 2) == [0, 2]
    assert error_gallery.confident_errors(labels, probs, 0.0, 5) == [0, 4, 1]  # every NORMAL film is called wrongly
    out = tmp_path / "errors.png"
    assert error_gallery.main(["--model", str(tiny_model), "--data", str(XRAYS), "--output", str(out),
                               "--films", "5", "--threshold", "0"]) == 0
    shown = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(shown) == 5 and all(label == "NORMAL" for _, label, _ in shown)
    size = Predictor(tiny_model).spec.input_size
    assert Image.open(out).size == (4 * size, 2 * (size + error_gallery.CAPTION))
    assert error_gallery.main(["--model", str(tiny_model), "--data", str(tmp_path / "none"),
                               "--output", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


def test_learning_rate_schedules() -> None:
    from model.training import TrainConfig, _schedule

    cosine = _schedule(TrainConfig(Path("d"), Path("o"), learning_rate=1e-3, lr_schedule="cosine"), total_steps=1000)
    assert float(cosine(0)) == pytest.approx(1e-3)
    assert float(cosine(500)) == pytest.approx(0.505e-3, rel=1e-3)
    assert float(cosine(1000)) == pytest.approx(1e-5, rel=1e-3)
    seed = _schedule(TrainConfig(Path("d"), Path("o"), learning_rate=1e-3), total_steps=1000)
    assert float(seed(1000)) == pytest.approx(1e-3)


def test_trainer_cli_help_and_bad_weights(tmp_path: Path, tiny_dataset: Path) -> None:
    help_text = subprocess.run([sys.executable, "model/cnn.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert help_text.returncode == 0
    for option in ("--backbone", "--input-size", "--epochs", "--batch-size", "--learning-rate",
                   "--fine-tune-layers", "--weights", "--seed", "--folds", "--class-weight", "--split-seed",
                   "--fold", "--finish", "--exclude-train"):
        assert option in help_text.stdout
    proc = subprocess.run([sys.executable, "-m", "model.cnn", "--data", str(tiny_dataset), "--output", str(tmp_path),
                           "--weights", str(tmp_path / "missing.h5"), "--input-size", "64", "--epochs", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "weights file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_exclude_train_leaves_patients_out_of_the_training_side_only(tiny_dataset: Path, tiny_model: Path,
                                                                    tmp_path: Path) -> None:
    from model import cnn
    from model.data import list_samples, patient_split

    train, _ = patient_split(list_samples(tiny_dataset / "train"), 0.3, 42)
    dropped = train[0].patient
    listing = tmp_path / "exclude.txt"
    listing.write_text(f"# a comment\n{dropped.lower()}\n")
    options = ["--data", str(tiny_dataset), "--backbone", "mobilenetv2", "--weights", "none", "--input-size", "32",
               "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.3", "--exclude-train", str(listing)]
    assert cnn.main([*options, "--output", str(tmp_path / "run")]) == 0
    metadata, reference = load_metadata(tmp_path / "run" / "best_model.keras"), load_metadata(tiny_model)
    assert sum(metadata["training_counts"].values()) == len(train) - sum(s.patient == dropped for s in train)
    assert metadata["validation_counts"] == reference["validation_counts"]
    assert metadata["data_fingerprint"] == reference["data_fingerprint"]  # same data, same split
    assert metadata["config"]["exclude_train"] == str(listing)
    assert cnn.main([*options, "--output", str(tmp_path / "folds"), "--folds", "2"]) == 2
    listing.unlink()
    assert cnn.main([*options, "--output", str(tmp_path / "missing")]) == 2


def test_subtype_auxiliary_loss_trains_and_saves_the_binary_model(tiny_dataset: Path, tmp_path: Path) -> None:
    from model import cnn
    from model.artifacts import load_keras_model

    assert cnn.main(["--data", str(tiny_dataset), "--output", str(tmp_path), "--backbone", "mobilenetv2",
                     "--weights", "none", "--input-size", "32", "--epochs", "1", "--batch-size", "8",
                     "--monitor", "val_auc", "--subtype-weight", "0.5"]) == 0
    with open(tmp_path / "history.csv", newline="") as fh:
        columns = set(next(csv.DictReader(fh)))
    assert {"subtype_loss", "val_subtype_loss", "val_pneumonia_auc"} <= columns  # both heads trained, AUC watched
    net = load_keras_model(tmp_path / "best_model.keras")
    assert net.output.shape == (None, 1) and "subtype" not in {layer.name for layer in net.layers}
    metadata = load_metadata(tmp_path / "best_model.keras")
    assert metadata["config"]["subtype_weight"] == 0.5
    assert 0.0 <= metadata["validation_metrics"]["roc_auc"] <= 1.0
    for bad in ("-1", "nan", "heavy"):
        with pytest.raises(SystemExit) as refused:
            cnn.build_parser().parse_args(["--subtype-weight", bad])
        assert refused.value.code == 2


def test_mixup_trains_with_blended_batches_and_is_recorded(tiny_dataset: Path, tmp_path: Path) -> None:
    from model import cnn

    options = ["--data", str(tiny_dataset), "--backbone", "mobilenetv2", "--weights", "none", "--input-size", "32",
               "--epochs", "1", "--batch-size", "8", "--monitor", "val_auc", "--mixup", "0.2"]
    assert cnn.main([*options, "--output", str(tmp_path)]) == 0
    metadata = load_metadata(tmp_path / "best_model.keras")
    assert metadata["config"]["mixup"] == 0.2 and "--mixup 0.2" in metadata["training_command"]
    assert 0.0 <= metadata["validation_metrics"]["roc_auc"] <= 1.0
    assert cnn.main([*options, "--output", str(tmp_path / "both"), "--subtype-weight", "0.5"]) == 2
    assert not (tmp_path / "both").exists()


def test_kfold_cross_validation_summarises_each_fold(tiny_dataset: Path, tmp_path: Path) -> None:
    from model import cnn

    assert cnn.main(["--data", str(tiny_dataset), "--output", str(tmp_path), "--backbone", "mobilenetv2",
                     "--weights", "none", "--input-size", "32", "--epochs", "1", "--batch-size", "8",
                     "--folds", "2"]) == 0
    summary = json.loads((tmp_path / "folds_summary.json").read_text())
    assert len(summary["validation_metrics"]["roc_auc"]["values"]) == 2
    framing = summary["validation_framing_auc"]  # the selection criterion's spread, fold by fold
    assert framing["values"] == [json.loads((tmp_path / f"fold{i}" / "best_model.json").read_text())
                                 ["validation_framing_auc"] for i in (1, 2)]
    assert (tmp_path / "fold1" / "best_model.keras").is_file() and (tmp_path / "fold2" / "best_model.json").is_file()


def test_single_folds_train_apart_and_summarise_together(tiny_dataset: Path, tmp_path: Path) -> None:
    """``--fold N`` trains one fold (folds side by side on a GPU host); the summary comes after."""
    from model import cnn
    from model.training import summarise_folds

    options = ["--data", str(tiny_dataset), "--output", str(tmp_path), "--backbone", "mobilenetv2",
               "--weights", "none", "--input-size", "32", "--epochs", "1", "--batch-size", "8", "--folds", "2"]
    assert cnn.main(options + ["--fold", "3"]) == 2
    assert cnn.main(options + ["--fold", "2"]) == 0
    assert (tmp_path / "fold2" / "best_model.json").is_file() and not (tmp_path / "fold1").exists()
    assert not (tmp_path / "folds_summary.json").exists()
    assert summarise_folds(tmp_path, 2)["folds_done"] == 1
    assert json.loads((tmp_path / "folds_summary.json").read_text())["folds_done"] == 1
