"""The small CNN from scratch, and the layers every course model starts and ends with.

:class:`Preprocess` (0..255 pixels in, what a network expects out) and :func:`augmentation` sit
inside each model, so a saved ``.keras`` file needs nothing but a resize to predict. :func:`head`
is the classifier every model ends with: global pooling, dropout, one float32 sigmoid (or, with
``classes=3``, a float32 softmax over the task's classes in class-index order).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from helpers.environment import strategy_scope


@keras.saving.register_keras_serializable(package="helpers")
class Preprocess(layers.Layer):
    """Pixel values 0..255 in, what the network expects out (``caffe``, ``tf``, ``torch``, ``unit`` or ``raw``)."""

    MEANS = {"caffe": (103.939, 116.779, 123.68), "torch": (0.485, 0.456, 0.406)}
    STDS = (0.229, 0.224, 0.225)

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch", "unit", "raw"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":  # RGB -> BGR, minus the ImageNet mean
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(self.MEANS["caffe"], self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(self.MEANS["torch"], self.compute_dtype)
            return (x / 255.0 - mean) / ops.convert_to_tensor(self.STDS, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def augmentation(seed: int = 42) -> keras.Sequential:
    """Small, anatomy-preserving changes; active only in training.

    No horizontal flip: the heart is on the patient's left, and a flipped chest
    is an anatomy no scanner produces (and side markers would flip too).
    """
    return keras.Sequential(
        [
            layers.RandomRotation(0.03, fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed),
            layers.RandomContrast(0.1, seed=seed),
        ],
        name="augment",
    )


def head(x, dropout: float, classes: int = 1):
    """Global average pooling, dropout and one sigmoid: the probability of COVID, float32 under mixed precision.

    ``classes`` above 1: a softmax over that many classes instead (one probability per class).
    """
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    if classes == 1:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    if classes < 3:
        raise ValueError(f"classes must be 1 (one sigmoid) or 3 or more (a softmax), not {classes}")
    return layers.Dense(classes, activation="softmax", dtype="float32", name="probability")(x)


def build_cnn(
    size: int = 128, *, filters: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3, augment: bool = True,
    seed: int = 42, classes: int = 1,
) -> keras.Model:
    """A small CNN: conv blocks with batch norm and max pooling, global pooling, dropout, one sigmoid.

    ``classes=3``: a softmax head for the three-class task (:func:`head`).
    """
    with strategy_scope():
        inputs = keras.Input((size, size, 3), name="image")
        x = augmentation(seed)(inputs) if augment else inputs
        x = Preprocess("unit", name="preprocess")(x)
        for i, n in enumerate(filters):
            last = i == len(filters) - 1
            x = layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
            x = layers.Activation("relu", name="last_conv" if last else f"relu{i + 1}")(x)
            if not last:
                x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
        return keras.Model(inputs, head(x, dropout, classes), name="cnn")
