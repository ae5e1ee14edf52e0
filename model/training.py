"""The training procedure behind ``model.cnn``: data, fit, threshold, metadata, reports."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

import model as model_pkg
from model import onnx_export, plots
from model.architecture import BACKBONES, binary_model, build_model
from model.artifacts import ModelArtifactError, save_metadata
from model.data import (
    CLASS_NAMES,
    DatasetError,
    Sample,
    class_counts,
    fingerprint,
    list_samples,
    load_arrays,
    patient_folds,
    patient_split,
    resolve_split_dir,
)
from model.framing import THRESHOLD_RULE, Counterfactuals
from model.metrics import binary_metrics
from model.pipeline import Mixup, Subtypes, build_augmenter, make_dataset, normal_window
from model.pretrain import pretraining_record
from model.preprocessing import PreprocessSpec, resize_films, scale

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything one training run depends on (recorded in the metadata)."""

    data: Path
    output: Path
    backbone: str = "resnet50"
    input_size: int = 224
    resize_mode: str = "squash"
    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 1e-5
    lr_schedule: str = "exponential"
    fine_tune_layers: int = 15
    weights: str = "imagenet"
    bn_momentum: float = 0.9
    full_fine_tune: bool = False
    augment: str = "seed"
    class_weight: dict[int, float] | None = None
    subtype_weight: float = 0.0
    mixup: float = 0.0
    monitor: str = "val_loss"
    patience: int = 5
    min_sensitivity: float = 0.95
    val_fraction: float = 0.2
    split_seed: int | None = None
    exclude_train: Path | None = None
    external: Path | None = None
    limit: int = 0
    mixed_precision: bool = False
    finish: bool = False
    seed: int = 42
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace, command: str) -> "TrainConfig":
        names = set(cls.__dataclass_fields__) - {"command", "extra"}
        return cls(**{k: v for k, v in vars(args).items() if k in names}, command=command)

    @property
    def validation_seed(self) -> int:
        """Seed of the patient-level split (``split_seed``, else ``seed``)."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(self.input_size, BACKBONES[self.backbone].scaling, self.resize_mode)


class Throughput(keras.callbacks.Callback):
    """Training images per second of each epoch (excluding validation)."""

    def __init__(self, n_images: int) -> None:
        super().__init__()
        self.n_images = n_images
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if hasattr(self, "_start"):
            self.rates.append(self.n_images / (time.perf_counter() - self._start))
            print(f" - {self.rates[-1]:.1f} train images/s", flush=True)


def _balanced_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1)}


def _print_counts(name: str, samples: list[Sample]) -> None:
    counts = class_counts(samples)
    patients = len({s.patient for s in samples})
    print(f"{name:>10}: {len(samples)} images, {patients} patients, " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _strategy() -> Any:
    """MirroredStrategy over several GPUs with TensorFlow; else the default (a no-op scope)."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        print(f"training on {len(gpus)} GPUs with MirroredStrategy")
        return tf.distribute.MirroredStrategy().scope()
    return tf.distribute.get_strategy().scope()


def _predict(model: keras.Model, images: np.ndarray, spec: PreprocessSpec, batch: int = 64) -> np.ndarray:
    out = [model.predict_on_batch(scale(images[i : i + batch].astype(np.float32), spec.scaling))
           for i in range(0, len(images), batch)]
    return np.concatenate([np.asarray(o).reshape(-1) for o in out])


