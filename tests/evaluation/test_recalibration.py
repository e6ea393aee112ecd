"""helpers.evaluation.recalibration: temperature scaling recovers a known over-confidence, helps held-out data,
never changes the ranking, survives saturated probabilities, and round-trips through metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from helpers.evaluation.recalibration import (
    Calibration,
    apply_temperature,
    before_after,
    calibrate_predictions,
    fit_temperature,
)


def outcomes(seed: int, n: int = 2000, *, sharpen: float = 4.0):
    """Labels drawn from a calibrated model's probabilities ``sigmoid(z)``, and a model reporting ``sigmoid(sharpen z)``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < expit(z)).astype(int)
    return y, expit(sharpen * z)


@pytest.mark.parametrize("seed", range(5))
def test_an_over_confident_model_is_found_and_helped_on_held_out_data(seed):
    y_val, prob_val = outcomes(seed)
    y_test, prob_test = outcomes(seed + 100)
    temperature = fit_temperature(y_val, prob_val)
    assert 3.3 < temperature < 4.8  # the logits were multiplied by 4
    after = apply_temperature(prob_test, temperature)
    scores = before_after(y_test, prob_test, after)
    assert scores["brier_after"] < scores["brier_before"] - 0.01, scores
    assert roc_auc_score(y_test, after) == roc_auc_score(y_test, prob_test)


@pytest.mark.parametrize(("sharpen", "low", "high"), [(1.0, 0.8, 1.25), (1 / 3, 0.27, 0.40)])
def test_a_calibrated_model_keeps_t_near_1_and_a_timid_one_is_sharpened(sharpen, low, high):
    temperatures = [fit_temperature(*outcomes(seed, sharpen=sharpen)) for seed in range(3)]
    assert all(low < t < high for t in temperatures), temperatures


def test_the_reliability_tables_move_to_the_diagonal():
    y, prob = outcomes(7, n=5000)
    result = before_after(y, prob, apply_temperature(prob, fit_temperature(*outcomes(8, n=5000))))

    def gap(table):
        return np.mean(np.abs(table["mean_probability"] - table["fraction_positive"]))

    assert gap(result["after"]) < 0.5 * gap(result["before"])


def test_probabilities_of_exactly_0_and_1_are_handled():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    prob = np.array([0.0, 1e-30, 1.0, 0.9, 0.2, 1.0, 0.7, 1.0])  # the last: a saturated wrong call
    temperature = fit_temperature(y, prob)
    assert np.isfinite(temperature) and temperature > 1
    after = apply_temperature(prob, temperature)
    assert np.all(np.isfinite(after)) and np.all((after > 0) & (after < 1))
    assert np.array_equal(np.argsort(after, kind="stable"), np.argsort(prob, kind="stable"))
    assert after[0] < after[1]  # 0 stays below the smallest positive probability
    assert roc_auc_score(y, after) == roc_auc_score(y, prob)


