"""Honest evaluation: metrics, patient-level bootstrap intervals, thresholds, baselines, comparison tables.

- :mod:`~helpers.evaluation.metrics`: threshold metrics and AUC, calibration and Brier score,
  predictive values at other prevalences, the majority baseline, thresholds chosen on validation.
- :mod:`~helpers.evaluation.bootstrap`: the one patient-level bootstrap (intervals resample patients).
- :mod:`~helpers.evaluation.tables`: runs (from :func:`helpers.runs.read_runs`) compared on one test
  set next to the majority baseline, tasks side by side, and their display.
- :mod:`~helpers.evaluation.multiclass`: three classes (confusion, per-class intervals, macro AUC).

No TensorFlow here.
"""

from helpers.evaluation.bootstrap import bootstrap_ci, metrics_with_ci, patient_draws
from helpers.evaluation.metrics import (
    METRICS,
    PREVALENCES,
    binary_metrics,
    brier_score,
    calibration,
    choose_threshold,
    majority_baseline,
    majority_class,
    negative_name,
    predictive_values,
    to_binary,
)
from helpers.evaluation.tables import (
    BASELINE,
    DIFFERENT,
    DISPLAY_METRICS,
    SAME,
    UNKNOWN,
    comparison_table,
    format_comparison,
    format_interval,
    format_tasks,
    reference_run,
    task_comparison,
)

__all__ = [
    "BASELINE", "DIFFERENT", "DISPLAY_METRICS", "METRICS", "PREVALENCES", "SAME", "UNKNOWN", "binary_metrics",
    "bootstrap_ci", "brier_score", "calibration", "choose_threshold", "comparison_table", "format_comparison",
    "format_interval", "format_tasks", "majority_baseline", "majority_class", "metrics_with_ci", "negative_name",
    "patient_draws", "predictive_values", "reference_run", "task_comparison", "to_binary",
]
