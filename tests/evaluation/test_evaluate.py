"""helpers.evaluation: metrics against scikit-learn, patient bootstrap, thresholds, baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from helpers import evaluation as ev


def noisy_scores(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    prob = 1 / (1 + np.exp(-(1.5 * y - 0.7 + rng.normal(size=n))))
    return y, prob.round(3)  # rounding makes ties, which every metric must handle


def clustered_predictions(n_patients: int = 30, images: int = 20, seed: int = 0) -> pd.DataFrame:
    """Each patient contributes many images with one identical prediction: few independent units."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_patients) % 2
    prob = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, n_patients), 0, 1)
    return pd.DataFrame(
        {
            "patient_id": np.repeat([f"p{i}" for i in range(n_patients)], images),
            "y_true": np.repeat(y, images),
            "probability": np.repeat(prob, images),
        }
    )


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_binary_metrics_agree_with_scikit_learn(threshold):
    y, prob = noisy_scores()
    predicted = (prob >= threshold).astype(int)
    result = ev.binary_metrics(y, prob, threshold)
    assert result["auc"] == pytest.approx(skm.roc_auc_score(y, prob))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert result["sensitivity"] == pytest.approx(skm.recall_score(y, predicted))
    assert result["specificity"] == pytest.approx(skm.recall_score(y, predicted, pos_label=0))
    assert result["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert result["npv"] == pytest.approx(skm.precision_score(y, predicted, pos_label=0))
    assert result["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert result["confusion_matrix"] == skm.confusion_matrix(y, predicted).tolist()
    assert (result["n"], result["n_positive"], result["threshold"]) == (len(y), y.sum(), threshold)


def test_binary_metrics_labels_ties_and_undefined_values():
    result = ev.binary_metrics(["COVID", "NORMAL", "NORMAL"], [0.5, 0.5, 0.1], threshold=0.5)
    assert result["confusion_matrix"] == [[1, 1], [0, 1]]  # prob == threshold counts as COVID
    one_class = ev.binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert one_class["auc"] is None and one_class["sensitivity"] is None
    assert one_class["specificity"] == pytest.approx(2 / 3)


def test_patient_bootstrap_is_wider_than_image_bootstrap():
    frame = clustered_predictions()
    for metric in ("auc", "sensitivity", "specificity"):
        low, high = ev.bootstrap_ci(frame, metric, n_boot=500)
        image_low, image_high = ev.bootstrap_ci(frame, metric, n_boot=500, group=None)
        assert high - low > 2 * (image_high - image_low), metric


def explicit_interval(frame: pd.DataFrame, metric, *, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """The bootstrap written out: per resample, copy every image of each drawn patient, score with scikit-learn."""
    patients = pd.factorize(frame["patient_id"].astype(str))[0]
    rng = np.random.default_rng(seed)  # the documented draws: n_patients patients per resample, with replacement
    values = []
    for drawn in rng.integers(0, patients.max() + 1, size=(n_boot, patients.max() + 1)):
        rows = np.concatenate([np.flatnonzero(patients == p) for p in drawn])
        values.append(metric(frame["y_true"].to_numpy()[rows], frame["probability"].to_numpy()[rows]))
    values = np.asarray(values, float)
    return tuple(np.percentile(values[~np.isnan(values)], [2.5, 97.5]))


def test_vectorised_bootstrap_equals_explicit_resampling():
    y, prob = noisy_scores(300)
    frame = pd.DataFrame({"patient_id": np.arange(300) // 3, "y_true": y, "probability": prob})

    def auc(y_true, p):
        return skm.roc_auc_score(y_true, p) if 0 < y_true.sum() < len(y_true) else np.nan

    def sensitivity(y_true, p):
        return skm.recall_score(y_true, p >= 0.4)

    assert ev.bootstrap_ci(frame, "auc", n_boot=100) == pytest.approx(explicit_interval(frame, auc, n_boot=100))
    assert ev.bootstrap_ci(frame, "sensitivity", threshold=0.4, n_boot=100) == pytest.approx(
        explicit_interval(frame, sensitivity, n_boot=100)
    )


def test_patient_draws_take_whole_patients_n_times():
    draws = ev.patient_draws(np.array([0, 0, 1, 2, 2, 2]), n_boot=50, seed=0)
    assert draws.shape == (50, 3) and (draws.sum(axis=1) == 3).all()
    assert len({tuple(row) for row in draws}) > 1  # resamples differ


def test_intervals_contain_the_estimate_and_are_reproducible():
    y, prob = noisy_scores(600)
    frame = pd.DataFrame({"patient_id": np.arange(600) // 4, "y_true": y, "probability": prob})
    table = ev.metrics_with_ci(frame, threshold=0.45)
    assert list(table.index) == list(ev.METRICS)
    assert (table["low"] <= table["estimate"]).all() and (table["estimate"] <= table["high"]).all()
    assert table.loc["auc", "estimate"] == pytest.approx(skm.roc_auc_score(y, prob))
    assert table.equals(ev.metrics_with_ci(frame, threshold=0.45))
    assert not table.equals(ev.metrics_with_ci(frame, threshold=0.45, seed=1))


def test_bootstrap_rejects_bad_input():
    frame = clustered_predictions()
    with pytest.raises(ValueError, match="unknown metric"):
        ev.bootstrap_ci(frame, "youden")
    with pytest.raises(ValueError, match="patient_id"):
        ev.bootstrap_ci(frame.drop(columns="patient_id"))


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_sensitivity_threshold_meets_target_with_fewest_false_positives(target):
    y, prob = noisy_scores(500, seed=3)
    threshold = ev.choose_threshold(y, prob, rule="sensitivity", target=target)
    assert np.mean(prob[y == 1] >= threshold) >= target
    higher = np.unique(prob[prob > threshold])
    assert all(np.mean(prob[y == 1] >= t) < target for t in higher)


def test_youden_threshold_maximises_j():
    y, prob = noisy_scores(300, seed=4)

    def j(t):
        return np.mean(prob[y == 1] >= t) + np.mean(prob[y == 0] < t) - 1

    threshold = ev.choose_threshold(y, prob)
    assert threshold in prob
    assert j(threshold) == pytest.approx(max(j(t) for t in np.unique(prob)))


def test_choose_threshold_needs_both_classes_and_a_known_rule():
    with pytest.raises(ValueError, match="both"):
        ev.choose_threshold([1, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="rule"):
        ev.choose_threshold([0, 1], [0.2, 0.9], rule="accuracy")


def test_predictive_values_by_bayes():
    table = ev.predictive_values(0.9, 0.8, prevalences=(0.1, 0.5))
    # prevalence 10%: PPV = 0.09 / (0.09 + 0.18), NPV = 0.72 / (0.72 + 0.01)
    assert table["ppv"].tolist() == pytest.approx([1 / 3, 0.9 / 1.1])
    assert table["npv"].tolist() == pytest.approx([0.72 / 0.73, 0.4 / 0.45])
    assert table["prevalence"].tolist() == [0.1, 0.5]


def test_majority_baseline():
    result = ev.majority_baseline(["NORMAL"] * 7 + ["COVID"] * 3, [1, 0, 0, 0])
    assert result["majority_class"] == "NORMAL"
    assert (result["auc"], result["sensitivity"], result["specificity"], result["accuracy"]) == (
        0.5,
        0,
        1,
        0.75,
    )
    assert ev.majority_baseline([1, 1, 0], [1, 0])["sensitivity"] == 1


def test_majority_baseline_names_the_tasks_classes():
    # covid-vs-pneumonia: the majority of the training labels is PNEUMONIA, never NORMAL
    pneumonia = ev.majority_baseline(["PNEUMONIA"] * 6 + ["COVID"] * 4, [1, 0, 0])
    assert pneumonia["majority_class"] == "PNEUMONIA"
    assert (pneumonia["sensitivity"], pneumonia["specificity"]) == (0, 1)
    assert ev.majority_baseline([0, 0, 1], [1, 0], classes=("PNEUMONIA", "COVID"))["majority_class"] == "PNEUMONIA"
    three = ev.majority_baseline([0, 0, 0, 1], [1, 0], classes=("NORMAL", "PNEUMONIA", "COVID"))
    assert three["majority_class"] == "not COVID (NORMAL or PNEUMONIA)"
    assert ev.majority_baseline(["COVID"] * 3 + ["PNEUMONIA"], [1, 0])["majority_class"] == "COVID"
    assert ev.majority_baseline(["COVID"], [1])["majority_class"] == "COVID"
    assert ev.majority_baseline(["COVID", "NORMAL"], [1, 0])["majority_class"] == "NORMAL"  # a tie


def test_negative_name_per_task():
    assert ev.negative_name() == "NORMAL"
    assert ev.negative_name(("PNEUMONIA", "COVID")) == "PNEUMONIA"
    assert ev.negative_name(("NORMAL", "PNEUMONIA", "COVID")) == "not COVID (NORMAL or PNEUMONIA)"


def test_calibration_table_and_brier():
    rng = np.random.default_rng(0)
    prob = rng.random(20_000)
    calibrated = (rng.random(len(prob)) < prob).astype(int)  # the outcome happens with the stated probability
    table = ev.calibration(calibrated, prob, n_bins=5)
    assert len(table) == 5
    assert np.abs(table["fraction_positive"] - table["mean_probability"]).max() < 0.03
    assert table["mean_probability"].tolist() == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9], abs=0.01)
    assert table.attrs["brier"] == pytest.approx(np.mean((prob - calibrated) ** 2))
    overconfident = ev.calibration(calibrated, np.clip(prob * 2 - 0.5, 0, 1), n_bins=5)
    assert overconfident["fraction_positive"].iloc[-1] < overconfident["mean_probability"].iloc[-1] - 0.05
    assert ev.brier_score(["COVID", "NORMAL"], [1.0, 0.5]) == pytest.approx(0.125)
