"""Two models on the same test patients: paired differences, not two overlapping intervals.

Separate 95 % intervals of two models that were scored on the same patients often overlap
although one model is clearly better: both models find the same patients easy or hard, so
their errors move together and their *difference* varies far less than either metric.
:func:`paired_difference` resamples patients once for both models (the same draws of the one
patient bootstrap, :mod:`helpers.evaluation`) and reports the difference with its interval;
:func:`delong_auc_difference` is DeLong's test of the AUC difference, a cross-check that
treats images as independent. :func:`compare_to_best` compares every run with the one of
highest *validation* AUC. :func:`patient_vs_image_interval` is the lesson on resampling units.
No TensorFlow here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from helpers.evaluation import binary_metrics, to_binary
from helpers.evaluation.bootstrap import percentile_interval, replicates

PAIRED_METRICS = ("auc", "sensitivity", "specificity")
COLUMNS = ("path", "patient_id", "y_true", "probability")


def align(pred_a: pd.DataFrame, pred_b: pd.DataFrame, *, split: str = "test") -> pd.DataFrame:
    """The ``split`` rows of both prediction frames side by side on ``path``: ``probability_a/_b``.

    Refuses (``ValueError``) when the two models were not scored on the same images, or when
    an image's label or patient differs between them, naming the first few such images.
    """
    a, b = (_rows(frame, split, name) for frame, name in ((pred_a, "a"), (pred_b, "b")))
    only_a, only_b = sorted(set(a["path"]) - set(b["path"])), sorted(set(b["path"]) - set(a["path"]))
    if only_a or only_b:
        raise ValueError(
            f"the two models were not scored on the same {split} images: {len(only_a)} only in a "
            f"({only_a[:3]}), {len(only_b)} only in b ({only_b[:3]}); compare runs of one test set"
        )
    both = a.merge(b, on="path", suffixes=("_a", "_b")).sort_values("path", ignore_index=True)
    for column in ("patient_id", "y_true"):
        differ = both.loc[both[f"{column}_a"].astype(str) != both[f"{column}_b"].astype(str), "path"]
        if len(differ):
            raise ValueError(f"{len(differ)} {split} image(s) have another {column} in b: {differ.tolist()[:3]}")
    return both.rename(columns={"patient_id_a": "patient_id", "y_true_a": "y_true"}).drop(
        columns=["patient_id_b", "y_true_b"]
    )


def _rows(frame: pd.DataFrame, split: str, name: str) -> pd.DataFrame:
    missing = sorted(set(COLUMNS) - set(frame.columns))
    if missing:
        raise ValueError(f"predictions {name} lack the column(s) {missing}")
    rows = frame[frame["split"] == split] if "split" in frame.columns else frame
    if rows.empty:
        raise ValueError(f"predictions {name} have no {split} rows")
    if rows["path"].duplicated().any():
        twice = rows.loc[rows["path"].duplicated(), "path"].tolist()
        raise ValueError(f"predictions {name} list some {split} images twice: {twice[:3]}")
    return rows[list(COLUMNS)]


def _model(both: pd.DataFrame, side: str) -> pd.DataFrame:
    return both[["patient_id", "y_true"]].assign(probability=both[f"probability_{side}"].to_numpy(float))


def paired_difference(
    pred_a: pd.DataFrame, pred_b: pd.DataFrame, *, threshold_a: float, threshold_b: float, n_boot: int = 1000,
    seed: int = 0, alpha: float = 0.05, split: str = "test", group: str | None = "patient_id",
) -> pd.DataFrame:
    """Model a minus model b in AUC, sensitivity and specificity, with paired patient-bootstrap intervals.

    Each model is called COVID at its own (validation-chosen) threshold. Every resample draws
    the same patients for both models, so the interval is that of the difference itself. Rows
    are metrics; columns ``a, b, difference, low, high``; an interval that excludes 0 says the
    test set tells the two models apart.
    """
    both = align(pred_a, pred_b, split=split)
    a, b = _model(both, "a"), _model(both, "b")
    kept = list(PAIRED_METRICS)
    draws = {
        side: replicates(frame, threshold, kept, n_boot=n_boot, seed=seed, group=group)
        for side, frame, threshold in (("a", a, threshold_a), ("b", b, threshold_b))
    }
    point_a = binary_metrics(a["y_true"], a["probability"], threshold_a)
    point_b = binary_metrics(b["y_true"], b["probability"], threshold_b)
    rows = []
    for name in kept:
        low, high = percentile_interval(draws["a"][name] - draws["b"][name], alpha)
        value_a, value_b = (np.nan if p[name] is None else p[name] for p in (point_a, point_b))
        rows.append({"metric": name, "a": value_a, "b": value_b, "difference": value_a - value_b,
                     "low": low, "high": high})
    table = pd.DataFrame(rows).set_index("metric")
    table.attrs.update(n_boot=n_boot, alpha=alpha, seed=seed, n_images=len(both),
                       n_patients=int(both["patient_id"].nunique()), group=group)
    return table


def _delong_components(y: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives scored below it
    (ties half); per negative, the share of positives scored above it. Their means are the AUC."""
    positive, negative = prob[y == 1], prob[y == 0]
    ranks = stats.rankdata(np.concatenate([positive, negative]))
    below = (ranks[: len(positive)] - stats.rankdata(positive)) / len(negative)
    above = 1.0 - (ranks[len(positive):] - stats.rankdata(negative)) / len(positive)
    return below, above


