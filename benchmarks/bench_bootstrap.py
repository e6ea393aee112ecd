"""The patient bootstrap of ``helpers.evaluation``: vectorised replicates vs an explicit resampling loop.

The same 1000 resamples of the same patients, once through the vectorised metrics
(``bootstrap_ci(frame, "auc")``) and once through scikit-learn's AUC applied to
each resample in a Python loop (:func:`looped_auc_interval`), which gives the same
interval. Also the time of the full table of ``metrics_with_ci`` (every
metric, 1000 resamples), what notebook 05 and the report compute. Run it from the
project root::

    python -m benchmarks.bench_bootstrap [N_IMAGES]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from helpers import evaluation
from helpers.evaluation.bootstrap import patient_draws


def predictions(n_images: int = 1000, images_per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    """Noisy scores of a test split: about 35% COVID, several images per patient, rounded (ties)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_images) < 0.35).astype(int)
    prob = 1 / (1 + np.exp(-(1.5 * y - 0.7 + rng.normal(size=n_images))))
    return pd.DataFrame({"patient_id": np.arange(n_images) // images_per_patient, "y_true": y,
                         "probability": prob.round(3)})


def looped_auc_interval(frame: pd.DataFrame, *, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """The naive way: for each resample (the same patient draws), repeat the images, call scikit-learn."""
    groups = pd.factorize(frame["patient_id"].astype(str))[0]
    y, prob = frame["y_true"].to_numpy(), frame["probability"].to_numpy()
    values = []
    for counts in patient_draws(groups, n_boot=n_boot, seed=seed):
        rows = np.repeat(np.arange(len(y)), counts[groups])
        values.append(roc_auc_score(y[rows], prob[rows]) if 0 < y[rows].sum() < len(rows) else np.nan)
    return tuple(np.nanpercentile(values, [2.5, 97.5]))


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def run(n_images: int = 1000, n_boot: int = 1000) -> dict:
    frame = predictions(n_images)
    vectorised, vectorised_s = _timed(evaluation.bootstrap_ci, frame, "auc", n_boot=n_boot)
    looped, looped_s = _timed(looped_auc_interval, frame, n_boot=n_boot)
    _, table_s = _timed(evaluation.metrics_with_ci, frame, threshold=0.5, n_boot=n_boot)
    return {"images": n_images, "patients": int(frame["patient_id"].nunique()), "n_boot": n_boot,
            "vectorised_interval": vectorised, "loop_interval": looped,
            "vectorised_seconds": vectorised_s, "loop_seconds": looped_s, "speedup": looped_s / vectorised_s,
            "table_seconds": table_s, "metrics": len(evaluation.METRICS)}


def table(result: dict) -> str:
    same = np.allclose(result["vectorised_interval"], result["loop_interval"])
    return "\n".join([
        f"## Patient bootstrap ({result['images']} images, {result['patients']} patients, "
        f"{result['n_boot']} resamples)", "",
        "| AUC interval | seconds | ratio |", "|---|---|---|",
        f"| scikit-learn in a loop | {result['loop_seconds']:.2f} | 1.0 |",
        f"| vectorised | {result['vectorised_seconds']:.3f} | {result['speedup']:.0f}x faster |",
        "", f"Both give the interval {np.round(result['vectorised_interval'], 4).tolist()}"
        + ("" if same else f" / {np.round(result['loop_interval'], 4).tolist()} (DIFFERENT)") + ". "
        f"The full table of {result['metrics']} metrics with intervals: {result['table_seconds']:.2f} s."])


if __name__ == "__main__":
    print(table(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
