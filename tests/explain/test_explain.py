"""helpers.explain.gradcam: Grad-CAM maps (size, range, input dependence, mixed precision, every backbone), overlays, figures."""

from __future__ import annotations

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest

from helpers.data.synthetic import make_image
from helpers.explain import gradcam, overlay
from helpers.models import BACKBONES, build_cnn, build_transfer, gradcam_layer
from helpers.plots import plot_gradcam_grid


def tiny_cnn(*, bias: float = 0.0) -> keras.Model:
    """An untrained small CNN whose output weighs every channel positively, so its maps are not all zero."""
    model = build_cnn(32, filters=(8, 16), augment=False)
    head = model.get_layer("probability")
    head.set_weights([np.full(head.kernel.shape, 0.5, np.float32), np.full(head.bias.shape, bias, np.float32)])
    return model


@pytest.fixture(scope="module")
def cnn():
    return tiny_cnn()


@pytest.fixture(scope="module")
def chest_images():
    """A COVID-like and a NORMAL synthetic X-ray, not square, so that a size mix-up shows."""
    images = [make_image(modality="xray", covid=c, severity=0.3, size=64, seed=s) for c, s in ((True, 1), (False, 2))]
    return np.stack([np.asarray(img, np.uint8)[:, 8:56] for img in images])  # 64 x 48


def test_map_has_the_image_size_and_is_in_unit_range(cnn, chest_images):
    maps = gradcam(cnn, chest_images)
    assert maps.shape == chest_images.shape
    assert maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert maps.reshape(len(maps), -1).max(axis=1).min() > 0.5  # each map reaches its own peak


def test_map_changes_with_the_input(cnn, chest_images):
    first, second = gradcam(cnn, chest_images)
    assert np.abs(first - second).mean() > 0.01


def test_gray_and_rgb_input_give_the_same_map(cnn, chest_images):
    rgb = np.repeat(chest_images[..., None], 3, axis=-1)
    np.testing.assert_allclose(gradcam(cnn, rgb), gradcam(cnn, chest_images), atol=1e-5)


def test_saturated_prediction_still_gives_a_map(chest_images):
    """With a huge bias the probability is exactly 1.0: the gradient of the logit still exists."""
    model = tiny_cnn(bias=60.0)
    assert float(model(np.zeros((1, 32, 32, 3), np.float32))[0, 0]) == 1.0
    assert gradcam(model, chest_images[:1]).max() > 0.5


def test_mixed_precision(chest_images):
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_cnn()
        assert model.get_layer("last_conv").compute_dtype == "float16"
        maps = gradcam(model, chest_images)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    assert 0 <= maps.min() and maps.max() > 0.9  # the peak, a little below 1 after bilinear upsampling


def test_transfer_model(chest_images):
    model, _ = build_transfer("vgg16", weights=None, size=32, augment=False)
    maps = gradcam(model, chest_images[:1])
    assert maps.shape == (1, 64, 48) and 0 <= maps.min() <= maps.max() <= 1


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_has_its_gradcam_layer(name):
    """The layer each backbone names exists and is a 4-D feature map (bare application: quicker to build)."""
    spec = BACKBONES[name]
    size = 75 if name in ("inceptionv3", "xception") else 64
    application = getattr(keras.applications, spec.application)(include_top=False, weights=None,
                                                                 input_shape=(size, size, 3))
    assert len(application.get_layer(spec.last_conv).output.shape) == 4


def test_unknown_layer_says_which_layers_exist(cnn, chest_images):
    with pytest.raises(ValueError, match="no layer 'nope'.*probability"):
        gradcam(cnn, chest_images, layer="nope")
    assert gradcam_layer(cnn) == "last_conv"


def test_bad_shape_is_refused_and_empty_input_is_fine(cnn):
    with pytest.raises(ValueError, match="N x H x W"):
        gradcam(cnn, np.zeros((8, 8), np.uint8))
    assert gradcam(cnn, np.zeros((0, 10, 12), np.uint8)).shape == (0, 10, 12)


