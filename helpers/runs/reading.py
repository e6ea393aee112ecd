"""Reading runs, one policy: single files raise :class:`RunError`; listings warn once per unusable item and skip it."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from helpers.data import dataset_info
from helpers.data.tasks import DEFAULT_TASK
from helpers.runs.artifacts import (
    MODEL_FILES,
    NOT_RUN_FOLDERS,
    PREDICTION_COLUMNS,
    REQUIRED_COLUMNS,
    RETRAIN,
    Run,
    RunError,
    model_file,
)
from helpers.runs.saving import output_root

# Exact floats from CSV: pandas 2 (Colab) needs float_precision="round_trip"; pandas 3 is exact and deprecates it.
EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


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


def _read_predictions(folder: Path, classes: tuple[str, ...]) -> pd.DataFrame:
    path = folder / "predictions.csv"
    if not path.is_file():
        raise RunError(f"{path} is missing (did its training finish?); {RETRAIN}")
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str, "path": str}, **EXACT_FLOATS)
    except (OSError, ValueError) as error:
        raise RunError(f"{path} is not a readable CSV ({error}); {RETRAIN}") from error
    required = [*REQUIRED_COLUMNS, *(f"prob_{label}" for label in classes if len(classes) > 2)]
    lacking = [column for column in required if column not in frame.columns]
    if lacking:
        raise RunError(f"{path} lacks the column(s) {lacking} (expected {list(PREDICTION_COLUMNS)}"
                       f"{' and one prob_<CLASS> per class' if len(classes) > 2 else ''}); {RETRAIN}")
    if not all(pd.api.types.is_numeric_dtype(frame[column]) for column in required if column not in ("patient_id", "split")):
        raise RunError(f"{path}: y_true and the probabilities must be numbers; {RETRAIN}")
    return frame


def _dataset_info(folder: Path, metrics: dict) -> dict | None:
    """The ``dataset.json`` record (:func:`helpers.data.dataset_info`) of the run's test set, else of its cap."""
    name, root = folder.parent.name, folder.parent.parent
    if metrics.get("test_fingerprint"):
        return dataset_info(name, fingerprint=metrics["test_fingerprint"], root=root)
    return dataset_info(name, metrics.get("max_per_class"), root=root)


def read_run(folder: Path) -> Run:
    """The run in ``folder`` (``outputs/<dataset>/<run name>/``); RunError when it cannot be used."""
    folder = Path(folder)
    metrics = read_metrics(folder)
    run = Run(dataset=str(metrics.get("dataset") or folder.parent.name), model=str(metrics.get("model") or folder.name),
              path=folder, metrics=metrics, predictions=pd.DataFrame(), dataset_info=_dataset_info(folder, metrics))
    run.predictions = _read_predictions(folder, run.classes)
    return run


def _folders(parent: Path) -> list[Path]:
    """Sub-folders of ``parent`` that can hold runs (hidden ones, such as .ipynb_checkpoints, and NOT_RUN_FOLDERS not)."""
    return sorted(p for p in parent.glob("*") if p.is_dir() and p.name not in NOT_RUN_FOLDERS and p.name[0] != ".")


def _candidates(output_dir, dataset: str | None) -> Iterator[Path]:
    """Every ``<dataset>/<run name>/`` folder under the outputs."""
    root = output_root(output_dir)
    for dataset_folder in [root / dataset] if dataset else _folders(root):
        yield from _folders(dataset_folder)


def read_runs(output_dir: Path | None = None, dataset: str | None = None, task: str | None = None) -> list[Run]:
    """Every usable run under the outputs folder (of one ``dataset``, of one ``task``; None: all).

    Each unusable run is warned about once and skipped.
    """
    runs = []
    for folder in _candidates(output_dir, dataset):
        try:
            run = read_run(folder)
        except RunError as error:
            warnings.warn(f"skipped: {error}", stacklevel=2)
            continue
        if task in (None, run.task):
            runs.append(run)
    return runs


def run_folders(
    output_dir: Path | None = None, dataset: str | None = None, *, kind: str | None = None, task: str | None = None,
) -> list[Path]:
    """Run folders holding a model file (of ``kind``, ``"keras"`` or ``"hybrid"``; of ``task``) and a readable ``metrics.json``.

    For a model picker; a folder whose ``metrics.json`` is unusable is warned about once and skipped.
    """
    found = []
    for folder in _candidates(output_dir, dataset):
        file = model_file(folder)
        if file is None or kind not in (None, MODEL_FILES[file.name]):
            continue
        try:
            metrics = read_metrics(folder)
        except RunError as error:
            warnings.warn(f"skipped: {error}", stacklevel=2)
            continue
        if task in (None, metrics.get("task") or DEFAULT_TASK):
            found.append(folder)
    return found


def read_external(output_dir: Path | None = None) -> list[dict]:
    """Every external validation record (``outputs/*/external/*.json``), each with the ``file`` it came from.

    A file holds one record or a list of them; unreadable files and entries that are not
    objects are warned about and skipped.
    """
    records = []
    for path in sorted(output_root(output_dir).glob("*/external/*.json")):
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