def _fit(config: TrainConfig, train: list[Sample], val: list[Sample]) -> dict[str, Any]:
    """Train on ``train`` (less the patients of ``config.exclude_train``: the validation split and the
    data fingerprint stay those of the whole data), select on ``val``; write model, metadata and
    reports; return the metadata.

    With ``config.finish`` the training is skipped: the checkpoint and ``history.csv`` already in the
    output folder (a run stopped after its last epoch, or trained elsewhere) are finished instead; the
    training run's own record there (its command, backend and speed) is kept.
    """
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    spec = config.spec
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    data_fp = fingerprint(train + val)  # the data as split, before any exclusion
    if config.exclude_train is not None:
        excluded = excluded_patients(config.exclude_train)
        train = [s for s in train if s.patient not in excluded]
    _print_counts("train", train)
    _print_counts("validation", val)

    t0 = time.perf_counter()
    x_train, y_train, train = load_arrays(train, spec)
    x_val, y_val, val = load_arrays(val, spec)
    print(f"decoded {len(x_train) + len(x_val)} images in {time.perf_counter() - t0:.1f}s")

    class_weight = config.class_weight or _balanced_weights(y_train)
    print(f"class weights: {class_weight}")
    model_path = out / "best_model.keras"
    if config.finish:
        if not model_path.is_file():
            raise ModelArtifactError(f"--finish: no checkpoint {model_path} to finish")
        history, run = _read_history(out / "history.csv"), _training_run(out / "best_model.json")
        run["training_command"] = run["training_command"] or config.command
    else:
        subtypes = [np.array([s.subtype for s in part], dtype=np.int32) for part in (train, val)]
        history, train_seconds, rates = _train(config, x_train, y_train, x_val, y_val, class_weight, subtypes)
        run = {"training_command": config.command, "keras_backend": keras.backend.backend(),
               "train_seconds": round(train_seconds, 1),
               "train_images_per_second": round(float(np.median(rates)), 2) if rates else None}
    history = _binary_history(history)
    plots.training_curves(history, out / "training_curves.png")

    best = binary_model(keras.saving.load_model(model_path, compile=False))
    best.save(model_path)  # without the optimizer state (and any auxiliary output): all inference needs
    metadata: dict[str, Any] = {
        **identity(config.backbone, config.input_size, data_fp),
        "backbone": config.backbone,
        "gradcam_layer": BACKBONES[config.backbone].gradcam_layer,
        **assess(best, spec, val, x_val, y_val, config.data, config.min_sensitivity),
        "training_counts": class_counts(train),
        "class_weight": {str(k): v for k, v in class_weight.items()},
        "epochs_run": len(history["loss"]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        **run,
    }
    if config.finish:
        metadata["finishing_command"] = config.command
    if (record := pretraining_record(config.weights)) is not None:
        metadata["pretraining"] = {k: v for k, v in record.items() if k != "history"}
    if config.external is not None:
        metadata["external_metrics"] = external_metrics(best, spec, config.external, metadata["threshold"])
    publish(model_path, metadata)
    return metadata


def identity(name: str, input_size: int, data_fp: str) -> dict[str, Any]:
    """Version, creation time, classes and data fingerprint of a new model's metadata."""
    stamp = datetime.now(timezone.utc)
    return {
        "model_version": f"{name}-{input_size}-{stamp:%Y%m%d%H%M%S}-{data_fp[:8]}",
        "package_version": model_pkg.__version__,
        "created_utc": stamp.isoformat(timespec="seconds"),
        "class_names": list(CLASS_NAMES),
        "data_fingerprint": data_fp,
    }


def assess(net: keras.Model, spec: PreprocessSpec, val: list[Sample], x_val: np.ndarray, y_val: np.ndarray,
           data_root: Path, min_sensitivity: float) -> dict[str, Any]:
    """Threshold (the rule of :mod:`model.framing`) and validation metrics of a trained model."""
    val_prob = _predict(net, x_val, spec)
    cf = Counterfactuals(val, data_root, lambda films: _predict(net, resize_films(films, spec), spec))
    threshold = cf.threshold(y_val, val_prob, min_sensitivity)
    val_metrics = binary_metrics(y_val, val_prob, threshold)
    at_half = binary_metrics(y_val, val_prob, 0.5)
    print(f"validation at threshold {threshold:.4f}: " + _summary(val_metrics))
    print("validation at 0.5:          " + _summary(at_half))
    print(f"validation framing counterfactuals ({len(cf.labels)} films): pooled ROC AUC {cf.pooled_auc:.4f}")
    return {
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE.format(min_sensitivity),
        "preprocessing": spec.to_dict(),
        "validation_counts": class_counts(val),
        "validation_metrics": val_metrics,
        "validation_metrics_at_0.5": at_half,
        "validation_framing_auc": cf.pooled_auc,
    }


def publish(model_path: Path, metadata: dict[str, Any]) -> None:
    """Write the metadata beside the model and, with TensorFlow, the ONNX export."""
    save_metadata(model_path, metadata)
    print(f"saved {model_path} and {model_path.with_suffix('.json')}")
    if keras.backend.backend() == "tensorflow":
        onnx_file, diff = onnx_export.export(model_path)
        print(f"saved {onnx_file} (max abs difference to Keras {diff:.1e})")
    else:  # tf2onnx needs TensorFlow
        print(f"no ONNX export with the {keras.backend.backend()} backend: run python -m model.onnx_export")


def _train(config: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
           class_weight: dict[int, float], subtypes: list[np.ndarray]) -> tuple[dict[str, list[float]], float, list[float]]:
    """Fit with checkpointing of the best epoch into the output folder; returns the history, the
    training time and each epoch's training images per second. With ``config.subtype_weight`` the
    network also learns ``subtypes`` (train, validation: :data:`model.data.SUBTYPE_NAMES`), that
    loss weighted so; the binary output's metrics and loss are monitored all the same. With
    ``config.mixup`` the training batches are blended (:class:`model.pipeline.Mixup`)."""
    spec = config.spec
    aux = config.subtype_weight > 0
    train_aux, val_aux = (Subtypes(subtypes[0], class_weight), Subtypes(subtypes[1])) if aux else (None, None)
    mixup = Mixup(config.mixup, class_weight) if config.mixup > 0 else None
    train_ds = make_dataset(x_train, y_train, spec, config.batch_size, build_augmenter(config.augment, config.seed),
                            shuffle=True, seed=config.seed, window=normal_window(config.augment), subtypes=train_aux,
                            mixup=mixup)
    val_ds = make_dataset(x_val, y_val, spec, config.batch_size, subtypes=val_aux)
    with _strategy():
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
        net = build_model(config.backbone, config.input_size, config.weights, config.fine_tune_layers,
                          config.bn_momentum, full_fine_tune=config.full_fine_tune, subtypes=aux)
        schedule = _schedule(config, math.ceil(len(x_train) / config.batch_size) * config.epochs)
        binary = "binary_crossentropy"
        net.compile(optimizer=keras.optimizers.Adam(schedule),
                    loss={"pneumonia": binary, "subtype": "sparse_categorical_crossentropy"} if aux else binary,
                    loss_weights={"pneumonia": 1.0, "subtype": config.subtype_weight} if aux else None,
                    metrics={"pneumonia": metrics} if aux else metrics)
    if config.weights == "none":
        print("weights=none: training the whole network from scratch (fine-tune depth does not apply)")
    mode = "min" if config.monitor == "val_loss" else "max"
    monitor = config.monitor.replace("val_", "val_pneumonia_") if aux else config.monitor
    throughput = Throughput(len(x_train))
    callbacks = [
        throughput,
        keras.callbacks.EarlyStopping(monitor, mode=mode, patience=config.patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(config.output / "best_model.keras", monitor=monitor, mode=mode,
                                        save_best_only=True),
        keras.callbacks.CSVLogger(str(config.output / "history.csv")),
    ]
    t0 = time.perf_counter()
    history = net.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                      class_weight=None if aux or mixup else class_weight, callbacks=callbacks,
                      verbose=1 if sys.stdout.isatty() else 2)
    return history.history, time.perf_counter() - t0, throughput.rates


def _training_run(metadata_path: Path) -> dict[str, Any]:
    """Command, backend and speed of the run that trained a checkpoint, from the metadata it wrote
    (``None`` where it wrote none or did not record one)."""
    earlier = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    return {key: earlier.get(key) for key in
            ("training_command", "keras_backend", "train_seconds", "train_images_per_second")}


def _binary_history(history: dict[str, list[float]]) -> dict[str, list[float]]:
    """The history under the single-output names (``val_pneumonia_auc`` becomes ``val_auc``); with
    an auxiliary output, ``loss`` is the binary output's and the total becomes ``total_loss``."""
    if not any(key.startswith("pneumonia_") for key in history):
        return history
    renamed = {("total_" + key if key in ("loss", "val_loss") else key): values for key, values in history.items()}
    return {key.replace("pneumonia_", ""): values for key, values in renamed.items()}


def _read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` as written by CSVLogger, as Keras' ``History.history``."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "epoch"} if rows else {"loss": []}


def _schedule(config: TrainConfig, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The seed's near-constant ExponentialDecay, or a cosine decay to 1 % over the whole run."""
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps, alpha=0.01)
    return keras.optimizers.schedules.ExponentialDecay(config.learning_rate, 10000, 0.95, staircase=True)


def external_metrics(net: keras.Model, spec: PreprocessSpec, folder: Path, threshold: float) -> dict[str, Any]:
    """Metrics on an external folder, for the report only."""
    x, y, _ = load_arrays(list_samples(resolve_split_dir(folder, "external")), spec)
    metrics = binary_metrics(y, _predict(net, x, spec), threshold)
    print(f"external ({folder}): " + _summary(metrics))
    return metrics


def _summary(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {m[k]:.4f}" for k in ("accuracy", "sensitivity", "specificity", "roc_auc"))


def _training_samples(config: TrainConfig) -> list[Sample]:
    samples = list_samples(resolve_split_dir(config.data, "train"))
    if config.limit:
        rng = np.random.default_rng(config.seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), min(config.limit, len(samples)), replace=False))]
    return samples


def _refuse_seen_validation(config: TrainConfig, folds: bool = False) -> None:
    """A self-supervised backbone (:mod:`model.pretrain`) must not have seen this run's validation
    patients: only the same split of the whole train folder, never folds or ``--limit``, qualifies."""
    record = pretraining_record(config.weights)
    if record is not None and (folds or config.limit or (record["val_fraction"], record["split_seed"])
                               != (config.val_fraction, config.validation_seed)):
        raise DatasetError(f"{config.weights} was pre-trained on the training side of another split (val fraction "
                           f"{record['val_fraction']}, seed {record['split_seed']}): it saw validation patients")


def excluded_patients(path: Path) -> set[str]:
    """Patient ids (as :func:`model.data.patient_id` writes them), one per line; ``#`` starts a comment."""
    if not path.is_file():
        raise DatasetError(f"exclusion list not found: {path}")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line.upper() for line in lines if line}


def train_once(config: TrainConfig) -> dict[str, Any]:
    """One patient-level train/validation split, one model."""
    _refuse_seen_validation(config)
    train, val = patient_split(_training_samples(config), config.val_fraction, config.validation_seed)
    return _fit(config, train, val)


def run_folds(config: TrainConfig, k: int, only: int | None = None) -> dict[str, Any]:
    """Patient-grouped K-fold cross-validation: one model per fold, then the mean and spread of
    the metrics; or fold ``only`` alone (folds trained in parallel), without the summary."""
    _refuse_seen_validation(config, folds=True)
    folds = patient_folds(_training_samples(config), k, config.validation_seed)
    for i, held_out in enumerate(folds, 1):
        if only is not None and i != only:
            continue
        print(f"=== fold {i}/{k}")
        train = [s for j, fold in enumerate(folds, 1) if j != i for s in fold]
        _fit(replace(config, output=config.output / f"fold{i}"), train, held_out)
    if only is not None:  # the other folds may still be training: summarise_folds once they are done
        return {}
    return summarise_folds(config.output, k, config.command)


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample SD (0 for a single value) and the values themselves."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": values}


def summarise_folds(output: Path, k: int, command: str = "") -> dict[str, Any]:
    """Mean, SD and values of the headline metrics over the fold models found in ``output/fold*``."""
    results = [json.loads(path.read_text()) for i in range(1, k + 1)
               if (path := output / f"fold{i}" / "best_model.json").is_file()]
    summary: dict[str, Any] = {"folds": k, "folds_done": len(results), "command": command}
    for key in ("validation_metrics", "external_metrics"):
        if results and all(key in r for r in results):
            summary[key] = {name: _spread([r[key][name] for r in results])
                            for name in ("accuracy", "sensitivity", "specificity", "roc_auc", "threshold")}
    if results and all("validation_framing_auc" in r for r in results):
        summary["validation_framing_auc"] = _spread([r["validation_framing_auc"] for r in results])
    (output / "folds_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(output / "folds_summary.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["fold", "val_accuracy", "val_sensitivity", "val_specificity", "val_roc_auc"])
        for i, r in enumerate(results, 1):
            v = r["validation_metrics"]
            writer.writerow([i, v["accuracy"], v["sensitivity"], v["specificity"], v["roc_auc"]])
    print(json.dumps(summary.get("validation_metrics", {}), indent=2))
    return summary
