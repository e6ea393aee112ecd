"""The run artifacts ``outputs/<dataset>/<model>/``: written and read here, nowhere else.

- ``metrics.json`` (required): ``model``, ``dataset``, ``synthetic``, ``modality``, ``weights``,
  ``threshold`` (chosen on val), ``threshold_rule``, ``img_size``, ``gradcam_layer``, ``val`` and
  ``test`` metrics, ``test_fingerprint`` (:func:`helpers.data.test_fingerprint`), ``max_per_class``
  (the dataset's cap, if any), ``n_images``, ``epochs``, ``train_seconds``, ``params``, ``environment``,
  ``calibration`` (:mod:`helpers.evaluation.recalibration`: T fitted on val, test Brier before/after);
- ``predictions.csv`` (required): ``path, patient_id, split, label, y_true, probability`` (val and test);
- ``history.json``; a model file: ``model.keras`` (kind ``"keras"``), or ``model.ubj`` (XGBoost) /
  ``model.joblib`` (logistic) beside ``features.json`` (kind ``"hybrid"``, :mod:`helpers.models.hybrid`).
  Beside the runs: ``<dataset>/dataset*.json`` (:func:`helpers.data.dataset_info`; a run gets the record of
  its test set) and ``<dataset>/external/*.json`` (external validation).

Writing: :func:`save_run` (``metrics.json`` last: a crash leaves an unfinished run, never a mixed one),
:func:`predictions_frame`, :func:`save_external`; :func:`quick_cnn` is the one "train a quick CNN
unless there is one". Reading, one policy: :func:`read_metrics`, :func:`read_run` and :func:`load_history`
raise :class:`RunError` (the message names the file, what is wrong and what to do); :func:`read_runs`,
:func:`run_folders` (for a model picker) and :func:`read_external` warn once per unusable item and skip it.
Imports without TensorFlow: Keras is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import paths
from helpers.constants import POSITIVE
from helpers.data import dataset_info
from helpers.environment import versions
from helpers.evaluation import binary_metrics, choose_threshold, to_binary
from helpers.evaluation.recalibration import Calibration
from helpers.files import atomic_path, atomic_write, write_text

PREDICTION_COLUMNS = ("path", "patient_id", "split", "label", "y_true", "probability")
REQUIRED_COLUMNS = ("patient_id", "split", "y_true", "probability")
# helpers.models.hybrid's CLASSIFIER_FILES (XGBoost, logistic regression; model.json: logistic runs saved before joblib)
MODEL_FILES = {"model.keras": "keras", "model.ubj": "hybrid", "model.joblib": "hybrid", "model.json": "hybrid"}
NOT_RUN_FOLDERS = {"external", "notebooks", "report_files", "demo"}  # demo: the upload demo's own quick models
# Exact floats from CSV: pandas 2 (Colab) needs float_precision="round_trip"; pandas 3 is exact and deprecates it.
EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
RETRAIN = "re-run the notebook that trains this model (02 CNN, 03 transfer, 04 hybrid), or delete the folder"


class RunError(ValueError):
    """A run folder that cannot be used; the message names the file, what is wrong and what to do."""


@dataclass
class Run:
    """One trained model's artifacts: ``outputs/<dataset>/<model>/`` (see the module docstring)."""

    dataset: str
    model: str
    path: Path
    metrics: dict
    predictions: pd.DataFrame
    dataset_info: dict | None = field(default=None, repr=False)
    _keras: object = field(default=None, repr=False, compare=False)  # the loaded Keras model, once asked for

    @property
    def synthetic(self) -> bool:
        return bool(self.metrics.get("synthetic") or (self.dataset_info or {}).get("synthetic"))

    @property
    def weights(self) -> str | None:
        return self.metrics.get("weights")

    @property
    def test_fingerprint(self) -> str | None:
        """Which test images were scored (None for runs saved before fingerprints were recorded)."""
        return self.metrics.get("test_fingerprint")

    @property
    def model_file(self) -> Path | None:
        return model_file(self.path)

    @property
    def kind(self) -> str | None:
        """``"keras"``, ``"hybrid"``, or None when the folder holds no model file."""
        file = self.model_file
        return MODEL_FILES[file.name] if file else None

    @property
    def calibration(self) -> Calibration | None:
        """The temperature fitted on val when the run was saved (None for older runs)."""
        return Calibration.from_dict(self.metrics.get("calibration"))

    @property
    def threshold(self) -> float:
        return self._threshold_and_rule()[0]

    @property
    def threshold_rule(self) -> str:
        return self._threshold_and_rule()[1]

    def _threshold_and_rule(self) -> tuple[float, str]:
        """The stored threshold (chosen on val); else Youden's J recomputed on the val rows; else 0.5."""
        if self.metrics.get("threshold") is not None:
            return float(self.metrics["threshold"]), str(self.metrics.get("threshold_rule") or "stored")
        val = self.split("val")
        if 0 < to_binary(val["y_true"]).sum() < len(val):
            return choose_threshold(val["y_true"], val["probability"]), "youden on val, recomputed"
        return 0.5, "default 0.5, none stored"

    def split(self, name: str) -> pd.DataFrame:
        """The prediction rows of one split (``val`` or ``test``)."""
        return self.predictions[self.predictions["split"] == name]

    def keras_model(self):
        """The run's Keras model, loaded once (without optimizer state); RunError for a hybrid or no model."""
        if self._keras is None:
            if self.kind != "keras":
                what = "an XGBoost hybrid: load it with helpers.models.hybrid.load_hybrid" if self.kind else RETRAIN
                raise RunError(f"{self.path}: no model.keras in this folder ({what})")
            import keras

            import helpers.models  # noqa: F401 - registers the course's custom layers for loading

            self._keras = keras.models.load_model(self.model_file, compile=False)
        return self._keras


