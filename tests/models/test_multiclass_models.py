"""Three-class heads: a softmax over NORMAL, PNEUMONIA, COVID that learns the synthetic classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

keras = pytest.importorskip("keras")

from helpers import images  # noqa: E402
from helpers.data import dataset as datasets  # noqa: E402
from helpers.data.tasks import TASKS  # noqa: E402
from helpers.models import build_cnn, build_transfer, train  # noqa: E402

CLASSES = TASKS["three-class"].classes


@pytest.fixture(scope="module")
def three_class_images(module_course_dirs):
    dataset = datasets.load_dataset("synthetic", n_patients=150, size=64, task="three-class", verbose=False)
    return images.load_images(dataset, 64, progress=False)


def test_the_default_head_is_still_one_sigmoid_and_three_classes_give_a_float32_softmax():
    default, explicit = build_cnn(32), build_cnn(32, classes=1)
    assert [(layer.name, type(layer)) for layer in default.layers] == [(ly.name, type(ly)) for ly in explicit.layers]
    assert default.count_params() == explicit.count_params() and default.output_shape == (None, 1)
    one, three = build_cnn(32).layers[-1], build_cnn(32, classes=3).layers[-1]
    assert (one.units, one.activation.__name__) == (1, "sigmoid")
    assert (three.units, three.activation.__name__, three.dtype_policy.compute_dtype) == (3, "softmax", "float32")
    model, _ = build_transfer("mobilenetv2", size=32, weights=None, classes=3)
    out = model.predict(np.full((2, 32, 32, 3), 128.0, np.float32), verbose=0)
    assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="classes"):
        build_cnn(32, classes=2)


def test_labels_are_class_indices_for_a_task(three_class_images):
    labels = train.labels_of(three_class_images, "train", CLASSES)
    expected = three_class_images.manifest.query("split == 'train'")["label"].map(CLASSES.index).to_numpy()
    assert labels.dtype == np.int32 and (labels == expected).all() and set(labels) == {0, 1, 2}
    assert set(train.labels_of(three_class_images, "train")) == {0.0, 1.0}  # the default: COVID or not


def held_out_auc(image_set, *, seed: int) -> float:
    """Test macro one-vs-rest AUC of a small 3-class CNN trained 12 epochs on ``image_set``'s train split."""
    keras.utils.set_random_seed(seed)
    model = build_cnn(64, filters=(8, 16, 32), classes=3, augment=False)
    train.fit(model, image_set, epochs=12, batch_size=16, learning_rate=3e-3, verbose=0, classes=CLASSES)
    test_images, y = train.split_arrays(image_set, "test", CLASSES)
    return roc_auc_score(y, train.predict(model, test_images), multi_class="ovr", average="macro")


@pytest.mark.slow
def test_a_three_class_cnn_learns_the_synthetic_classes(three_class_images):
    # Measured (150 patients, 55 test images; seeds 0, 1, 2): 0.990, 0.940, 0.948
    assert min(held_out_auc(three_class_images, seed=seed) for seed in (0, 1)) > 0.85


@pytest.mark.slow
def test_a_three_class_cnn_is_near_chance_with_shuffled_train_labels(three_class_images):
    # Measured (seeds 0, 1, 2): 0.575, 0.689, 0.484 (mean 0.583; a random net's outputs still rank by brightness)
    aucs = []
    for seed in (0, 1, 2):
        shuffled = three_class_images.manifest.copy()
        rows = shuffled["split"] == "train"
        shuffled.loc[rows, "label"] = np.random.default_rng(seed).permutation(shuffled.loc[rows, "label"].to_numpy())
        aucs.append(held_out_auc(images.ImageSet(three_class_images.images, shuffled), seed=seed))
    assert np.mean(aucs) < 0.7
