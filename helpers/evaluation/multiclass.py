"""Evaluation of a three-class model (NORMAL, PNEUMONIA, COVID), as COVID-Net reports it on COVIDx.

A predictions frame has ``y_true`` (class names), one ``prob_<CLASS>`` column per class (they
sum to 1) and ``patient_id``; an image is predicted as its most probable class. What is here:
the confusion matrix, per-class sensitivity and positive predictive value with patient-bootstrap
95% intervals (the draws of :func:`helpers.evaluation.bootstrap.patient_draws`, so patients are
resampled exactly as in the binary intervals), macro one-vs-rest AUC with its interval, the
COVID-vs-rest operating point with its threshold chosen on validation, and the majority baseline.
No TensorFlow here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_auc_score

from helpers.constants import POSITIVE
from helpers.evaluation.bootstrap import (
    group_codes,
    metrics_with_ci,
    patient_draws,
    percentile_interval,
    replicate_auc,
)
from helpers.evaluation.metrics import choose_threshold, ratio


def probability_columns(classes: tuple[str, ...]) -> list[str]:
    return [f"prob_{label}" for label in classes]


def predictions_table(
    y_true, prob: np.ndarray, classes: tuple[str, ...], patient_id=None,
) -> pd.DataFrame:
    """A predictions frame from labels (names or class indices), an N x classes probability matrix and patients."""
    y_true = np.asarray(y_true)
    names = np.asarray(classes, dtype=object)[y_true] if y_true.dtype.kind in "iu" else y_true
    frame = pd.DataFrame(np.asarray(prob, float), columns=probability_columns(classes))
    frame.insert(0, "y_true", names)
    frame["patient_id"] = np.arange(len(frame)).astype(str) if patient_id is None else np.asarray(patient_id)
    return frame


def run_predictions(run, split: str = "test") -> pd.DataFrame:
    """A multi-class run's (:class:`helpers.runs.Run`) rows of ``split`` as this module's frame (``y_true`` the class)."""
    rows = run.split(split)
    return rows.assign(y_true=rows["label"])[["y_true", *probability_columns(run.classes), "patient_id"]]


def _indices(predictions: pd.DataFrame, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True class indices, predicted class indices (argmax) and the probability matrix."""
    unknown = sorted(set(predictions["y_true"]) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    prob = predictions[probability_columns(classes)].to_numpy(float)
    true = predictions["y_true"].map({label: i for i, label in enumerate(classes)}).to_numpy(int)
    return true, prob.argmax(axis=1), prob


def confusion(predictions: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """The k x k confusion matrix: rows the true class, columns the predicted class (scikit-learn's layout)."""
    true, predicted, _ = _indices(predictions, classes)
    table = confusion_matrix(true, predicted, labels=list(range(len(classes))))
    return pd.DataFrame(table, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted"))


def _rates(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sensitivity and PPV from confusion counts ``(..., k, k)`` (NaN where undefined)."""
    hits = np.diagonal(counts, axis1=-2, axis2=-1)
    return ratio(hits, counts.sum(axis=-1)), ratio(hits, counts.sum(axis=-2))


def macro_auc(predictions: pd.DataFrame, classes: tuple[str, ...]) -> float:
    """Macro one-vs-rest AUC (scikit-learn); NaN when a class is absent from ``y_true``."""
    true, _, prob = _indices(predictions, classes)
    if len(set(true)) < len(classes):
        return float("nan")
    return float(roc_auc_score(true, prob, multi_class="ovr", average="macro", labels=list(range(len(classes)))))


def per_class_with_ci(
    predictions: pd.DataFrame, classes: tuple[str, ...], *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
    group: str | None = "patient_id",
) -> pd.DataFrame:
    """COVID-Net's table: per class, images, sensitivity and PPV with patient-bootstrap ``1 - alpha`` intervals.

    The attribute ``macro_auc`` holds ``(estimate, low, high)`` of the macro one-vs-rest AUC, from the same resamples.
    """
    true, predicted, prob = _indices(predictions, classes)
    k = len(classes)
    groups = group_codes(predictions, group)
    n_groups = groups.max() + 1
    cells = np.zeros((n_groups, k * k))
    np.add.at(cells, (groups, true * k + predicted), 1)  # each patient's confusion counts
    draws = patient_draws(groups, n_boot=n_boot, seed=seed).astype(float)
    sensitivity, ppv = _rates((draws @ cells).reshape(n_boot, k, k))
    point_sensitivity, point_ppv = _rates(cells.sum(axis=0).reshape(k, k))
    rows = []
    for i, label in enumerate(classes):
        row = {"class": label, "n": int((true == i).sum())}
        for name, point, values in (("sensitivity", point_sensitivity, sensitivity), ("ppv", point_ppv, ppv)):
            row[name] = float(point[i])
            row[f"{name}_low"], row[f"{name}_high"] = percentile_interval(values[:, i], alpha)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("class")
    auc = np.mean([replicate_auc(draws, groups, (true == i).astype(int), prob[:, i]) for i in range(k)], axis=0)
    table.attrs.update(macro_auc=(macro_auc(predictions, classes), *percentile_interval(auc, alpha)),
                       n_boot=n_boot, alpha=alpha, group=group)
    return table


def format_per_class(table: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """The display version of :func:`per_class_with_ci`: images, sensitivity and PPV as ``"0.91 (0.85-0.96)"``."""
    from helpers.evaluation.tables import format_interval

    shown = pd.DataFrame({"images": table["n"]}, index=table.index)
    for name, title in (("sensitivity", "Sensitivity"), ("ppv", "PPV")):
        shown[title] = [format_interval(row[name], row[f"{name}_low"], row[f"{name}_high"], digits=digits)
                        for _, row in table.iterrows()]
    return shown


def covid_vs_rest(predictions: pd.DataFrame) -> pd.DataFrame:
    """A binary predictions frame: ``y_true`` COVID or not, ``probability`` the probability of COVID."""
    return predictions.assign(y_true=np.where(predictions["y_true"] == POSITIVE, POSITIVE, "REST"),
                              probability=predictions[f"prob_{POSITIVE}"])[["y_true", "probability", "patient_id"]]


def covid_operating_point(
    val: pd.DataFrame, test: pd.DataFrame, *, rule: str = "youden", target: float = 0.95, **bootstrap,
) -> pd.DataFrame:
    """COVID against the rest: the threshold chosen on ``val`` (:func:`choose_threshold`), metrics on ``test``.

    The table of :func:`metrics_with_ci` (estimate, low, high per metric); ``attrs["threshold"]`` is the threshold.
    """
    binary_val = covid_vs_rest(val)
    threshold = choose_threshold(binary_val["y_true"], binary_val["probability"], rule=rule, target=target)
    return metrics_with_ci(covid_vs_rest(test), threshold, **bootstrap)


def majority_baseline(train_labels, test_true, classes: tuple[str, ...]) -> dict:
    """Always the most frequent training class (a tie: the first in class-index order): the bar to clear."""
    counts = pd.Series(list(train_labels)).value_counts().reindex(classes, fill_value=0)
    majority = classes[int(np.argmax(counts.to_numpy()))]
    prob = np.tile(np.asarray(classes) == majority, (len(test_true), 1)).astype(float)
    predictions = predictions_table(np.asarray(list(test_true), dtype=object), prob, classes)
    sensitivity, ppv = _rates(confusion(predictions, classes).to_numpy())
    return {
        "majority_class": majority,
        "accuracy": float(np.mean(np.asarray(list(test_true)) == majority)),
        "sensitivity": dict(zip(classes, sensitivity.tolist())),
        "ppv": dict(zip(classes, ppv.tolist())),
        "macro_auc": 0.5,
    }


def summary(predictions: pd.DataFrame, classes: tuple[str, ...]) -> dict:
    """What ``metrics.json`` records of a multi-class split: accuracy, macro AUC, per-class rates, the matrix."""
    table = confusion(predictions, classes)
    sensitivity, ppv = _rates(table.to_numpy())
    true, predicted, _ = _indices(predictions, classes)
    return {
        "accuracy": float(np.mean(true == predicted)) if len(true) else float("nan"),
        "macro_auc": macro_auc(predictions, classes),
        "sensitivity": dict(zip(classes, sensitivity.tolist(), strict=True)),
        "ppv": dict(zip(classes, ppv.tolist(), strict=True)),
        "confusion": table.to_numpy().tolist(),
    }
