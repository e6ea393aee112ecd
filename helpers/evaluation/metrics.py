"""Metrics of a binary classifier: threshold metrics, AUC, calibration, predictive values, baselines, thresholds.

Conventions: ``y_true`` is 1 for COVID and 0 for the rest (NORMAL, PNEUMONIA, or both for three
classes: :func:`negative_name`), ``prob`` is the model's probability of COVID, and an image is called
COVID when ``prob >= threshold``.
Thresholds are chosen on the validation split only; the test split is never used for a choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score, roc_curve

from helpers.constants import LABELS, NEGATIVE, POSITIVE

METRICS = ("auc", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
PREVALENCES = (0.01, 0.05, 0.2, 0.5)


def ratio(numerator, denominator):
    """``numerator / denominator``, NaN where the denominator is 0 (works on arrays)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def confusion_rates(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (scalars or arrays of bootstrap replicates)."""
    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
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
    tn, fp, fn, tp = (int(count) for count in confusion_matrix(y, prob >= threshold, labels=[0, 1]).ravel())
    rates = {name: _optional(value) for name, value in confusion_rates(tn, fp, fn, tp).items()}
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
    return float(brier_score_loss(to_binary(y_true), np.asarray(prob, float), pos_label=1))


def calibration(y_true, prob, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: per probability bin, the mean predicted probability and the observed COVID rate.

    scikit-learn's ``calibration_curve`` with ``n_bins`` equal-width bins on [0, 1]; empty bins
    are left out. ``attrs["brier"]`` holds the Brier score.
    """
    y, prob = to_binary(y_true), np.asarray(prob, float)
    observed, predicted = calibration_curve(y, prob, n_bins=n_bins, strategy="uniform", pos_label=1)
    table = pd.DataFrame({"mean_probability": predicted, "fraction_positive": observed})
    table.attrs["brier"] = brier_score(y, prob)
    return table


def predictive_values(sensitivity: float, specificity: float, prevalences=PREVALENCES) -> pd.DataFrame:
    """PPV and NPV at other prevalences (Bayes' rule): what a positive or negative result means."""
    p = np.asarray(prevalences, float)
    ppv = ratio(sensitivity * p, sensitivity * p + (1 - specificity) * (1 - p))
    npv = ratio(specificity * (1 - p), specificity * (1 - p) + (1 - sensitivity) * p)
    return pd.DataFrame({"prevalence": p, "ppv": ppv, "npv": npv})


def negative_name(classes=LABELS) -> str:
    """What "not COVID" is for a task's classes: ``NORMAL``, ``PNEUMONIA``, or ``not COVID (NORMAL or PNEUMONIA)``."""
    rest = [label for label in classes if label != POSITIVE]
    return rest[0] if len(rest) == 1 else f"not {POSITIVE} ({' or '.join(rest)})"


def majority_class(train_labels) -> int:
    """The most frequent class of the training labels (1 = COVID); a tie goes to the negative class."""
    y = to_binary(train_labels)
    return int(y.sum() > len(y) - y.sum())


def majority_baseline(train_labels, test_true, *, classes=None) -> dict:
    """Metrics of always predicting the training majority class: the bar every model must clear.

    ``majority_class`` names it in the task's ``classes`` (e.g. PNEUMONIA for covid-vs-pneumonia); without
    them, the non-COVID class of the training labels when they are names, else NORMAL.
    """
    if classes is None:
        names = np.asarray(train_labels)
        named = sorted(set(names.tolist()) - {POSITIVE}) if names.dtype.kind in "OUS" else []
        classes = (*(named or [NEGATIVE]), POSITIVE)
    majority = majority_class(train_labels)
    y = to_binary(test_true)
    metrics = binary_metrics(y, np.full(len(y), float(majority)), threshold=0.5)
    metrics["auc"] = 0.5
    metrics["majority_class"] = POSITIVE if majority else negative_name(classes)
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
        raise ValueError("choosing a threshold needs both COVID and non-COVID images in the validation data")
    fpr, tpr, thresholds = roc_curve(y, np.asarray(prob, float), drop_intermediate=False)
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]  # the first point predicts nothing positive
    if rule == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])
    if rule == "sensitivity":
        return float(thresholds[np.argmax(tpr >= target)])
    raise ValueError(f"unknown threshold rule {rule!r}; use 'youden' or 'sensitivity'")