def test_overlay():
    gray = np.full((20, 30), 100, np.uint8)
    heat = np.zeros((5, 5), np.float32)
    heat[2, 2] = 1.0
    out = overlay(gray, heat)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay(gray, heat, alpha=0.0), np.repeat(gray[..., None], 3, axis=-1))
    assert out[10, 15, 0] > out[0, 0, 0]  # the hot centre is redder than the cold corner (jet: red is hot)


def test_plot_gradcam_grid():
    images = [np.zeros((10, 10), np.uint8)] * 3
    heatmaps = [None, np.ones((10, 10)), np.zeros((10, 10))]
    fig = plot_gradcam_grid(images, heatmaps, ["a", "b", "c"], ncols=2, synthetic=True, title="test")
    assert len(fig.axes) == 4 and "SYNTHETIC DATA" in fig._suptitle.get_text()
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    plt.close(fig)
    with pytest.raises(ValueError, match="same length"):
        plot_gradcam_grid(images, heatmaps[:2])


def test_outcome_examples_and_their_gradcam(course_dirs):
    """The most confident call of each outcome, Grad-CAM over them at the run's own size, and their figure."""
    from helpers.data.dataset import course_dataset
    from helpers.explain import examples
    from helpers.images import load_images
    from helpers.models.train import evaluate_and_save
    from helpers.plots import plot_outcome_gradcam
    from helpers.runs import read_run

    dataset = course_dataset("synthetic", smoke=True, n_patients=24, size=64, verbose=False)
    evaluate_and_save(tiny_cnn(), load_images(dataset, 32, progress=False), dataset)
    run = read_run(course_dirs[1] / "synthetic" / "cnn")
    assert examples.gradcam_run([run]) is run

    test = run.split("test")
    called, covid = test["probability"] >= run.threshold, test["y_true"] == 1
    outcome = np.where(covid, np.where(called, "TP", "FN"), np.where(called, "FP", "TN"))
    margin = (test["probability"] - run.threshold).abs()
    chosen = examples.outcome_examples(run, n=1)
    assert sorted(chosen["outcome"]) == sorted(set(outcome))
    for _, row in chosen.iterrows():
        assert row["margin"] == margin[outcome == row["outcome"]].max()

    found, images, heatmaps = examples.outcome_gradcam(run, dataset, n=1)
    assert found["path"].tolist() == chosen["path"].tolist()
    assert images.shape == heatmaps.shape == (len(found), 32, 32)
    fig = plot_outcome_gradcam(run, found, images, heatmaps)
    assert sum(bool(ax.get_images()) for ax in fig.axes) == 2 * len(found)
    assert "SYNTHETIC DATA" in fig._suptitle.get_text()
    plt.close(fig)


def test_a_three_class_model_is_explained_by_its_covid_unit(chest_images):
    """A softmax model's map is the map of a one-sigmoid twin whose head is the softmax's COVID (last) column."""
    from helpers.explain import sanity
    from helpers.explain.gradcam import model_input

    three = build_cnn(32, filters=(8, 16), augment=False, classes=3)
    head = three.get_layer("probability")
    kernel = np.random.default_rng(0).normal(0, 0.5, head.kernel.shape).astype(np.float32)
    kernel[:, -1] = np.abs(kernel[:, -1])  # a COVID unit that weighs the channels positively: a map that is not zero
    head.set_weights([kernel, np.array([0.1, -0.2, 0.05], np.float32)])
    twin = build_cnn(32, filters=(8, 16), augment=False)
    for layer in twin.layers:
        if layer.name != "probability" and layer.get_weights():
            layer.set_weights(three.get_layer(layer.name).get_weights())
    twin.get_layer("probability").set_weights([kernel[:, -1:], np.array([0.05], np.float32)])
    maps = gradcam(three, chest_images)
    assert maps.max() > 0.5
    np.testing.assert_allclose(maps, gradcam(twin, chest_images), atol=1e-5)
    batch = sanity.gradcam_batch(three, chest_images, target="predicted", threshold=0.3)
    softmax = three.predict(model_input(chest_images, 32), verbose=0)
    np.testing.assert_allclose(batch.probability, softmax[:, -1], atol=1e-6)  # P(COVID), not a sigmoid of its logit
    assert batch.classes == ["COVID" if p >= 0.3 else "NORMAL" for p in softmax[:, -1]]
