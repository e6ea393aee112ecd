"""The run artifacts ``outputs/<dataset>/<run name>/``: written and read here, nowhere else.

The run name is the model's (``cnn``, ``vgg16``, ``vgg16-xgboost``) for the default task and
``<model>-<task>`` for the others (:func:`run_name`: ``cnn-three-class``).

- ``metrics.json`` (required): ``model``, ``dataset``, ``task`` and ``classes`` (class-index order,
  COVID last; older runs without them read as covid-vs-normal), ``synthetic``, ``modality``, ``weights``,
  ``threshold`` (chosen on val), ``threshold_rule``, ``img_size``, ``gradcam_layer``, ``val`` and
  ``test`` metrics, ``test_fingerprint`` (:func:`helpers.data.test_fingerprint`), ``max_per_class``
  (the dataset's cap, if any), ``n_images``, ``epochs``, ``train_seconds``, ``params``, ``environment``,
  ``calibration`` (:mod:`helpers.evaluation.recalibration`: T fitted on val, test Brier before/after).
  The threshold, ``val``, ``test`` and ``calibration`` are COVID against the rest for every task; a
  three-class run adds ``multiclass`` (val and test: accuracy, macro AUC, per-class sensitivity and PPV,
  the confusion matrix; :func:`helpers.evaluation.multiclass.summary`);
- ``predictions.csv`` (required): ``path, patient_id, split, label, y_true, probability`` (val and test;
  ``y_true`` is 1 for COVID, ``probability`` is P(COVID)); a three-class run adds ``prob_<CLASS>`` per class;
- ``history.json``; a model file: ``model.keras`` (kind ``"keras"``), or ``model.ubj`` (XGBoost) /
  ``model.joblib`` (logistic) beside ``features.json`` (kind ``"hybrid"``, :mod:`helpers.models.hybrid`).
  Beside the runs: ``<dataset>/dataset*.json`` (:func:`helpers.data.dataset_info`; a run gets the record of
  its test set) and ``<dataset>/external/*.json`` (external validation).

Writing (:mod:`~helpers.runs.saving`): :func:`save_run` (``metrics.json`` last: a crash leaves an
unfinished run, never a mixed one), :func:`predictions_frame`, :func:`save_external`;
:func:`quick_cnn` (:mod:`~helpers.runs.quick`) is the one "train a quick CNN unless there is one".
Reading (:mod:`~helpers.runs.reading`), one policy: :func:`read_metrics`, :func:`read_run` and
:func:`load_history` raise :class:`RunError` (the message names the file, what is wrong and what to do);
:func:`read_runs`, :func:`run_folders` (for a model picker) and :func:`read_external` warn once per
unusable item and skip it. Imports without TensorFlow: Keras is imported inside the functions that need it.
"""

from helpers.runs.artifacts import (
    MODEL_FILES,
    NOT_RUN_FOLDERS,
    PREDICTION_COLUMNS,
    RETRAIN,
    Run,
    RunError,
    model_file,
    run_name,
)
from helpers.runs.quick import quick_cnn
from helpers.runs.reading import load_history, read_external, read_metrics, read_run, read_runs, run_folders
from helpers.runs.saving import predictions_frame, save_external, save_run

__all__ = [
    "MODEL_FILES", "NOT_RUN_FOLDERS", "PREDICTION_COLUMNS", "RETRAIN", "Run", "RunError", "load_history", "model_file",
    "predictions_frame", "quick_cnn", "read_external", "read_metrics", "read_run", "read_runs", "run_folders",
    "run_name", "save_external", "save_run",
]
