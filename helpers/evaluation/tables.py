"""Comparison tables: every run of a dataset next to the majority baseline, each metric with its patient CI.

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

from helpers.constants import NEGATIVE, POSITIVE
from helpers.evaluation.bootstrap import metrics_with_ci
from helpers.evaluation.metrics import majority_class, to_binary

if TYPE_CHECKING:
    from helpers.runs import Run

BASELINE = "majority baseline"
SAME, DIFFERENT, UNKNOWN = "same", "DIFFERENT", "unknown"


def _train_labels(run: Run) -> tuple[np.ndarray, str]:
    """Training labels for the majority baseline: from the run's dataset.json record, else its val rows.

    The split is stratified by label, so the val majority is the train majority.
    """
    info = run.dataset_info or {}
    train = (info.get("splits") or {}).get("train") or {}
    if train.get(POSITIVE) is not None or train.get(NEGATIVE) is not None:
        counts = [int(train.get(POSITIVE) or 0), int(train.get(NEGATIVE) or 0)]
        return np.repeat([1, 0], counts), "train"
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
        "model": BASELINE,
        "synthetic": reference.synthetic,
        "weights": None,
        "threshold": np.nan,
        "threshold_rule": f"always {POSITIVE if majority else NEGATIVE} (majority of {source})",
        "test_set": _test_set(reference.test_fingerprint, reference.test_fingerprint),
        **_table_row(rows, 0.5, n_boot=n_boot, seed=seed, alpha=alpha),
    }


def comparison_table(
    runs: list[Run], *, split: str = "test", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per model plus the majority baseline per dataset, each metric with its patient-bootstrap CI.

    Numeric columns: ``auc, auc_low, auc_high, sensitivity, ...``; ``test_set`` says whether a
    run was scored on its dataset's reference test rows (see the module docstring). See
    :func:`format_comparison` for the display version. Thresholds are the stored, validation-chosen ones.
    """
    rows, different = [], []
    by_dataset: dict[str, list[Run]] = {}
    for run in runs:
        if run.split(split).empty:
            warnings.warn(f"{run.dataset}/{run.model} has no {split} predictions; left out", stacklevel=2)
            continue
        by_dataset.setdefault(run.dataset, []).append(run)
    for dataset_runs in by_dataset.values():
        reference = reference_run(dataset_runs)
        for run in dataset_runs:
            test_set = _test_set(run.test_fingerprint, reference.test_fingerprint)
            if test_set == DIFFERENT:
                different.append(f"{run.dataset}/{run.model}")
            rows.append({
                "dataset": run.dataset,
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
    """The display version of :func:`comparison_table`: metrics as ``"estimate (low-high)"`` strings."""
    rows = []
    for _, row in table.iterrows():
        shown = {"Dataset": row["dataset"], "Model": row["model"]}
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
