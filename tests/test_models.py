"""Models learn on data where the answer is known; backbones build; saved models reload; offline weights fall back."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from helpers import images  # noqa: E402
from helpers.data import dataset as datasets  # noqa: E402
from helpers.evaluation import binary_metrics  # noqa: E402
from helpers.models import (  # noqa: E402
    BACKBONES,
    Preprocess,
    build_cnn,
    build_transfer,
    gradcam_layer,
    train,  # noqa: E402
    unfreeze_top,
)


@pytest.fixture(scope="module")
def synthetic_images(module_course_dirs):
    dataset = datasets.course_dataset("synthetic", smoke=True)
    return dataset, images.load_images(dataset, 64, progress=False), module_course_dirs[1]


def test_small_cnn_learns_synthetic_xrays_well_above_chance(synthetic_images):
    dataset, image_set, _ = synthetic_images
    keras.utils.set_random_seed(0)
    model = build_cnn(64)
    train.fit(model, image_set, epochs=8, batch_size=16, learning_rate=3e-3, verbose=0)
    test_images, y = train.split_arrays(image_set, "test")
    assert binary_metrics(y, train.predict(model, test_images))["auc"] > 0.85


def test_shuffled_labels_leave_the_cnn_at_chance(synthetic_images):
    dataset, image_set, _ = synthetic_images
    rng = np.random.default_rng(0)
    shuffled = image_set.manifest.copy()
    train_rows = shuffled["split"] == "train"
    shuffled.loc[train_rows, "label"] = rng.permutation(shuffled.loc[train_rows, "label"].to_numpy())
    broken = images.ImageSet(image_set.images, shuffled)
    keras.utils.set_random_seed(0)
    model = build_cnn(64)
    train.fit(model, broken, epochs=8, batch_size=16, learning_rate=3e-3, verbose=0)
    test_images, y = train.split_arrays(image_set, "test")
    assert binary_metrics(y, train.predict(model, test_images))["auc"] < 0.8


def test_saved_model_reloads_and_predicts_what_was_recorded(synthetic_images):
    dataset, image_set, outputs = synthetic_images
    model = build_cnn(64, filters=(8, 16))
    history = train.fit(model, image_set, epochs=1, verbose=0)
    metrics = train.evaluate_and_save(model, image_set, dataset, history=history)
    folder = outputs / "synthetic" / "cnn"
    assert {p.name for p in folder.iterdir()} >= {"model.keras", "metrics.json", "history.json", "predictions.csv"}
    recorded = pd.read_csv(folder / "predictions.csv", float_precision="round_trip")
    assert list(recorded.columns) == ["path", "patient_id", "split", "label", "y_true", "probability"]
    assert set(recorded["split"]) == {"val", "test"}
    reloaded = keras.models.load_model(folder / "model.keras")
    test_images, _ = train.split_arrays(image_set, "test")
    np.testing.assert_allclose(train.predict(reloaded, test_images),
                               recorded.loc[recorded["split"] == "test", "probability"], atol=1e-6)
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics, default=str))
    test = recorded[recorded["split"] == "test"]
    assert saved["test"] == binary_metrics(test["y_true"], test["probability"], saved["threshold"])
    assert saved["gradcam_layer"] == "last_conv" and saved["synthetic"] is True
    assert saved["n_images"]["test"] == len(test)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_builds_at_its_native_size_with_its_preprocessing(name):
    spec = BACKBONES[name]
    model, weights = build_transfer(name, weights=None)
    assert weights is None and model.input_shape == (None, spec.size, spec.size, 3)
    assert model.get_layer("preprocess").mode == spec.mode
    assert gradcam_layer(model) == spec.last_conv
    assert len(model.get_layer(spec.last_conv).output.shape) == 4  # a feature map Grad-CAM can use
    assert not any(w.trainable for w in model.get_layer(spec.last_conv).weights)  # frozen for phase 1
    assert unfreeze_top(model, 0.2) > 0 and model.output.dtype == "float32"


def test_preprocess_layer_matches_keras_preprocess_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    apps = keras.applications
    for mode, reference in [("caffe", apps.vgg16.preprocess_input), ("tf", apps.xception.preprocess_input),
                            ("torch", apps.densenet.preprocess_input)]:
        np.testing.assert_allclose(np.asarray(Preprocess(mode)(x)), reference(x.copy()), rtol=1e-5, atol=1e-3)


def test_unreachable_imagenet_weights_fall_back_to_random_init_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        model, weights = build_transfer("vgg16", size=32)
    assert weights is None and model.name == "vgg16"
    with pytest.raises(Exception, match="no network"):
        build_transfer("vgg16", size=32, strict=True)


def test_importing_helpers_models_is_enough_to_load_a_saved_model(tmp_path):
    """The predict CLI loads models in a process that imported only ``helpers.models``: Preprocess must register."""
    path = tmp_path / "vgg16.keras"
    build_transfer("vgg16", size=32, weights=None, augment=False)[0].save(path)
    code = (f"import keras, helpers.models; model = keras.models.load_model({str(path)!r}); "
            "print(model.get_layer('preprocess').mode)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip().splitlines()[-1] == "caffe"
