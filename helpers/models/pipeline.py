"""``tf.data`` pipelines from decoded images: three channels, shuffling, batching, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from helpers.constants import POSITIVE
from helpers.images import ImageSet

AUTOTUNE = tf.data.AUTOTUNE


def labels_of(image_set: ImageSet, split: str | None = None, classes: tuple[str, ...] | None = None) -> np.ndarray:
    """1 for COVID, 0 for NORMAL, for the rows of ``split`` (all rows when None).

    ``image_set`` is anything with a ``manifest`` in row order (an ImageSet, hybrid Features).
    With ``classes`` (a task's, in class-index order) each label's index instead (sparse categorical).
    """
    rows = image_set.manifest if split is None else image_set.manifest[image_set.manifest["split"] == split]
    if classes is None:
        return (rows["label"] == POSITIVE).to_numpy(np.float32)
    unknown = sorted(set(rows["label"]) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return rows["label"].map({label: i for i, label in enumerate(classes)}).to_numpy(np.int32)


def split_arrays(
    image_set: ImageSet, split: str, classes: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x size x size uint8) and labels of one split (class indices with ``classes``)."""
    mask = (image_set.manifest["split"] == split).to_numpy()
    return image_set.images[mask], labels_of(image_set, split, classes)


def make_pipeline(
    images: np.ndarray, labels: np.ndarray | None = None, *, batch_size: int = 32, training: bool = False,
    seed: int = 42,
) -> tf.data.Dataset:
    """Batches of ``(size, size, 3)`` float32 images in 0..255 (and labels), prefetched.

    Grayscale is repeated on three channels on the fly, so the cache stays small.
    Training pipelines are reshuffled every epoch from a fixed seed.
    """
    data = tf.data.Dataset.from_tensor_slices(images if labels is None else (images, labels))
    if training:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)

    def to_rgb(x, *rest):
        x = tf.image.grayscale_to_rgb(tf.cast(x[..., None], tf.float32))
        return (x, *rest) if rest else x

    return data.map(to_rgb, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def split_pipeline(image_set: ImageSet, split: str, *, batch_size: int = 32, training: bool = False,
                   seed: int = 42, classes: tuple[str, ...] | None = None) -> tf.data.Dataset:
    images, labels = split_arrays(image_set, split, classes)
    return make_pipeline(images, labels, batch_size=batch_size, training=training, seed=seed)
