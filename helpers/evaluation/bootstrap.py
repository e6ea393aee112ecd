"""The patient-level bootstrap: confidence intervals that resample patients, not images.

Images of one patient are not independent evidence, so each resample draws patients with
replacement and takes all images of every drawn patient. Resample ``b`` draws
``rng.integers(0, n_patients, n_patients)`` from ``np.random.default_rng(seed)``, patients
numbered in order of first appearance (:func:`patient_draws`). The metrics of all resamples
are computed at once from per-patient counts (no resampled copies of the data): 1000 resamples
of 3000 images take about half a second on one CPU core. Hand-written because
``scipy.stats.bootstrap`` resamples observations, not clusters (patients) of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from helpers.evaluation.metrics import METRICS, binary_metrics, confusion_rates, ratio, to_binary


def patient_draws(groups: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """How often each group (patient) is drawn in each resample: ``(n_boot, n_groups)`` counts."""
    n_groups = groups.max() + 1
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, size=(n_boot, n_groups))
    offsets = (np.arange(n_boot) * n_groups)[:, None]
    return np.bincount((drawn + offsets).ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)


def group_codes(predictions: pd.DataFrame, group: str | None) -> np.ndarray:
    """Integer code of each row's resampling unit (a patient, or the image itself when ``group`` is None)."""
    if group is None:
        return np.arange(len(predictions))
    return pd.factorize(predictions[group].astype(str))[0]


def _per_group(groups: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(groups[mask], minlength=n_groups).astype(float)


def replicate_auc(draws: np.ndarray, groups: np.ndarray, y: np.ndarray, prob: np.ndarray) -> np.ndarray:
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
    return ratio(concordant, positives.sum(axis=1) * negatives.sum(axis=1))


def replicates(
    predictions: pd.DataFrame, threshold: float, metrics, *, n_boot: int, seed: int, group: str | None
):
    """Bootstrap distribution of each named metric (NaN where a resample leaves it undefined)."""
    y = to_binary(predictions["y_true"])
    prob = predictions["probability"].to_numpy(float)
    groups = group_codes(predictions, group)
    n_groups = groups.max() + 1
    draws = patient_draws(groups, n_boot=n_boot, seed=seed).astype(float)
    predicted = prob >= threshold
    counts = [
        draws @ _per_group(groups, mask, n_groups)
        for mask in (~predicted & (y == 0), predicted & (y == 0), ~predicted & (y == 1), predicted & (y == 1))
    ]
    rates = confusion_rates(*counts)
    if "auc" in metrics:
        rates["auc"] = replicate_auc(draws, groups, y, prob)
    return {name: rates[name] for name in metrics}


def percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """The central ``1 - alpha`` percentile interval of bootstrap values, NaNs left out (NaN, NaN when all are)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _check(predictions: pd.DataFrame, metrics, group: str | None) -> None:
    needed = {"y_true", "probability"} | ({group} if group else set())
    missing = needed - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack the column(s) {sorted(missing)}")
    if predictions.empty:
        raise ValueError("no predictions to evaluate")
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {METRICS}")


def bootstrap_ci(
    predictions: pd.DataFrame, metric: str = "auc", *, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
    alpha: float = 0.05, group: str | None = "patient_id",
) -> tuple[float, float]:
    """Percentile ``1 - alpha`` confidence interval of one metric (a name from ``METRICS``), resampling patients.

    ``predictions`` has ``y_true``, ``probability`` and ``group`` columns. ``group=None`` resamples
    images instead (too narrow when patients have several images; shown in the course for comparison only).
    """
    _check(predictions, [metric], group)
    values = replicates(predictions, threshold, [metric], n_boot=n_boot, seed=seed, group=group)[metric]
    return percentile_interval(values, alpha)


def metrics_with_ci(
    predictions: pd.DataFrame, threshold: float = 0.5, *, metrics=METRICS, n_boot: int = 1000, seed: int = 0,
    alpha: float = 0.05, group: str | None = "patient_id",
) -> pd.DataFrame:
    """Point estimate and patient-bootstrap interval per metric: rows are metrics, columns estimate/low/high."""
    _check(predictions, metrics, group)
    point = binary_metrics(predictions["y_true"], predictions["probability"].to_numpy(float), threshold)
    point["ppv"] = point["precision"]
    by_metric = replicates(predictions, threshold, list(metrics), n_boot=n_boot, seed=seed, group=group)
    rows = []
    for name in metrics:
        low, high = percentile_interval(by_metric[name], alpha)
        estimate = np.nan if point[name] is None else point[name]
        rows.append({"metric": name, "estimate": estimate, "low": low, "high": high})
    table = pd.DataFrame(rows).set_index("metric")
    table.attrs.update(threshold=float(threshold), n_boot=n_boot, alpha=alpha, group=group)
    return table
