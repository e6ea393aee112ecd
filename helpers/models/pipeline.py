"""``tf.data`` pipelines from decoded images: three channels, shuffling, batching, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from helpers.constants import POSITIVE
from helpers.images import ImageSet

AUTOTUNE = tf.data.AUTOTUNE


def labels_of(image_set: ImageSet, split: str | None = None) -> np.ndarray:
    """1 for COVID, 0 for NORMAL, for the rows of ``split`` (all rows when None).

    ``image_set`` is anything with a ``manifest`` in row order (an ImageSet, hybrid Features).
    """
    rows = image_set.manifest if split is None else image_set.manifest[image_set.manifest["split"] == split]
    return (rows["label"] == POSITIVE).to_numpy(np.float32)


def split_arrays(image_set: ImageSet, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x size x size uint8) and labels of one split."""
    mask = (image_set.manifest["split"] == split).to_numpy()
    return image_set.images[mask], labels_of(image_set, split)


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
                   seed: int = 42) -> tf.data.Dataset:
    images, labels = split_arrays(image_set, split)
    return make_pipeline(images, labels, batch_size=batch_size, training=training, seed=seed)
