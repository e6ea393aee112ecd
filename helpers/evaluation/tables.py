"""Comparison tables: every run of a dataset next to the majority baseline, each metric with its patient CI.

Every metric is COVID against the rest (``probability``, the stored validation threshold), for every task;
runs are grouped by dataset and task (each task has its own test images and baseline).
Runs are compared only on one test set. Each run records a fingerprint of its test split
(``metrics.json`` ``test_fingerprint``); per dataset the fingerprint most runs share is the
reference, the baseline is scored on a reference run's test rows, and a run scored on other
test rows is flagged loudly (column ``test_set``, a warning, ``attrs["different_test_set"]``).
Runs saved before fingerprints were recorded are ``unknown``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from helpers.constants import POSITIVE
from helpers.evaluation.bootstrap import metrics_with_ci
from helpers.evaluation.metrics import majority_class, negative_name, to_binary

if TYPE_CHECKING:
    from helpers.runs import Run

BASELINE = "majority baseline"
SAME, DIFFERENT, UNKNOWN = "same", "DIFFERENT", "unknown"


def _train_labels(run: Run) -> tuple[np.ndarray, str]:
    """Training labels for the majority baseline: from the run's dataset.json record, else its val rows.

    The split is stratified by label, so the val majority is the train majority. 1 = COVID, 0 = any other class.
    """
    info = run.dataset_info or {}
    train = (info.get("splits") or {}).get("train") or {}
    if any(train.get(label) is not None for label in run.classes):
        counts = [int(train.get(label) or 0) for label in run.classes]
        return np.repeat([int(label == POSITIVE) for label in run.classes], counts), "train"
    return to_binary(run.split("val")["y_true"]), "val"


def _table_row(predictions: pd.DataFrame, threshold: float, *, n_boot: int, seed: int, alpha: float) -> dict:
    row = {"n_images": len(predictions), "n_patients": predictions["patient_id"].nunique()}
    table = metrics_with_ci(predictions, threshold, n_boot=n_boot, seed=seed, alpha=alpha)
    for name, values in table.iterrows():
        row.update({name: values["estimate"], f"{name}_low": values["low"], f"{name}_high": values["high"]})
    return row


def reference_run(runs: list[Run]) -> Run:
    """The first run whose test fingerprint most runs share (the first run when none has one)."""
    known = Counter(run.test_fingerprint for run in runs if run.test_fingerprint)
    if not known:
        return runs[0]
    common = known.most_common(1)[0][0]
    return next(run for run in runs if run.test_fingerprint == common)


def _test_set(fingerprint: str | None, reference: str | None) -> str:
    if not fingerprint or not reference:
        return UNKNOWN
    return SAME if fingerprint == reference else DIFFERENT


def _baseline_row(reference: Run, split: str, *, n_boot: int, seed: int, alpha: float) -> dict:
    labels, source = _train_labels(reference)
    majority = majority_class(labels)
    rows = reference.split(split).assign(probability=float(majority))
    return {
        "dataset": reference.dataset,
        "task": reference.task,
        "model": BASELINE,
        "synthetic": reference.synthetic,
        "weights": None,
        "threshold": np.nan,
        "threshold_rule": f"always {POSITIVE if majority else negative_name(reference.classes)} (majority of {source})",
        "test_set": _test_set(reference.test_fingerprint, reference.test_fingerprint),
        **_table_row(rows, 0.5, n_boot=n_boot, seed=seed, alpha=alpha),
    }


def comparison_table(
    runs: list[Run], *, split: str = "test", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per model plus the majority baseline per dataset and task, each metric with its patient-bootstrap CI.

    Numeric columns: ``auc, auc_low, auc_high, sensitivity, ...``; ``test_set`` says whether a
    run was scored on its dataset's reference test rows (see the module docstring). See
    :func:`format_comparison` for the display version. Thresholds are the stored, validation-chosen ones.
    """
    rows, different = [], []
    by_dataset: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.split(split).empty:
            warnings.warn(f"{run.dataset}/{run.name} has no {split} predictions; left out", stacklevel=2)
            continue
        by_dataset.setdefault((run.dataset, run.task), []).append(run)
    for dataset_runs in by_dataset.values():
        reference = reference_run(dataset_runs)
        for run in dataset_runs:
            test_set = _test_set(run.test_fingerprint, reference.test_fingerprint)
            if test_set == DIFFERENT:
                different.append(f"{run.dataset}/{run.name}")
            rows.append({
                "dataset": run.dataset,
                "task": run.task,
                "model": run.model,
                "synthetic": run.synthetic,
                "weights": run.weights,
                "threshold": run.threshold,
                "threshold_rule": run.threshold_rule,
                "test_set": test_set,
                **_table_row(run.split(split), run.threshold, n_boot=n_boot, seed=seed, alpha=alpha),
            })
        rows.append(_baseline_row(reference, split, n_boot=n_boot, seed=seed, alpha=alpha))
    if different:
        warnings.warn(
            f"{', '.join(different)}: scored on other test images than the other runs of the dataset (another "
            "cap, options or data), so their numbers cannot be compared with the rest; train them again on the "
            "same data", stacklevel=2)
    table = pd.DataFrame(rows)
    table.attrs.update(split=split, n_boot=n_boot, alpha=alpha, different_test_set=different)
    return table


