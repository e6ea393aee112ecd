"""Temperature scaling: probabilities that mean what they say, fitted on validation, never on test.

Class weights and long training make a network over-confident: its probabilities crowd near 0
and 1. Temperature scaling (Guo et al. 2017) divides the model's logit by one number ``T``
chosen to minimise the log loss on the validation split: ``T > 1`` softens over-confident
probabilities, ``T < 1`` sharpens timid ones. Dividing by a positive number keeps the order of
the scores, so the AUC is exactly the same (in float64: only a T far below 1 could round two very
confident scores to the same 1.0); a threshold on the probability moves with it
(:meth:`Calibration.apply` it to the threshold too). Stored in ``metrics.json`` as
``"calibration": {"method": "temperature", "T": ...}`` (:meth:`Calibration.to_dict`).

The module is named ``recalibration`` because ``helpers.evaluation.calibration`` is the
reliability table. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss, log_loss

from helpers.evaluation import calibration, to_binary

METHOD = "temperature"
T_BOUNDS = (0.05, 20.0)
# A float32 probability of exactly 1.0 only says "logit above about 16.6": in the fit, logits are
# limited to this, so that one saturated wrong call cannot drive T to its bound.
FIT_LIMIT = 17.0


def logits(prob) -> np.ndarray:
    """The logit of each probability, float64; 0 and 1 map to large finite values, order kept."""
    prob = np.clip(np.asarray(prob, np.float64), np.finfo(np.float64).tiny, np.nextafter(1.0, 0.0))
    return logit(prob)


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """``sigmoid(logit(prob) / T)``: the same ranking, softer (T > 1) or sharper (T < 1) probabilities."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive, got {temperature!r}")
    return expit(logits(prob) / float(temperature))


def fit_temperature(y_val, prob_val) -> float:
    """The ``T`` minimising the log loss of ``apply_temperature(prob_val, T)`` on the validation labels.

    Bounded 1-D search (``scipy.optimize.minimize_scalar``) on ``log T`` over :data:`T_BOUNDS`.
    """
    y = to_binary(y_val)
    if not 0 < y.sum() < len(y):
        raise ValueError("fitting a temperature needs both COVID and NORMAL images in the validation data")
    z = np.clip(logits(prob_val), -FIT_LIMIT, FIT_LIMIT)

    def loss(log_t):
        return log_loss(y, expit(z / np.exp(log_t)), labels=[0, 1])

    result = minimize_scalar(loss, bounds=tuple(np.log(T_BOUNDS)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


SEPARATED = ("the validation scores separate COVID from NORMAL perfectly, so no temperature can be learned from "
             "them (the fit would push every probability to 0 or 1); the probabilities are left as they are (T = 1)")
UNINFORMATIVE = ("the temperature reached its upper bound: on the validation split the scores carry little "
                 "information, so the calibrated probabilities stay near 0.5; the model itself needs work")


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature, as stored with a run (``metrics.json["calibration"]``); ``note`` when the fit degenerated."""

    T: float
    method: str = METHOD
    n_val: int | None = None
    note: str | None = None

    @classmethod
    def fit(cls, y_val, prob_val) -> Calibration:
        """:func:`fit_temperature`; when val is perfectly separated (T at its lower bound) T = 1 and a note."""
        temperature, n_val = fit_temperature(y_val, prob_val), len(np.asarray(prob_val))
        if temperature <= min(T_BOUNDS) * 1.01:
            return cls(T=1.0, n_val=n_val, note=SEPARATED)
        return cls(T=temperature, n_val=n_val, note=UNINFORMATIVE if temperature >= max(T_BOUNDS) / 1.01 else None)

    def apply(self, prob) -> np.ndarray:
        return apply_temperature(prob, self.T)

    def to_dict(self) -> dict:
        return {"method": self.method, "T": self.T, "n_val": self.n_val, "note": self.note}

    def summary(self, y_test, prob_test) -> dict:
        """:meth:`to_dict` and the Brier score of the test images before and after (what a run stores)."""
        scores = before_after(y_test, prob_test, self.apply(prob_test))
        return {**self.to_dict(), "brier_test_before": scores["brier_before"], "brier_test_after": scores["brier_after"]}

    @classmethod
    def from_dict(cls, record: dict | None) -> Calibration | None:
        """The stored calibration, ``None`` when there is none; refuses unknown methods and bad values."""
        if not record:
            return None
        if record.get("method") != METHOD:
            raise ValueError(f"unknown calibration method {record.get('method')!r}; this course fits {METHOD!r}")
        temperature = record.get("T")
        if not isinstance(temperature, int | float) or not temperature > 0:
            raise ValueError(f"the stored temperature must be a positive number, got {temperature!r}")
        return cls(T=float(temperature), n_val=record.get("n_val"), note=record.get("note"))


def calibrate_predictions(predictions: pd.DataFrame, *, fit_split: str = "val") -> tuple[pd.DataFrame, Calibration]:
    """Fit the temperature on ``fit_split`` rows and apply it to every row: ``probability`` replaced,
    the model's own score kept as ``raw_probability``."""
    rows = predictions[predictions["split"] == fit_split]
    fitted = Calibration.fit(rows["y_true"], rows["probability"])
    calibrated = predictions.assign(raw_probability=predictions["probability"],
                                    probability=fitted.apply(predictions["probability"]))
    return calibrated, fitted


def before_after(y_true, prob_before, prob_after, *, n_bins: int = 10) -> dict:
    """Brier scores (scikit-learn) and reliability tables of the same images before and after calibration."""
    y = to_binary(y_true)
    return {
        "brier_before": float(brier_score_loss(y, np.asarray(prob_before, float))),
        "brier_after": float(brier_score_loss(y, np.asarray(prob_after, float))),
        "before": calibration(y, prob_before, n_bins),
        "after": calibration(y, prob_after, n_bins),
    }
