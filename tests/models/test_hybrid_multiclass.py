"""The hybrid's classifiers with three classes: XGBoost multi:softprob and multinomial logistic regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

pytest.importorskip("xgboost")

from helpers.data.tasks import TASKS  # noqa: E402
from helpers.models.hybrid import Features, Hybrid, train_logistic, train_xgboost  # noqa: E402

CLASSES = TASKS["three-class"].classes
SEEDS = range(4)


def synthetic_features(seed: int, *, shuffle: bool = False, n: int = 240, d: int = 20) -> Features:
    """Feature rows whose first three columns shift with the class (1.5 SD), the rest noise; one row per patient."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[np.arange(n), y] += 1.5
    labels = np.asarray(CLASSES)[rng.permutation(y) if shuffle else y]
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    manifest = pd.DataFrame({"label": labels, "split": split, "patient_id": [f"p{i}" for i in range(n)]})
    return Features(X=X, manifest=manifest, seconds=0.0, from_cache=False, weights=None, shape=(d,))


def held_out_auc(kind: str, features: Features) -> float:
    if kind == "xgboost":
        model, info = train_xgboost(features, device="cpu", n_estimators=200, n_jobs=1, classes=CLASSES)
        assert model.get_params()["objective"] == "multi:softprob" and "val_mlogloss" in info
    else:
        model, info = train_logistic(features, classes=CLASSES)
    X, y = features.split("test", CLASSES)
    prob = Hybrid({}, model).predict_features(X)
    assert prob.shape == (len(y), 3) and np.allclose(prob.sum(axis=1), 1)
    return roc_auc_score(y, prob, multi_class="ovr", average="macro")


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_three_class_hybrids_learn_and_are_at_chance_with_shuffled_labels(kind):
    # Measured macro OvR AUC on test (seeds 0-3), learned | shuffled:
    #   xgboost  .912 .878 .857 .849 | .582 .453 .429 .513 (mean .494)
    #   logistic .909 .890 .867 .896 | .567 .450 .424 .498 (mean .485)
    learned = [held_out_auc(kind, synthetic_features(seed)) for seed in SEEDS]
    shuffled = [held_out_auc(kind, synthetic_features(seed, shuffle=True)) for seed in SEEDS]
    print(kind, np.round(learned, 3), np.round(shuffled, 3))
    assert min(learned) > 0.75
    assert abs(np.mean(shuffled) - 0.5) < 0.07


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_a_saved_three_class_hybrid_reloads_and_reproduces_every_class_probability(course_dirs, kind):
    from tiny_models import SPLITS, hybrid_images, save_tiny_hybrid

    from helpers.models.hybrid import load_hybrid
    from helpers.runs import read_run

    run = read_run(save_tiny_hybrid(classifier=kind, task="three-class"))
    assert (run.name, run.classes) == (f"vgg16-{kind}-three-class", CLASSES)
    assert set(run.metrics["multiclass"]["test"]["sensitivity"]) == set(CLASSES)
    scored = np.isin(SPLITS, ["val", "test"])
    prob = load_hybrid(run.path).predict(hybrid_images()[scored])
    np.testing.assert_allclose(prob, np.vstack([run.probabilities("val"), run.probabilities("test")]), atol=1e-5)
    np.testing.assert_array_equal(run.predictions["probability"], run.predictions["prob_COVID"])
