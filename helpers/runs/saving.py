"""Writing a run: :func:`predictions_frame`, :func:`save_run`, :func:`save_external`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import paths
from helpers.constants import POSITIVE
from helpers.data.tasks import DEFAULT_TASK
from helpers.environment import versions
from helpers.evaluation import binary_metrics, choose_threshold, multiclass
from helpers.evaluation.recalibration import Calibration
from helpers.files import atomic_path, atomic_write, write_text
from helpers.runs.artifacts import run_name


def output_root(output_dir) -> Path:
    return Path(output_dir) if output_dir is not None else paths.output_dir()


def predictions_frame(
    image_set, probabilities: dict[str, np.ndarray], classes: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """``path, patient_id, split, label, y_true, probability`` for the splits given.

    ``image_set`` is anything with a ``manifest`` in image order (an ImageSet, hybrid Features).
    A value is an N vector of P(COVID), or an N x classes matrix (``classes`` in class-index order):
    then one ``prob_<CLASS>`` column per class is added and ``probability`` is P(COVID).
    """
    parts = []
    for split, prob in probabilities.items():
        rows = image_set.manifest[image_set.manifest["split"] == split]
        prob = np.asarray(prob, np.float64)  # float64: the CSV round trip keeps every value exact
        columns = {}
        if prob.ndim == 2:
            if classes is None or len(classes) != prob.shape[1]:
                raise ValueError(f"{prob.shape[1]} probability columns need classes= of that many, got {classes}")
            columns = dict(zip(multiclass.probability_columns(classes), prob.T, strict=True))
            prob = prob[:, list(classes).index(POSITIVE)]
        parts.append(rows[["path", "patient_id", "split", "label"]].assign(
            y_true=(rows["label"] == POSITIVE).astype(int).to_numpy(), probability=prob, **columns))
    return pd.concat(parts, ignore_index=True)


def _multiclass_metrics(predictions: pd.DataFrame, classes: tuple[str, ...]) -> dict:
    named = predictions.assign(y_true=predictions["label"])
    return {s: multiclass.summary(named[named["split"] == s], classes) for s in ("val", "test")}


def save_run(
    name: str, *, dataset, predictions: pd.DataFrame, history: dict | None = None, model=None,
    train_seconds: float = 0.0, weights: str | None = None, img_size: int | None = None,
    gradcam_layer: str | None = None, n_parameters: int | None = None, params: dict | None = None,
    extra: dict | None = None, output_dir: Path | None = None,
) -> dict:
    """Choose the threshold on val, compute val and test metrics, write every artifact; returns metrics.json.

    The folder is ``<output_dir>/<dataset>/<run_name(name, dataset.task)>/``. The binary metrics are
    COVID against the rest for every task; a multi-class run adds ``multiclass`` (val and test).
    ``model`` is a Keras model (saved as ``model.keras``) or None (a hybrid saves its own).
    ``output_dir`` defaults to the course's outputs folder.
    """
    task = getattr(dataset, "task", DEFAULT_TASK)
    classes = tuple(getattr(dataset, "classes", ())) or None
    folder = output_root(output_dir) / dataset.name / run_name(name, task)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)  # until the new one is written, the run is unfinished
    val, test = (predictions[predictions["split"] == s] for s in ("val", "test"))
    threshold = choose_threshold(val["y_true"], val["probability"], rule="youden")
    calibration = Calibration.fit(val["y_true"], val["probability"])
    counts = dataset.manifest["split"].value_counts()
    metrics = {
        "model": name,
        "dataset": dataset.name,
        "task": task,
        "classes": list(classes or ()),
        "synthetic": bool(dataset.synthetic),
        "modality": dataset.modality,
        "weights": weights,
        "threshold": float(threshold),
        "threshold_rule": "youden (validation split)",
        "img_size": img_size,
        "gradcam_layer": gradcam_layer,
        "val": binary_metrics(val["y_true"], val["probability"], threshold),
        "test": binary_metrics(test["y_true"], test["probability"], threshold),
        **({"multiclass": _multiclass_metrics(predictions, classes)} if classes and len(classes) > 2 else {}),
        "calibration": calibration.summary(test["y_true"], test["probability"]),
        "test_fingerprint": getattr(dataset, "test_fingerprint", None),
        "max_per_class": getattr(dataset, "max_per_class", None),
        "train_seconds": round(float(train_seconds), 2),
        "n_images": {s: int(counts.get(s, 0)) for s in ("train", "val", "test")},
        "epochs": len((history or {}).get("loss", [])),
        "n_parameters": n_parameters if n_parameters is not None else (model.count_params() if model else None),
        "params": params or {},
        "environment": versions(),
        **(extra or {}),
    }
    if model is not None:
        with atomic_path(folder / "model.keras", suffix=".part.keras") as tmp:
            model.save(tmp)
    write_text(folder / "history.json", json.dumps(history or {}, indent=1))
    with atomic_write(folder / "predictions.csv", "w", encoding="utf-8", newline="") as file:
        predictions.to_csv(file, index=False)
    write_text(folder / "metrics.json", json.dumps(metrics, indent=2, default=str))
    return metrics


def save_external(record: dict, *, output_dir: Path | None = None) -> Path:
    """Write an external validation record to ``outputs/<trained_on>/external/<model>-on-<evaluated_on>.json``."""
    path = output_root(output_dir) / record["trained_on"] / "external" / f"{record['model']}-on-{record['evaluated_on']}.json"
    write_text(path, json.dumps(record, indent=2, default=str))
    return path
