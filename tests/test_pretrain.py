"""Self-supervised pre-training (``model.pretrain``) and fine-tuning its backbone with ``model.cnn``."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from model.artifacts import load_metadata
from model.cnn import build_parser
from model.data import list_samples, patient_split
from model.predictor import Predictor
from model.pretrain import nt_xent, pair_accuracy
from tests.helpers import REPO


def test_contrastive_loss_rewards_views_paired_with_their_partner() -> None:
    rng = np.random.default_rng(0)
    first = rng.normal(size=(8, 16)).astype("float32")
    paired = np.concatenate([first, first + 0.05 * rng.normal(size=first.shape).astype("float32")])
    shuffled = np.concatenate([first, np.roll(first, 1, axis=0)])  # each second view belongs to another film
    loss, dummy = nt_xent(0.2), np.zeros(16, "float32")
    assert float(keras.ops.mean(loss(dummy, paired))) < 0.5  # chance: ln(15) = 2.7
    assert float(keras.ops.mean(loss(dummy, shuffled))) > 2.0
    assert float(keras.ops.mean(pair_accuracy(dummy, paired))) == 1.0
    assert float(keras.ops.mean(pair_accuracy(dummy, shuffled))) == 0.0


def test_pretrained_backbone_is_fine_tuned_by_the_trainer(tiny_dataset: Path, tmp_path: Path) -> None:
    from model import cnn, pretrain
    from model.architecture import build_model

    weights = tmp_path / "ssl" / "mobilenetv2-32.weights.h5"
    assert pretrain.main(["--data", str(tiny_dataset), "--output", str(weights), "--input-size", "32",
                          "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.3"]) == 0
    record = json.loads((tmp_path / "ssl" / "mobilenetv2-32.json").read_text())
    train, _ = patient_split(list_samples(tiny_dataset / "train"), 0.3, 42)
    assert record["n_images"] == len(train) < 16  # the validation patients are left out
    assert np.isfinite(record["history"]["loss"]).all() and record["command"].startswith("python -m model.pretrain")

    net = build_model("mobilenetv2", 32, str(weights), full_fine_tune=True)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.load_weights(weights)
    assert np.array_equal(net.get_layer("Conv1").get_weights()[0], base.get_layer("Conv1").get_weights()[0])

    def base_batchnorm(m: keras.Model) -> list:
        return [layer for layer in m.layers
                if isinstance(layer, keras.layers.BatchNormalization) and not layer.name.startswith("head_")]
    assert all(layer.trainable and layer.momentum == 0.9 for layer in base_batchnorm(net))
    frozen = build_model("mobilenetv2", 32, str(weights))  # a weights file without --full-fine-tune
    assert base_batchnorm(frozen) and not any(layer.trainable for layer in base_batchnorm(frozen))

    other_split = ["--data", str(tiny_dataset), "--output", str(tmp_path / "refused"), "--backbone", "mobilenetv2",
                   "--weights", str(weights), "--full-fine-tune", "--input-size", "32", "--val-fraction", "0.2"]
    assert cnn.main(other_split) == 2  # its validation patients were pre-trained on
    assert cnn.main(other_split[:-2] + ["--val-fraction", "0.3", "--folds", "2"]) == 2  # so were the folds'
    assert not (tmp_path / "refused" / "best_model.keras").exists()

    out = tmp_path / "finetuned"
    assert cnn.main(["--data", str(tiny_dataset), "--output", str(out), "--backbone", "mobilenetv2",
                     "--weights", str(weights), "--full-fine-tune", "--input-size", "32",
                     "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.3"]) == 0
    metadata = json.loads((out / "best_model.json").read_text())
    assert metadata["config"]["weights"] == str(weights) and metadata["config"]["full_fine_tune"] is True
    assert metadata["pretraining"]["command"] == record["command"]  # how its backbone was made
    assert metadata["pretraining"]["data_fingerprint"] == record["data_fingerprint"]


def test_pretraining_continues_from_a_backbone_of_the_same_split(tiny_dataset: Path, tmp_path: Path) -> None:
    from model import pretrain

    common = ["--data", str(tiny_dataset), "--input-size", "32", "--epochs", "1", "--batch-size", "4",
              "--val-fraction", "0.3"]
    first, second = tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"
    assert pretrain.main(common + ["--output", str(first)]) == 0
    # a zero learning rate leaves the loaded kernels as they were: the continuation starts from them
    assert pretrain.main(common + ["--output", str(second), "--init", str(first), "--learning-rate", "0"]) == 0

    def conv1(weights: Path) -> np.ndarray:
        base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
        base.load_weights(weights)
        return base.get_layer("Conv1").get_weights()[0]
    assert np.array_equal(conv1(first), conv1(second))
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["init"]["command"] == json.loads((tmp_path / "a.json").read_text())["command"]
    assert "history" not in record["init"]

    other = common[:-1] + ["0.2", "--output", str(tmp_path / "c.weights.h5"), "--init", str(first)]
    assert pretrain.main(other) == 2  # pre-trained on another split's training side
    missing = common + ["--output", str(tmp_path / "d.weights.h5"), "--init", str(tmp_path / "none.weights.h5")]
    assert pretrain.main(missing) == 2  # no record says which split it came from
    assert not (tmp_path / "c.weights.h5").exists() and not (tmp_path / "d.weights.h5").exists()


def test_pretrain_refuses_an_output_the_trainer_cannot_read(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "model.pretrain", "--data", str(tmp_path), "--output",
                           str(tmp_path / "backbone.h5")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and ".weights.h5" in proc.stderr and "Traceback" not in proc.stderr


def test_recipe_script_pretrains_then_fine_tunes(tiny_dataset: Path, tmp_path: Path) -> None:
    """``scripts/train_model.sh`` (``make model`` and the AWS training host), shrunk by the caller's options:
    a self-supervised pre-training continued from itself, the longer backbone fine-tuned in full with
    ``fov-neutral`` (seed 43) and the shorter with ``fov-margin``, then the two members' ensemble and
    its atypicality statistics."""
    env = {"PATH": "/usr/bin:/bin", "PY": sys.executable, "EXTERNAL": str(tiny_dataset / "train"),
           "PRETRAIN_ARGS": "--input-size 64 --epochs 1 --batch-size 4 --val-fraction 0.3"}
    proc = subprocess.run(["scripts/train_model.sh", str(tiny_dataset), str(tmp_path), "--input-size", "64",
                           "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.3"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metadata = load_metadata(tmp_path / "model" / "best_model.keras")
    short, long = (str(tmp_path / "ssl" / f"epochs{n}.weights.h5") for n in (20, 35))
    members = [build_parser().parse_args(shlex.split(m["training_command"])[3:]) for m in metadata["members"]]
    assert [(options.augment, options.weights, options.seed, options.split_seed) for options in members] == [
        ("fov-neutral", long, 43, 42), ("fov-margin", short, 42, None)]
    for options, member in zip(members, metadata["members"]):
        assert options.input_size == 64 and options.lr_schedule == "cosine"
        assert (options.full_fine_tune, options.patience) == (True, 20)
        assert member["pretraining"]["epochs"] == 1
    continued = metadata["members"][0]["pretraining"]
    assert "--init " + short in continued["command"] and "--output " + short in continued["init"]["command"]
    assert "init" not in metadata["members"][1]["pretraining"]
    assert "external_metrics" in metadata and (tmp_path / "model" / "best_model.onnx").is_file()
    assert {"validation", "external"} <= set(metadata["atypicality"])
    assert Predictor(tmp_path / "model" / "best_model.keras").atypicality is not None
    usage = subprocess.run(["scripts/train_model.sh"], cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "Usage" in usage.stdout