def delong_auc_difference(y_true, prob_a, prob_b) -> dict:
    """DeLong's test of AUC(a) - AUC(b) on the same images: ``auc_a, auc_b, difference, se, z, p``.

    A cross-check of :func:`paired_difference`: it treats images as independent (too sure of
    itself when patients have several images). Identical scores give ``z = 0, p = 1``.
    """
    y = to_binary(y_true)
    if not 0 < y.sum() < len(y):
        raise ValueError("DeLong's test needs both COVID and NORMAL images")
    below_a, above_a = _delong_components(y, np.asarray(prob_a, float))
    below_b, above_b = _delong_components(y, np.asarray(prob_b, float))
    difference = below_a.mean() - below_b.mean()
    variance = (np.var(below_a - below_b, ddof=1) / len(below_a)) + (np.var(above_a - above_b, ddof=1) / len(above_a))
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0.0:
        z = 0.0 if difference == 0 else float(np.sign(difference) * np.inf)
    else:
        z = float(difference / se)
    return {"auc_a": float(below_a.mean()), "auc_b": float(below_b.mean()), "difference": float(difference),
            "se": se, "z": z, "p": float(2 * stats.norm.sf(abs(z)))}


def _val_auc(run) -> float:
    val = run.split("val")
    auc = binary_metrics(val["y_true"], val["probability"].to_numpy(float))["auc"] if len(val) else None
    return np.nan if auc is None else float(auc)


def compare_to_best(runs, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Every run against the one of highest validation AUC, as paired test differences (other minus best).

    ``runs`` are runs of one test set (``model``, ``threshold``, ``predictions``, ``split()``).
    The best is chosen on validation only; the test split gives the reported numbers. One row per
    other run and metric: ``model, best, metric, model_value, best_value, difference, low, high, clear``
    (``clear``: the interval excludes 0) and ``delong_p`` (DeLong's p for the AUC rows, the cross-check).
    """
    val_auc = {run.model: _val_auc(run) for run in runs}
    if len(runs) < 2 or all(np.isnan(v) for v in val_auc.values()):
        raise ValueError("comparing to the best needs two or more runs with a validation AUC")
    best = max(runs, key=lambda run: -np.inf if np.isnan(val_auc[run.model]) else val_auc[run.model])
    rows = []
    for run in runs:
        if run is best:
            continue
        table = paired_difference(run.predictions, best.predictions, threshold_a=run.threshold,
                                  threshold_b=best.threshold, n_boot=n_boot, seed=seed, alpha=alpha)
        both = align(run.predictions, best.predictions)
        two_classes = 0 < to_binary(both["y_true"]).sum() < len(both)
        delong = delong_auc_difference(both["y_true"], both["probability_a"], both["probability_b"]) if two_classes else {}
        for metric, values in table.iterrows():
            rows.append({"model": run.model, "best": best.model, "metric": metric,
                         "model_value": values["a"], "best_value": values["b"], "difference": values["difference"],
                         "low": values["low"], "high": values["high"],
                         "clear": bool(values["low"] > 0 or values["high"] < 0),
                         "delong_p": delong.get("p", np.nan) if metric == "auc" else np.nan})
    result = pd.DataFrame(rows)
    result.attrs.update(best=best.model, best_val_auc=val_auc[best.model], n_boot=n_boot, alpha=alpha)
    return result


def patient_vs_image_interval(
    predictions: pd.DataFrame, metric: str = "auc", *, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The same metric's interval drawing patients and drawing images: rows ``patients``, ``images``.

    Columns ``low, high, width``; ``attrs["note"]`` explains the result and ``attrs["coincide"]`` says
    whether the two intervals are the same. When every patient has one image the two resamplings are
    the same and so are the intervals; a perfect score (every resample the same value) leaves nothing
    to vary either. With several images per patient drawing images treats correlated images as
    independent and gives too narrow an interval.
    """
    rows = {}
    for unit, group in (("patients", "patient_id"), ("images", None)):
        values = replicates(predictions, threshold, [metric], n_boot=n_boot, seed=seed, group=group)[metric]
        low, high = percentile_interval(values, alpha)
        rows[unit] = {"low": low, "high": high, "width": high - low}
    table = pd.DataFrame.from_dict(rows, orient="index")
    n_images, n_patients = len(predictions), int(predictions["patient_id"].nunique())
    if n_images == n_patients:
        note = (f"patients = images ({n_images}): every patient has one image, so drawing patients is drawing "
                "images and the two intervals coincide; the difference shows only with several images per patient")
    elif (table["width"] == 0).all() and table["low"].nunique() == 1:
        note = (f"{n_images} images of {n_patients} patients, but every resample gives {metric} = "
                f"{table['low'].iloc[0]:.3f}: a perfect score leaves nothing to vary, so the two intervals coincide; "
                "the difference shows only on a score below perfect")
    else:
        note = (f"{n_images} images of {n_patients} patients: images of one patient are not independent evidence, "
                "so the interval drawing images is usually too narrow; report the one drawing patients")
    coincide = bool(np.allclose(table.loc["patients"], table.loc["images"], equal_nan=True))
    table.attrs.update(metric=metric, note=note, coincide=coincide, n_images=n_images, n_patients=n_patients,
                       n_boot=n_boot)
    return table