@pytest.mark.parametrize("seed", range(3))
def test_calibration_never_changes_the_auc(seed):
    """Any positive temperature keeps the ranking, ties and exact 0 and 1 included, on validation and test alike.

    (Within float64: a temperature far below 1 can push two very confident scores to the same 1.0.)
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    prob = expit(rng.normal(0, 2.5, 400).clip(-8, 8) + 1.5 * y).astype(np.float32)  # a float32 model output
    prob[:40] = np.round(prob[:40], 1)  # ties
    prob[40:44] = [0.0, 1.0, 0.0, 1.0]
    calibration = Calibration.fit(y[:200], prob[:200])
    for temperature in (0.5, 0.8, calibration.T, 2.0, 20.0):
        for part in (slice(0, 200), slice(200, None)):
            after = apply_temperature(prob[part], temperature)
            assert roc_auc_score(y[part], after) == roc_auc_score(y[part], prob[part]), temperature
    np.testing.assert_array_equal(calibration.apply(prob), apply_temperature(prob, calibration.T))


def test_temperature_1_changes_nothing_and_bad_temperatures_are_refused():
    prob = np.array([0.01, 0.3, 0.5, 0.99])
    np.testing.assert_allclose(apply_temperature(prob, 1.0), prob, rtol=1e-12)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            apply_temperature(prob, bad)
    with pytest.raises(ValueError, match="both COVID and NORMAL"):
        fit_temperature([1, 1, 1], [0.2, 0.5, 0.9])


def test_the_calibration_round_trips_through_metrics_json():
    stored = Calibration.fit(*outcomes(0))
    record = json.loads(json.dumps({"calibration": stored.to_dict()}))["calibration"]
    assert record["method"] == "temperature" and record["n_val"] == 2000
    assert Calibration.from_dict(record) == stored
    assert Calibration.from_dict(None) is None
    with pytest.raises(ValueError, match="unknown calibration method 'platt'"):
        Calibration.from_dict({"method": "platt", "T": 2})
    with pytest.raises(ValueError, match="positive number"):
        Calibration.from_dict({"method": "temperature", "T": "2"})


def test_calibrate_predictions_fits_on_val_only():
    y_val, prob_val = outcomes(1)
    y_test, prob_test = outcomes(2)
    frame = pd.concat([pd.DataFrame({"split": "val", "y_true": y_val, "probability": prob_val}),
                       pd.DataFrame({"split": "test", "y_true": y_test, "probability": prob_test})], ignore_index=True)
    calibrated, fitted = calibrate_predictions(frame)
    flipped, refitted = calibrate_predictions(frame.assign(y_true=np.where(frame["split"] == "test", 1 - frame["y_true"],
                                                                           frame["y_true"])))
    assert fitted == refitted == Calibration.fit(y_val, prob_val)
    np.testing.assert_array_equal(calibrated["raw_probability"], frame["probability"])
    np.testing.assert_allclose(calibrated["probability"], apply_temperature(frame["probability"], fitted.T))
    threshold = 0.5
    assert ((calibrated["raw_probability"] >= threshold) == (calibrated["probability"] >= fitted.apply(threshold))).all()


def test_scores_without_information_run_into_the_bound_and_say_so():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    useless = Calibration.fit(y, expit(rng.normal(0, 3, 400)))  # confident and unrelated to the labels
    assert useless.T == pytest.approx(20.0, rel=0.01) and "upper bound" in useless.note
    assert Calibration.fit(*outcomes(0)).note is None


def test_a_perfectly_separated_validation_split_leaves_the_probabilities_alone():
    """Maximum likelihood would send T to 0 (every probability to 0 or 1): T stays 1, with the reason."""
    separated = Calibration.fit([0, 0, 1, 1], [0.2, 0.4, 0.6, 0.7])
    assert separated.T == 1.0 and "separate COVID from NORMAL perfectly" in separated.note
    np.testing.assert_allclose(separated.apply([0.2, 0.6]), [0.2, 0.6])
    assert Calibration.from_dict(separated.to_dict()) == separated


def test_the_report_shows_each_runs_temperature_and_brier_scores(tmp_path):
    from types import SimpleNamespace

    from helpers.app.report import build_report
    from helpers.runs import save_run

    y_val, prob_val = outcomes(3, n=200)
    y_test, prob_test = outcomes(4, n=200)
    predictions = pd.DataFrame({"path": [f"{i}.png" for i in range(400)], "patient_id": [f"p{i}" for i in range(400)],
                                "split": ["val"] * 200 + ["test"] * 200, "label": "x",
                                "y_true": np.concatenate([y_val, y_test]), "probability": np.concatenate([prob_val,
                                                                                                       prob_test])})
    manifest = pd.DataFrame({"split": ["train"] * 10 + list(predictions["split"])})
    dataset = SimpleNamespace(name="synthetic", synthetic=True, modality="xray", manifest=manifest)
    metrics = save_run("cnn", dataset=dataset, predictions=predictions, output_dir=tmp_path)
    markdown, html = build_report(tmp_path, n_boot=20)
    text = markdown.read_text()
    stored = metrics["calibration"]
    assert f"| cnn | {stored['T']:.2f} | {stored['brier_test_before']:.3f} | {stored['brier_test_after']:.3f} |" in text
    assert stored["brier_test_after"] < stored["brier_test_before"]
    assert "fitted on the validation split" in html.read_text()
