"""Honest evaluation: metrics, patient-level bootstrap intervals, thresholds, baselines.

Conventions: ``y_true`` is 1 for COVID and 0 for NORMAL, ``prob`` is the model's
probability of COVID, and an image is called COVID when ``prob >= threshold``.
Confidence intervals resample *patients* (all images of a drawn patient go in),
because images of one patient are not independent evidence. Thresholds are
chosen on the validation split only; the test split is never used for a choice.

Runs (read with :func:`helpers.runs.read_runs`) are summarised with
:func:`comparison_table`. No TensorFlow here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import roc_auc_score, roc_curve

from helpers.constants import NEGATIVE, POSITIVE

if TYPE_CHECKING:
    from helpers.runs import Run

METRICS = ("auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
PREVALENCES = (0.01, 0.05, 0.2, 0.5)
BASELINE = "majority baseline"


# --------------------------------------------------------------------------- metrics


def _ratio(numerator, denominator):
    """``numerator / denominator``, NaN where the denominator is 0 (works on arrays)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _rates(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (scalars or arrays of bootstrap replicates)."""
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
    }


def _optional(value) -> float | None:
    """A JSON-friendly float: ``None`` for undefined (NaN) values."""
    value = float(value)
    return None if np.isnan(value) else value


def to_binary(labels) -> np.ndarray:
    """Labels as 0/1 integers: ``"COVID"`` (or 1/True) is 1, anything else 0."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "OUS":
        return (labels == POSITIVE).astype(int)
    return (labels.astype(float) > 0.5).astype(int)


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """AUC, accuracy, sensitivity, specificity, precision (PPV), NPV, F1 and the confusion matrix.

    Undefined values (AUC with one class only, sensitivity without positives, ...) are ``None``.
    ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]`` as in scikit-learn.
    """
    y, prob = to_binary(y_true), np.asarray(prob, float)
    predicted = prob >= threshold
    tp, fn = int(np.sum(predicted & (y == 1))), int(np.sum(~predicted & (y == 1)))
    fp, tn = int(np.sum(predicted & (y == 0))), int(np.sum(~predicted & (y == 0)))
    rates = {name: _optional(value) for name, value in _rates(tn, fp, fn, tp).items()}
    return {
        "auc": float(roc_auc_score(y, prob)) if 0 < y.sum() < len(y) else None,
        "accuracy": rates["accuracy"],
        "sensitivity": rates["sensitivity"],
        "specificity": rates["specificity"],
        "precision": rates["ppv"],
        "npv": rates["npv"],
        "f1": rates["f1"],
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "n": len(y),
        "n_positive": int(y.sum()),
        "threshold": float(threshold),
    }


def brier_score(y_true, prob) -> float:
    """Mean squared difference between the probability and the outcome (0 is perfect, 0.25 is a coin)."""
    return float(np.mean((np.asarray(prob, float) - to_binary(y_true)) ** 2))


def calibration(y_true, prob, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: per probability bin, the mean predicted probability and the observed COVID rate.

    Equal-width bins on [0, 1]; empty bins are left out. ``attrs["brier"]`` holds the Brier score.
    """
    y, prob = to_binary(y_true), np.asarray(prob, float)
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "prob": prob, "y": y})
    table = frame.groupby("bin").agg(
        n=("y", "size"), mean_probability=("prob", "mean"), fraction_positive=("y", "mean")
    )
    table.insert(0, "bin_low", table.index / n_bins)
    table.insert(1, "bin_high", (table.index + 1) / n_bins)
    table = table.reset_index(drop=True)
    table.attrs["brier"] = brier_score(y, prob)
    return table


def predictive_values(sensitivity: float, specificity: float, prevalences=PREVALENCES) -> pd.DataFrame:
    """PPV and NPV at other prevalences (Bayes' rule): what a positive or negative result means."""
    p = np.asarray(prevalences, float)
    ppv = _ratio(sensitivity * p, sensitivity * p + (1 - specificity) * (1 - p))
    npv = _ratio(specificity * (1 - p), specificity * (1 - p) + (1 - sensitivity) * p)
    return pd.DataFrame({"prevalence": p, "ppv": ppv, "npv": npv})


def majority_class(train_labels) -> int:
    """The most frequent class of the training labels (1 = COVID); a tie goes to NORMAL."""
    y = to_binary(train_labels)
    return int(y.sum() > len(y) - y.sum())


def majority_baseline(train_labels, test_true) -> dict:
    """Metrics of always predicting the training majority class: the bar every model must clear."""
    majority = majority_class(train_labels)
    y = to_binary(test_true)
    metrics = binary_metrics(y, np.full(len(y), float(majority)), threshold=0.5)
    metrics["auc"] = 0.5
    metrics["majority_class"] = POSITIVE if majority else NEGATIVE
    return metrics


# ------------------------------------------------------------------------- thresholds


def choose_threshold(y_true, prob, *, rule: str = "youden", target: float = 0.95) -> float:
    """A decision threshold chosen on validation data.

    ``rule="youden"`` maximises sensitivity + specificity - 1; ``rule="sensitivity"``
    takes the highest threshold (fewest false positives) whose sensitivity is at least
    ``target``. The threshold is one of the given probabilities: ``prob >= threshold`` is COVID.
    """
    y = to_binary(y_true)
    if not 0 < y.sum() < len(y):
        raise ValueError("choosing a threshold needs both COVID and NORMAL images in the validation data")
    fpr, tpr, thresholds = roc_curve(y, np.asarray(prob, float), drop_intermediate=False)
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]  # the first point predicts nothing positive
    if rule == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])
    if rule == "sensitivity":
        return float(thresholds[np.argmax(tpr >= target)])
    raise ValueError(f"unknown threshold rule {rule!r}; use 'youden' or 'sensitivity'")


