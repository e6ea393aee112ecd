"""helpers.explain.sanity: Grad-CAM on one shared scale, the predicted class's map, and the randomisation
check of Adebayo et al. (2018) on a small CNN trained on synthetic X-rays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.data.synthetic import make_image
from helpers.explain import gradcam
from helpers.explain.sanity import gradcam_batch, map_similarity, randomised_copy, sanity_check
from helpers.models import build_cnn

SIZE = 32


def untrained_cnn(*, bias: float = 0.0) -> keras.Model:
    """No biases before the head and batch norm at its initial state: the features, and so the maps, are
    positively homogeneous in the pixels (an image at a tenth of the brightness gives a tenth of the map)."""
    model = build_cnn(SIZE, filters=(8, 16), augment=False)
    head = model.get_layer("probability")
    head.set_weights([np.full(head.kernel.shape, 0.5, np.float32), np.full(head.bias.shape, bias, np.float32)])
    return model


def negated(model: keras.Model) -> keras.Model:
    """The same network with the COVID logit negated: its COVID map is the original's NORMAL map."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    head = copy.get_layer("probability")
    head.set_weights([-w for w in head.get_weights()])
    return copy


def chest(covid: bool, seed: int) -> np.ndarray:
    return make_image(modality="xray", covid=covid, severity=0.6 if covid else None, size=SIZE, seed=seed)


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained for a few epochs on 192 synthetic X-rays (strong opacities), and 32 test images.
    Over seeds 0-2 its test accuracy was 0.75 and the median map similarity after randomisation -0.04 to 0.47."""
    keras.utils.set_random_seed(0)
    labels = np.arange(224) % 2
    images = np.stack([chest(bool(c), seed) for seed, c in enumerate(labels)])
    model = build_cnn(SIZE, filters=(8, 16), augment=False)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    rgb = np.repeat(images[..., None], 3, axis=-1).astype(np.float32)
    model.fit(rgb[:192], labels[:192], epochs=10, batch_size=32, verbose=0)
    return model, images[192:], labels[192:]


def test_one_scale_shows_a_dim_image_as_weak_evidence():
    model = untrained_cnn()
    bright = chest(True, 1)
    dim = (bright.astype(float) / 10).round().astype(np.uint8)
    batch = gradcam_batch(model, np.stack([bright, dim]), target="covid")
    assert batch.peaks[0] == batch.scale and batch.maps[0].max() > 0.8  # bilinear upsampling rounds the peak off (0.88-1.0 seen)
    assert batch.maps[1].max() / batch.maps[0].max() == pytest.approx(0.1, abs=0.02)  # on the one scale
    assert batch.peaks[1] / batch.peaks[0] == pytest.approx(0.1, abs=0.02)
    assert gradcam(model, np.stack([bright, dim])).max(axis=(1, 2)).min() > 0.8  # each map scaled to its own peak (rounded off by the upsampling)


def test_a_given_scale_is_used_and_maps_stay_in_unit_range():
    model = untrained_cnn()
    images = np.stack([chest(True, 1), chest(False, 2)])
    first = gradcam_batch(model, images, target="covid")
    halved = gradcam_batch(model, images, target="covid", scale=2 * first.scale)
    np.testing.assert_allclose(halved.maps, first.maps / 2, atol=1e-6)
    clipped = gradcam_batch(model, images, target="covid", scale=first.scale / 4)
    assert clipped.maps.max() <= 1.0


def test_the_normal_map_is_the_map_of_the_negative_logit():
    model = untrained_cnn(bias=-50.0)  # every image is called NORMAL
    images = np.stack([chest(True, 3), chest(False, 4)])
    predicted = gradcam_batch(model, images)
    assert predicted.classes == ["NORMAL", "NORMAL"]
    expected = gradcam_batch(negated(model), images, target="covid", scale=predicted.scale)
    np.testing.assert_allclose(predicted.maps, expected.maps, atol=1e-6)
    # every channel weighs towards COVID here, so nothing speaks for NORMAL: the NORMAL map is empty
    assert predicted.peaks.max() == 0 and gradcam_batch(model, images, target="covid").peaks.min() > 0


def test_per_image_classes_and_bad_targets():
    model = untrained_cnn()
    images = np.stack([chest(True, 3), chest(False, 4)])
    mixed = gradcam_batch(model, images, target=["COVID", "NORMAL"])
    assert mixed.classes == ["COVID", "NORMAL"] and mixed.peaks[0] > 0 == mixed.peaks[1]
    with pytest.raises(ValueError, match="unknown target 'positive'"):
        gradcam_batch(model, images, target="positive")
    with pytest.raises(ValueError, match="one class"):
        gradcam_batch(model, images, target=["COVID"])


def test_randomised_copy_changes_only_the_top_layers_and_is_seeded():
    model = untrained_cnn()
    before = [w.copy() for w in model.get_weights()]
    copy, names = randomised_copy(model, n_layers=3, seed=1)
    assert names == ["probability", "bn2", "conv2"]
    for original, kept in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(original, kept)  # the model itself is untouched
    np.testing.assert_array_equal(copy.get_layer("conv1").get_weights()[0], model.get_layer("conv1").get_weights()[0])
    assert not np.allclose(copy.get_layer("conv2").get_weights()[0], model.get_layer("conv2").get_weights()[0])
    again, _ = randomised_copy(model, n_layers=3, seed=1)
    other, _ = randomised_copy(model, n_layers=3, seed=2)
    np.testing.assert_array_equal(again.get_layer("conv2").get_weights()[0], copy.get_layer("conv2").get_weights()[0])
    assert not np.allclose(other.get_layer("conv2").get_weights()[0], copy.get_layer("conv2").get_weights()[0])
    with pytest.raises(ValueError, match="only 5 layers with weights"):
        randomised_copy(model, n_layers=6)


def test_map_similarity():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    np.testing.assert_allclose(map_similarity(maps, maps), 1.0)
    np.testing.assert_allclose(map_similarity(maps, 2 * maps ** 3), 1.0)  # ranks only
    assert abs(map_similarity(maps, rng.random((3, 8, 8))).mean()) < 0.2
    assert np.isnan(map_similarity(np.zeros((1, 8, 8)), maps[:1])[0])


@pytest.mark.slow
def test_a_trained_models_maps_fail_to_survive_randomisation(trained):
    model, images, labels = trained
    probability = model.predict(np.repeat(images[..., None], 3, axis=-1).astype(np.float32), verbose=0)[:, 0]
    assert np.mean((probability >= 0.5) == labels) >= 0.65  # the model learned something
    result = sanity_check(model, images, n_layers=3, seed=0)
    same = sanity_check(model, images, n_layers=3, seed=0)
    np.testing.assert_allclose(result["similarity"], same["similarity"])
    assert result["randomised"].classes == result["original"].classes
    assert result["scale"] == max(result["original"].peaks.max(), result["randomised"].peaks.max())
    assert max(result["original"].maps.max(), result["randomised"].maps.max()) > 0.9
    similarity = result["similarity"][~np.isnan(result["similarity"])]
    assert len(similarity) >= 24 and np.median(similarity) < 0.8, result["similarity"]