def model_file(folder: Path) -> Path | None:
    """``model.keras``, or a hybrid's classifier file when ``features.json`` is beside it; else None."""
    for name, kind in MODEL_FILES.items():
        if (Path(folder) / name).is_file() and (kind == "keras" or (Path(folder) / "features.json").is_file()):
            return Path(folder) / name
    return None


# ------------------------------------------------------------------------------ writing


def predictions_frame(image_set, probabilities: dict[str, np.ndarray]) -> pd.DataFrame:
    """``path, patient_id, split, label, y_true, probability`` for the splits given.

    ``image_set`` is anything with a ``manifest`` in image order (an ImageSet, hybrid Features).
    """
    parts = []
    for split, prob in probabilities.items():
        rows = image_set.manifest[image_set.manifest["split"] == split]
        parts.append(rows[["path", "patient_id", "split", "label"]].assign(
            y_true=(rows["label"] == POSITIVE).astype(int).to_numpy(),
            probability=np.asarray(prob, np.float64)))  # float64: the CSV round trip keeps every value exact
    return pd.concat(parts, ignore_index=True)


def _root(output_dir) -> Path:
    return Path(output_dir) if output_dir is not None else paths.output_dir()


def save_run(
    name: str, *, dataset, predictions: pd.DataFrame, history: dict | None = None, model=None,
    train_seconds: float = 0.0, weights: str | None = None, img_size: int | None = None,
    gradcam_layer: str | None = None, n_parameters: int | None = None, params: dict | None = None,
    extra: dict | None = None, output_dir: Path | None = None,
) -> dict:
    """Choose the threshold on val, compute val and test metrics, write every artifact; returns metrics.json.

    ``model`` is a Keras model (saved as ``model.keras``) or None (a hybrid saves its own).
    ``output_dir`` defaults to the course's outputs folder.
    """
    folder = _root(output_dir) / dataset.name / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)  # until the new one is written, the run is unfinished
    val, test = (predictions[predictions["split"] == s] for s in ("val", "test"))
    threshold = choose_threshold(val["y_true"], val["probability"], rule="youden")
    calibration = Calibration.fit(val["y_true"], val["probability"])
    counts = dataset.manifest["split"].value_counts()
    metrics = {
        "model": name,
        "dataset": dataset.name,
        "synthetic": bool(dataset.synthetic),
        "modality": dataset.modality,
        "weights": weights,
        "threshold": float(threshold),
        "threshold_rule": "youden (validation split)",
        "img_size": img_size,
        "gradcam_layer": gradcam_layer,
        "val": binary_metrics(val["y_true"], val["probability"], threshold),
        "test": binary_metrics(test["y_true"], test["probability"], threshold),
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
    path = _root(output_dir) / record["trained_on"] / "external" / f"{record['model']}-on-{record['evaluated_on']}.json"
    write_text(path, json.dumps(record, indent=2, default=str))
    return path


# ------------------------------------------------------------------------------ reading


def _read_json(path: Path, *, fix: str = RETRAIN):
    if not path.is_file():
        raise RunError(f"{path} is missing (did the run that writes it finish?); {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunError(f"{path} is not readable JSON ({error}); {fix}") from error


def read_metrics(folder: Path) -> dict:
    """The run's ``metrics.json``; RunError when it is missing, unreadable, not an object or its threshold not a number."""
    path = Path(folder) / "metrics.json"
    metrics = _read_json(path)
    if not isinstance(metrics, dict):
        raise RunError(f"{path} holds a JSON {type(metrics).__name__}, not an object; {RETRAIN}")
    threshold = metrics.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or not math.isfinite(threshold)):
        raise RunError(f"{path}: the threshold {threshold!r} is not a number; {RETRAIN}")
    return metrics


def load_history(folder: Path) -> dict:
    """The run's ``history.json`` (loss and metrics per epoch); RunError when it cannot be read."""
    history = _read_json(Path(folder) / "history.json")
    if not isinstance(history, dict):
        raise RunError(f"{Path(folder) / 'history.json'} holds no JSON object; {RETRAIN}")
    return history


def _read_predictions(folder: Path) -> pd.DataFrame:
    path = folder / "predictions.csv"
    if not path.is_file():
        raise RunError(f"{path} is missing (did its training finish?); {RETRAIN}")
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str, "path": str}, **EXACT_FLOATS)
    except (OSError, ValueError) as error:
        raise RunError(f"{path} is not a readable CSV ({error}); {RETRAIN}") from error
    lacking = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if lacking:
        raise RunError(f"{path} lacks the column(s) {lacking} (expected {list(PREDICTION_COLUMNS)}); {RETRAIN}")
    if not all(pd.api.types.is_numeric_dtype(frame[column]) for column in ("y_true", "probability")):
        raise RunError(f"{path}: y_true and probability must be numbers; {RETRAIN}")
    return frame