def task_comparison(
    runs: list[Run], *, split: str = "test", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Tasks side by side: per run, COVID against the rest at the stored validation threshold, with intervals.

    The columns of :func:`comparison_table` (no baseline rows) plus, for a three-class run, the macro
    one-vs-rest AUC with its interval (``macro_auc``, ``macro_auc_low``, ``macro_auc_high``; NaN for binary runs).
    """
    from helpers.evaluation.multiclass import per_class_with_ci, run_predictions

    rows = []
    for run in runs:
        if run.split(split).empty:
            continue
        macro = (np.nan,) * 3
        if run.multiclass:
            macro = per_class_with_ci(run_predictions(run, split), run.classes, n_boot=n_boot, seed=seed,
                                      alpha=alpha).attrs["macro_auc"]
        rows.append({"dataset": run.dataset, "task": run.task, "model": run.model, "threshold": run.threshold,
                     **_table_row(run.split(split), run.threshold, n_boot=n_boot, seed=seed, alpha=alpha),
                     **dict(zip(("macro_auc", "macro_auc_low", "macro_auc_high"), macro))})
    table = pd.DataFrame(rows)
    table.attrs.update(split=split, n_boot=n_boot, alpha=alpha)
    return table


def format_tasks(table: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """The display version of :func:`task_comparison`."""
    shown = {
        "Task": table["task"], "Model": table["model"],
        **{title: [format_interval(row[name], row[f"{name}_low"], row[f"{name}_high"], digits=digits)
                   for _, row in table.iterrows()]
           for name, title in (("auc", "AUC, COVID vs rest"), ("sensitivity", "Sensitivity"),
                               ("specificity", "Specificity"), ("macro_auc", "Macro AUC (3 classes)"))},
        "Threshold (val)": table["threshold"].round(digits),
        "Images / patients": [f"{row['n_images']} / {row['n_patients']}" for _, row in table.iterrows()],
    }
    return pd.DataFrame(shown)


def format_interval(estimate: float, low: float, high: float, *, digits: int = 2) -> str:
    """``"0.91 (0.85-0.96)"``; ``"n/a"`` when undefined."""
    if estimate is None or np.isnan(estimate):
        return "n/a"
    if np.isnan(low) or np.isnan(high) or low == high == estimate:
        return f"{estimate:.{digits}f}"
    return f"{estimate:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


DISPLAY_METRICS = {
    "auc": "AUC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "accuracy": "Accuracy",
}


def format_comparison(table: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """The display version of :func:`comparison_table`: metrics as ``"estimate (low-high)"`` strings.

    A ``Task`` column appears when the table holds runs of several tasks.
    """
    rows, several_tasks = [], table["task"].nunique() > 1 if "task" in table else False
    for _, row in table.iterrows():
        shown = {"Dataset": row["dataset"], **({"Task": row["task"]} if several_tasks else {}), "Model": row["model"]}
        for name, title in DISPLAY_METRICS.items():
            if name in row:
                shown[title] = format_interval(row[name], row[f"{name}_low"], row[f"{name}_high"], digits=digits)
        rule = row["threshold_rule"]
        shown["Threshold (rule)"] = rule if np.isnan(row["threshold"]) else f"{row['threshold']:.{digits}f} ({rule})"
        shown["Images / patients"] = f"{row['n_images']} / {row['n_patients']}"
        shown["Test set"] = row["test_set"]
        shown["Data"] = "SYNTHETIC" if row["synthetic"] else "real"
        shown["Weights"] = row["weights"] if pd.notna(row["weights"]) and row["weights"] else "-"
        rows.append(shown)
    return pd.DataFrame(rows)
