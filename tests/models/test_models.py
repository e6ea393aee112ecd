"""Models learn on data where the answer is known; backbones build; saved models reload; offline weights fall back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import check_recorded_metrics

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


SEEDS = range(5)


@pytest.fixture(scope="module")
def auc_per_seed(synthetic_images):
    """Test AUC of the small CNN (32 px, 6 epochs) for each seed: on the true labels, and with the train labels
    shuffled (val keeps its labels, so early stopping still picks the best-looking epoch)."""
    dataset = synthetic_images[0]
    image_set = images.load_images(dataset, 32, progress=False)
    test_images, y = train.split_arrays(image_set, "test")
    train_rows = image_set.manifest["split"] == "train"
    found = {"learned": [], "shuffled": []}
    for seed in SEEDS:
        shuffled = image_set.manifest.copy()
        shuffled.loc[train_rows, "label"] = np.random.default_rng(seed).permutation(shuffled.loc[train_rows, "label"])
        for kind, labelled in (("learned", image_set), ("shuffled", images.ImageSet(image_set.images, shuffled))):
            keras.utils.set_random_seed(seed)
            model = build_cnn(32)
            train.fit(model, labelled, epochs=6, batch_size=16, learning_rate=3e-3, seed=seed, verbose=0)
            found[kind].append(binary_metrics(y, train.predict(model, test_images))["auc"])
    print({kind: np.round(values, 3).tolist() for kind, values in found.items()})
    return found


@pytest.mark.slow
def test_small_cnn_learns_synthetic_xrays_well_above_chance(auc_per_seed):
    assert min(auc_per_seed["learned"]) > 0.9  # measured, seeds 0-4: 1.00 1.00 1.00 0.99 1.00


@pytest.mark.slow
def test_shuffled_labels_leave_the_cnn_at_chance(auc_per_seed):
    # Each seed's AUC on 35 test images varies by about 0.1 around 0.5; their mean by about 0.05.
    values = auc_per_seed["shuffled"]  # measured, seeds 0-4: 0.46 0.45 0.62 0.44 0.50 (mean 0.50)
    assert abs(np.mean(values) - 0.5) < 0.15, values


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
    check_recorded_metrics(saved["test"], test["y_true"], test["probability"], saved["threshold"])
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
    """An empty KERAS_HOME: Keras really tries to download, and the suite's network guard refuses the host."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        model, weights = build_transfer("vgg16", size=32)
    assert weights is None and model.name == "vgg16"
    with pytest.raises(Exception, match="network access blocked in the tests: looking up 'storage.googleapis.com'"):
        build_transfer("vgg16", size=32, strict=True)


def test_importing_helpers_models_is_enough_to_load_a_saved_model(tmp_path):
    """The predict CLI loads models in a process that imported only ``helpers.models``: Preprocess must register."""
    path = tmp_path / "vgg16.keras"
    build_transfer("vgg16", size=32, weights=None, augment=False)[0].save(path)
    code = (f"import keras, helpers.models; model = keras.models.load_model({str(path)!r}); "
            "print(model.get_layer('preprocess').mode)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip().splitlines()[-1] == "caffe"