def _dataset_info(folder: Path, metrics: dict) -> dict | None:
    """The ``dataset.json`` record (:func:`helpers.data.dataset_info`) of the run's test set, else of its cap."""
    name, root = folder.parent.name, folder.parent.parent
    if metrics.get("test_fingerprint"):
        return dataset_info(name, fingerprint=metrics["test_fingerprint"], root=root)
    return dataset_info(name, metrics.get("max_per_class"), root=root)


def read_run(folder: Path) -> Run:
    """The run in ``folder`` (``outputs/<dataset>/<model>/``); RunError when it cannot be used."""
    folder = Path(folder)
    metrics = read_metrics(folder)
    return Run(dataset=str(metrics.get("dataset") or folder.parent.name), model=str(metrics.get("model") or folder.name),
               path=folder, metrics=metrics, predictions=_read_predictions(folder),
               dataset_info=_dataset_info(folder, metrics))


def _folders(parent: Path) -> list[Path]:
    """Sub-folders of ``parent`` that can hold runs (hidden ones, such as .ipynb_checkpoints, and NOT_RUN_FOLDERS not)."""
    return sorted(p for p in parent.glob("*") if p.is_dir() and p.name not in NOT_RUN_FOLDERS and p.name[0] != ".")


def _candidates(output_dir, dataset: str | None) -> Iterator[Path]:
    """Every ``<dataset>/<model>/`` folder under the outputs."""
    root = _root(output_dir)
    for dataset_folder in [root / dataset] if dataset else _folders(root):
        yield from _folders(dataset_folder)


def read_runs(output_dir: Path | None = None, dataset: str | None = None) -> list[Run]:
    """Every usable run under the outputs folder (or of one ``dataset``); each unusable one is warned about once and skipped."""
    runs = []
    for folder in _candidates(output_dir, dataset):
        try:
            runs.append(read_run(folder))
        except RunError as error:
            warnings.warn(f"skipped: {error}", stacklevel=2)
    return runs