# -------------------------------------------------------------------------- bootstrap


def _patient_draws(groups: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """How often each group is drawn in each resample: ``(n_boot, n_groups)`` counts."""
    n_groups = groups.max() + 1
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, size=(n_boot, n_groups))
    offsets = (np.arange(n_boot) * n_groups)[:, None]
    return np.bincount((drawn + offsets).ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)


def _group_codes(predictions: pd.DataFrame, group: str | None) -> np.ndarray:
    """Integer code of each row's resampling unit (a patient, or the image itself when ``group`` is None)."""
    if group is None:
        return np.arange(len(predictions))
    return pd.factorize(predictions[group].astype(str))[0]


def _per_group(groups: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(groups[mask], minlength=n_groups).astype(float)


def _replicate_auc(draws: np.ndarray, groups: np.ndarray, y: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of every resample, ties counted half, without building the resamples."""
    levels, level = np.unique(prob, return_inverse=True)
    shape = (draws.shape[1], len(levels))

    def by_group_and_level(mask):
        ones = np.ones(mask.sum())
        return sparse.csr_array((ones, (groups[mask], level[mask])), shape=shape)

    positives = (by_group_and_level(y == 1).T @ draws.T).T  # (n_boot, n_levels)
    negatives = (by_group_and_level(y == 0).T @ draws.T).T
    below = np.cumsum(negatives, axis=1) - negatives
    concordant = np.sum(positives * (below + 0.5 * negatives), axis=1)
    return _ratio(concordant, positives.sum(axis=1) * negatives.sum(axis=1))


def _replicates(
    predictions: pd.DataFrame, threshold: float, metrics, *, n_boot: int, seed: int, group: str | None
):
    """Bootstrap distribution of each named metric (NaN where a resample leaves it undefined)."""
    y = to_binary(predictions["y_true"])
    prob = predictions["probability"].to_numpy(float)
    groups = _group_codes(predictions, group)
    n_groups = groups.max() + 1
    draws = _patient_draws(groups, n_boot=n_boot, seed=seed).astype(float)
    predicted = prob >= threshold
    counts = [
        draws @ _per_group(groups, mask, n_groups)
        for mask in (~predicted & (y == 0), predicted & (y == 0), ~predicted & (y == 1), predicted & (y == 1))
    ]
    rates = _rates(*counts)
    if "auc" in metrics:
        rates["auc"] = _replicate_auc(draws, groups, y, prob)
    return {name: rates[name] for name in metrics}


def _percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _check_predictions(predictions: pd.DataFrame, group: str | None) -> None:
    needed = {"y_true", "probability"} | ({group} if group else set())
    missing = needed - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack the column(s) {sorted(missing)}")
    if predictions.empty:
        raise ValueError("no predictions to evaluate")


def bootstrap_ci(
    predictions: pd.DataFrame,
    metric: str | Callable = "auc",
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    group: str | None = "patient_id",
) -> tuple[float, float]:
    """Percentile ``1 - alpha`` confidence interval of one metric, resampling patients.

    ``metric`` is a name from :data:`METRICS` (fast, vectorised) or any function
    ``metric(y_true, prob) -> float``. ``group=None`` resamples images instead (too narrow
    when patients have several images; shown in the course for comparison only).
    """
    _check_predictions(predictions, group)
    if callable(metric):
        return _percentile_interval(
            _callable_replicates(predictions, metric, n_boot=n_boot, seed=seed, group=group), alpha
        )
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS} or pass a function")
    values = _replicates(predictions, threshold, [metric], n_boot=n_boot, seed=seed, group=group)[metric]
    return _percentile_interval(values, alpha)


def _callable_replicates(
    predictions: pd.DataFrame, metric: Callable, *, n_boot: int, seed: int, group: str | None
):
    """Apply ``metric`` to each resample: every image repeated as often as its patient was drawn."""
    y = to_binary(predictions["y_true"])
    prob = predictions["probability"].to_numpy(float)
    groups = _group_codes(predictions, group)
    draws = _patient_draws(groups, n_boot=n_boot, seed=seed)
    values = []
    for counts in draws:
        rows = np.repeat(np.arange(len(y)), counts[groups])
        values.append(metric(y[rows], prob[rows]) if len(rows) else np.nan)
    return np.asarray(values, float)


def metrics_with_ci(
    predictions: pd.DataFrame,
    threshold: float = 0.5,
    *,
    metrics=METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    group: str | None = "patient_id",
) -> pd.DataFrame:
    """Point estimate and patient-bootstrap interval per metric: rows are metrics, columns estimate/low/high."""
    _check_predictions(predictions, group)
    y = to_binary(predictions["y_true"])
    prob = predictions["probability"].to_numpy(float)
    point = binary_metrics(y, prob, threshold)
    point["ppv"] = point["precision"]
    replicates = _replicates(predictions, threshold, list(metrics), n_boot=n_boot, seed=seed, group=group)
    rows = []
    for name in metrics:
        low, high = _percentile_interval(replicates[name], alpha)
        estimate = point[name]
        rows.append(
            {"metric": name, "estimate": np.nan if estimate is None else estimate, "low": low, "high": high}
        )
    table = pd.DataFrame(rows).set_index("metric")
    table.attrs.update(threshold=float(threshold), n_boot=n_boot, alpha=alpha, group=group)
    return table


# ------------------------------------------------------------------------- comparison


def _train_labels(runs: list[Run]) -> tuple[np.ndarray, str]:
    """Training labels for the majority baseline: from dataset.json, else the val rows.

    The split is stratified by label, so the val majority is the train majority.
    """
    info = runs[0].dataset_info or {}
    train = (info.get("splits") or {}).get("train") or {}
    if train.get(POSITIVE) is not None or train.get(NEGATIVE) is not None:
        counts = [int(train.get(POSITIVE) or 0), int(train.get(NEGATIVE) or 0)]
        return np.repeat([1, 0], counts), "train"
    return to_binary(runs[0].split("val")["y_true"]), "val"


def _table_row(predictions: pd.DataFrame, threshold: float, *, n_boot: int, seed: int, alpha: float) -> dict:
    row = {"n_images": len(predictions), "n_patients": predictions["patient_id"].nunique()}
    table = metrics_with_ci(predictions, threshold, n_boot=n_boot, seed=seed, alpha=alpha)
    for name, values in table.iterrows():
        row.update({name: values["estimate"], f"{name}_low": values["low"], f"{name}_high": values["high"]})
    return row


def _baseline_row(runs: list[Run], split: str, *, n_boot: int, seed: int, alpha: float) -> dict:
    labels, source = _train_labels(runs)
    majority = majority_class(labels)
    rows = runs[0].split(split).assign(probability=float(majority))
    return {
        "dataset": runs[0].dataset,
        "model": BASELINE,
        "synthetic": runs[0].synthetic,
        "weights": None,
        "threshold": np.nan,
        "threshold_rule": f"always {POSITIVE if majority else NEGATIVE} (majority of {source})",
        **_table_row(rows, 0.5, n_boot=n_boot, seed=seed, alpha=alpha),
    }


def comparison_table(
    runs: list[Run], *, split: str = "test", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per model plus the majority baseline per dataset, each metric with its patient-bootstrap CI.

    Numeric columns: ``auc, auc_low, auc_high, sensitivity, ...``; see :func:`format_comparison`
    for the display version. Thresholds are the stored, validation-chosen ones.
    """
    rows = []
    by_dataset: dict[str, list[Run]] = {}
    for run in runs:
        by_dataset.setdefault(run.dataset, []).append(run)
    for dataset_runs in by_dataset.values():
        for run in dataset_runs:
            if run.split(split).empty:
                warnings.warn(f"{run.dataset}/{run.model} has no {split} predictions; left out", stacklevel=2)
                continue
            rows.append(
                {
                    "dataset": run.dataset,
                    "model": run.model,
                    "synthetic": run.synthetic,
                    "weights": run.weights,
                    "threshold": run.threshold,
                    "threshold_rule": run.threshold_rule,
                    **_table_row(run.split(split), run.threshold, n_boot=n_boot, seed=seed, alpha=alpha),
                }
            )
        if not dataset_runs[0].split(split).empty:
            rows.append(_baseline_row(dataset_runs, split, n_boot=n_boot, seed=seed, alpha=alpha))
    table = pd.DataFrame(rows)
    table.attrs.update(split=split, n_boot=n_boot, alpha=alpha)
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
                shown[title] = format_interval(
                    row[name], row[f"{name}_low"], row[f"{name}_high"], digits=digits
                )
        rule = row["threshold_rule"]
        shown["Threshold (rule)"] = (
            rule if np.isnan(row["threshold"]) else f"{row['threshold']:.{digits}f} ({rule})"
        )
        shown["Images / patients"] = f"{row['n_images']} / {row['n_patients']}"
        shown["Data"] = "SYNTHETIC" if row["synthetic"] else "real"
        shown["Weights"] = row["weights"] if pd.notna(row["weights"]) and row["weights"] else "-"
        rows.append(shown)
    return pd.DataFrame(rows)
