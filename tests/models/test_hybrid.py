"""VGG16 features + XGBoost on synthetic X-rays: learns, caches, reloads, and never peeks at the test split.

One real feature extraction (random VGG16 weights at 64 px; ImageNet weights
cannot be downloaded in tests) is shared by the module. The random weights are
drawn from a fixed seed, so the features are the same on every run. Random conv
features of the synthetic images separate COVID from NORMAL well (test AUC
0.93-0.97 over five seeds when this was written); the shuffled-label check makes
sure the score comes from the labels, not from a leak.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("xgboost")
pytest.importorskip("tensorflow")

import xgboost  # noqa: E402
from conftest import check_recorded_metrics  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from helpers import plots  # noqa: E402
from helpers.data.dataset import course_dataset  # noqa: E402
from helpers.images import load_images  # noqa: E402
from helpers.models import hybrid  # noqa: E402
from helpers.models.hybrid import features as extraction  # noqa: E402
from helpers.paths import run_dir  # noqa: E402

SIZE = 64
FAST = dict(n_estimators=200, learning_rate=0.1, max_depth=3, early_stopping_rounds=30, n_jobs=1, device="cpu")
# one thread: on a shared 2-core CI machine, two OpenMP threads on a tiny table are often many times slower


@pytest.fixture(scope="module")
def setting(module_course_dirs):
    """Synthetic smoke dataset, its 64 px images and their pooled random-VGG16 features, in temporary folders."""
    dataset = course_dataset("synthetic", smoke=True, verbose=False, n_patients=200)  # enough test patients for a stable AUC
    images = load_images(dataset, SIZE, progress=False)
    return dataset, images, hybrid.extract_features(dataset, images, weights=None, pooling="avg")


@pytest.fixture(scope="module")
def trained(setting):
    model, info = hybrid.train_xgboost(setting[2], **FAST)
    return model, info


def test_features_have_the_expected_shape(setting):
    _, images, features = setting
    assert features.X.shape == (len(images), 512) and features.X.dtype == np.float32
    assert np.isfinite(features.X).all() and features.X.std() > 0
    assert features.weights is None and not features.from_cache and features.shape == (512,)
    assert features.manifest["path"].tolist() == images.manifest["path"].tolist()


def test_xgboost_learns_the_synthetic_task(setting, trained):
    model, info = trained
    X, y = setting[2].split("test")
    assert roc_auc_score(y, model.predict_proba(X)[:, 1]) > 0.85
    assert info["best_iteration"] < info["rounds"] <= FAST["n_estimators"] and info["seconds"] > 0


def test_shuffled_training_labels_give_chance(setting, trained):
    """The same pipeline with train labels permuted (three times) must fall to about 0.5: no leak."""
    features = setting[2]
    X, y = features.split("test")
    train = (features.manifest["split"] == "train").to_numpy()
    shuffled = []
    for seed in range(3):
        manifest = features.manifest.copy()
        manifest.loc[train, "label"] = np.random.default_rng(seed).permutation(manifest.loc[train, "label"].to_numpy())
        model, _ = hybrid.train_xgboost(dataclasses.replace(features, manifest=manifest), **FAST)
        shuffled.append(roc_auc_score(y, model.predict_proba(X)[:, 1]))
    real = roc_auc_score(y, trained[0].predict_proba(X)[:, 1])
    assert abs(np.mean(shuffled) - 0.5) < 0.2 and real - np.mean(shuffled) > 0.25


def test_early_stopping_sees_validation_only(setting, monkeypatch):
    features = setting[2]
    seen = {}
    original = xgboost.XGBClassifier.fit

    def spy(self, X, y, **kwargs):
        seen.update(X=X, eval_set=kwargs["eval_set"])
        return original(self, X, y, **kwargs)

    monkeypatch.setattr(xgboost.XGBClassifier, "fit", spy)
    model, _ = hybrid.train_xgboost(features, device="cpu", n_estimators=20, n_jobs=1)
    (X_eval, y_eval), = seen["eval_set"]
    np.testing.assert_array_equal(X_eval, features.split("val")[0])
    np.testing.assert_array_equal(seen["X"], features.split("train")[0])
    assert model.get_params()["early_stopping_rounds"] == 50 and model.get_params()["eval_metric"] == "auc"


def test_logistic_regression_chooses_c_on_validation(setting):
    model, info = hybrid.train_logistic(setting[2], Cs=(0.01, 1.0))
    assert info["C"] in (0.01, 1.0) and info["val_auc"] == max(info["val_auc_by_C"].values())
    X, y = setting[2].split("test")
    assert roc_auc_score(y, model.predict_proba(X)[:, 1]) > 0.85


def _must_not_extract(*args, **kwargs):
    raise RuntimeError("extractor called")


def test_cache_is_reused_and_invalidated(setting, monkeypatch):
    dataset, images, features = setting
    monkeypatch.setattr(extraction, "feature_extractor", _must_not_extract)
    again = hybrid.extract_features(dataset, images, weights=None, pooling="avg")
    assert again.from_cache and again.seconds == features.seconds
    np.testing.assert_array_equal(again.X, features.X)
    changed = [dict(pooling="flatten"), dict(seed=7), dict(weights="imagenet")]
    for options in changed:
        with pytest.raises(RuntimeError, match="extractor called"):
            hybrid.extract_features(dataset, images, **{"weights": None, **options})
    smaller = load_images(dataset, 32, progress=False)
    with pytest.raises(RuntimeError, match="extractor called"):
        hybrid.extract_features(dataset, smaller, weights=None)


def test_cache_for_other_images_is_not_used(setting, monkeypatch):
    dataset, images, features = setting
    subset = dataclasses.replace(images, images=images.images[:10], manifest=images.manifest.iloc[:10])
    monkeypatch.setattr(extraction, "feature_extractor", _must_not_extract)
    with pytest.raises(RuntimeError, match="extractor called"):
        hybrid.extract_features(dataset, subset, weights=None)


def _go_offline(monkeypatch):
    """ImageNet weights cannot be downloaded; random weights still build."""
    original = extraction._build_extractor

    def build(spec, size, weights, pooling):
        if weights is not None:
            raise OSError("no network")
        return original(spec, size, weights, pooling)

    monkeypatch.setattr(extraction, "_build_extractor", build)


def test_offline_weights_fall_back_to_random_with_a_warning(monkeypatch):
    _go_offline(monkeypatch)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        _, used = hybrid.feature_extractor("vgg16", size=32, weights="imagenet")
    assert used is None
    with pytest.raises(OSError):
        hybrid.feature_extractor("vgg16", size=32, weights="imagenet", strict=True)


def test_offline_run_reuses_the_random_feature_cache(setting, monkeypatch):
    """Asked for ImageNet weights while offline: the fallback finds the random-weight features already cached."""
    dataset, images, features = setting
    _go_offline(monkeypatch)
    monkeypatch.setattr(extraction, "backbone_features", _must_not_extract)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        again = hybrid.extract_features(dataset, images, weights="imagenet")
    assert again.from_cache and again.weights is None
    np.testing.assert_array_equal(again.X, features.X)


def test_extractor_stays_float32_under_mixed_precision():
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, _ = hybrid.feature_extractor("vgg16", size=32, weights=None)
        assert model.output.dtype == "float32" and model.get_layer("block1_conv1").compute_dtype == "float32"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_saved_model_reloads_and_reproduces_predictions(setting, trained, kind):
    dataset, images, features = setting
    model = trained[0] if kind == "xgboost" else hybrid.train_logistic(features, Cs=(0.1,))[0]
    metrics = hybrid.save_hybrid(f"hybrid-{kind}", model, features, dataset)
    folder = run_dir(dataset.name, f"hybrid-{kind}")
    assert {"metrics.json", "predictions.csv", "features.json"} <= {p.name for p in folder.iterdir()}
    assert (folder / ("model.ubj" if kind == "xgboost" else "model.joblib")).is_file()
    assert metrics["features"]["pooling"] == "avg" and metrics["classifier"] == kind
    recorded = pd.read_csv(folder / "predictions.csv", float_precision="round_trip")
    assert recorded["split"].unique().tolist() == ["val", "test"]
    reloaded = hybrid.load_hybrid(folder)
    assert reloaded.kind == kind
    for split in ("val", "test"):
        X, part = features.split(split)[0], recorded[recorded["split"] == split]
        np.testing.assert_array_equal(reloaded.predict_features(X), part["probability"])  # what the CSV holds
        np.testing.assert_array_equal(reloaded.predict_features(X), model.predict_proba(X)[:, 1])  # as trained
        # the CSV gives back the threshold's side of every image
        check_recorded_metrics(metrics[split], part["y_true"], part["probability"], metrics["threshold"])
    pixels = np.concatenate([images.images[(images.manifest["split"] == s).to_numpy()] for s in ("val", "test")])
    np.testing.assert_allclose(reloaded.predict(pixels[:16]), recorded["probability"][:16], atol=1e-5)
    (folder / hybrid.CLASSIFIER_FILES[kind]).unlink()  # as in a run saved before this format
    with pytest.raises(ValueError, match="train the model again"):
        hybrid.load_hybrid(folder)


def test_figures_and_table(setting, trained):
    dataset, _, features = setting
    metrics = hybrid.save_hybrid("hybrid-fig", trained[0], features, dataset, info=trained[1])
    table = hybrid.results_table([metrics])
    assert table.loc["hybrid-fig", "n_features"] == 512 and table.loc["hybrid-fig", "training s"] > 0
    for fig in (plots.plot_feature_importance(trained[0], features, top_k=5, synthetic=True),
                plots.plot_time_breakdown(table, synthetic=True),
                plots.plot_boosting({"xgboost": trained[0]}, synthetic=True)):
        assert "SYNTHETIC" in fig.axes[0].get_title()
    assert plots.hybrid.feature_name(512 + 3, (2, 2, 512)) == "ch 3 @ (row 0, col 1)"
    with pytest.raises(ValueError, match="flatten"):
        plots.plot_importance_map(trained[0], features)


def test_importance_map_of_flattened_features(setting, trained):
    """The 512 pooled values read as a 2 x 2 x 128 map: the map shows each position's share of the gain."""
    features = dataclasses.replace(setting[2], pooling="flatten", shape=(2, 2, 128))
    fig = plots.plot_importance_map(trained[0], features, image=setting[1].images[0])
    shown = fig.axes[0].get_images()[-1].get_array()
    assert shown.shape == (2, 2) and np.isclose(shown.sum(), 1.0)
