"""One run folder: its names, its model file and :class:`Run`, the artifacts read back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.constants import NEGATIVE, POSITIVE
from helpers.data.tasks import DEFAULT_TASK, get_task
from helpers.evaluation import choose_threshold, to_binary
from helpers.evaluation.multiclass import probability_columns
from helpers.evaluation.recalibration import Calibration

PREDICTION_COLUMNS = ("path", "patient_id", "split", "label", "y_true", "probability")
REQUIRED_COLUMNS = ("patient_id", "split", "y_true", "probability")
# helpers.models.hybrid's CLASSIFIER_FILES (XGBoost, logistic regression; model.json: logistic runs saved before joblib)
MODEL_FILES = {"model.keras": "keras", "model.ubj": "hybrid", "model.joblib": "hybrid", "model.json": "hybrid"}
NOT_RUN_FOLDERS = {"external", "notebooks", "report_files", "demo"}  # demo: the upload demo's own quick models
RETRAIN = "re-run the notebook that trains this model (02 CNN, 03 transfer, 04 hybrid), or delete the folder"


class RunError(ValueError):
    """A run folder that cannot be used; the message names the file, what is wrong and what to do."""


def run_name(model: str, task: str = DEFAULT_TASK) -> str:
    """The folder name of ``model`` trained for ``task``: ``cnn`` (the default task), ``cnn-three-class``."""
    get_task(task)
    return model if task == DEFAULT_TASK else f"{model}-{task}"


def model_file(folder: Path) -> Path | None:
    """``model.keras``, or a hybrid's classifier file when ``features.json`` is beside it; else None."""
    for name, kind in MODEL_FILES.items():
        if (Path(folder) / name).is_file() and (kind == "keras" or (Path(folder) / "features.json").is_file()):
            return Path(folder) / name
    return None


@dataclass
class Run:
    """One trained model's artifacts: ``outputs/<dataset>/<run name>/`` (see :mod:`helpers.runs`)."""

    dataset: str
    model: str
    path: Path
    metrics: dict
    predictions: pd.DataFrame
    dataset_info: dict | None = field(default=None, repr=False)
    _keras: object = field(default=None, repr=False, compare=False)  # the loaded Keras model, once asked for

    @property
    def name(self) -> str:
        """The folder name: the model's name, with the task's for a task other than the default."""
        return self.path.name

    @property
    def task(self) -> str:
        """The task it was trained for (runs saved before tasks existed: the default, covid-vs-normal)."""
        return str(self.metrics.get("task") or DEFAULT_TASK)

    @property
    def classes(self) -> tuple[str, ...]:
        """Its classes in class-index order (the positive class, COVID, last)."""
        return tuple(self.metrics.get("classes") or (NEGATIVE, POSITIVE))

    @property
    def multiclass(self) -> bool:
        return len(self.classes) > 2

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

    def probabilities(self, split: str) -> np.ndarray:
        """N x classes probabilities of one split, in class order (a binary run: ``[1 - p, p]``)."""
        rows = self.split(split)
        if self.multiclass:
            return rows[probability_columns(self.classes)].to_numpy(np.float64)
        p = rows["probability"].to_numpy(np.float64)
        return np.column_stack([1 - p, p])

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