def run_folders(output_dir: Path | None = None, dataset: str | None = None, *, kind: str | None = None) -> list[Path]:
    """Run folders holding a model file (of ``kind``, ``"keras"`` or ``"hybrid"``) and a readable ``metrics.json``.

    For a model picker; a folder whose ``metrics.json`` is unusable is warned about once and skipped.
    """
    found = []
    for folder in _candidates(output_dir, dataset):
        file = model_file(folder)
        if file is None or kind not in (None, MODEL_FILES[file.name]):
            continue
        try:
            read_metrics(folder)
        except RunError as error:
            warnings.warn(f"skipped: {error}", stacklevel=2)
            continue
        found.append(folder)
    return found


def read_external(output_dir: Path | None = None) -> list[dict]:
    """Every external validation record (``outputs/*/external/*.json``), each with the ``file`` it came from.

    A file holds one record or a list of them; unreadable files and entries that are not
    objects are warned about and skipped.
    """
    records = []
    for path in sorted(_root(output_dir).glob("*/external/*.json")):
        try:
            content = _read_json(path, fix="run the external validation of notebook 05 again, or delete the file")
        except RunError as error:
            warnings.warn(f"skipped: {error}", stacklevel=2)
            continue
        for record in content if isinstance(content, list) else [content]:
            if isinstance(record, dict):
                records.append({"file": f"{path.parent.parent.name}/external/{path.name}", **record})
            else:
                warnings.warn(f"skipped an entry of {path}: {record!r} is not a JSON object", stacklevel=2)
    return records


# ------------------------------------------------------------------------------ quick CNN


def _check_reusable(run: Run, dataset, size: int) -> None:
    """RunError when an existing run cannot stand in for a quick CNN of ``dataset`` at ``size`` px."""
    problems = []
    if run.kind != "keras":
        problems.append("it holds no Keras model")
    if run.metrics.get("img_size") not in (None, size):
        problems.append(f"its model takes {run.metrics['img_size']}px images, these are {size}px")
    wanted = getattr(dataset, "test_fingerprint", None)
    if None not in (run.test_fingerprint, wanted) and run.test_fingerprint != wanted:
        problems.append("it was scored on another test split (the dataset changed: other options or cap)")
    if problems:
        raise RunError(f"{run.path} cannot be reused: {'; '.join(problems)}. "
                       "Delete that folder to train a new model there, or pass another name=")


def quick_cnn(
    dataset, image_set, *, output_dir: Path | None = None, name: str = "cnn", epochs: int = 4,
    batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 42, verbose: int | str = 0,
) -> Run:
    """The run ``<output_dir>/<dataset>/<name>/`` if a usable one is there, else a small CNN trained and saved there.

    Nothing usable is ever overwritten: a run of another input size or test split raises
    :class:`RunError`. An unfinished or broken run is replaced. Training is ``build_cnn`` +
    :func:`helpers.models.train.fit` (selection on val only). One line says what happened.
    """
    folder = _root(output_dir) / dataset.name / name
    size = int(image_set.images.shape[1])
    if folder.is_dir():
        try:
            run = read_run(folder)
        except RunError as error:
            print(f"{error}\nTraining a new one there.")
        else:
            _check_reusable(run, dataset, size)
            print(f"Using the CNN already trained in {folder} (delete the folder to train it again).")
            return run
    from helpers.environment import seed_everything
    from helpers.models import build_cnn
    from helpers.models.train import evaluate_and_save, fit

    seed_everything(seed)
    model = build_cnn(size, seed=seed)
    history = fit(model, image_set, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                  verbose=verbose)
    evaluate_and_save(model, image_set, dataset, name=name, history=history, weights="scratch",
                      params={"epochs": epochs, "batch_size": batch_size, "quick": True}, output_dir=output_dir)
    print(f"Trained a quick {size}px CNN on {dataset.name} ({len(history.get('loss', []))} epochs, "
          f"{sum(history.get('seconds', [])):.0f} s); saved to {folder}.")
    run = read_run(folder)
    run._keras = model
    return run
