"""Grad-CAM: where in an image a model found the evidence for its COVID score.

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of a late
convolutional layer by the gradient of the class score with respect to them,
keeps the positive part and scales it to 0..1. Warm regions pushed the
prediction towards COVID; the map shows where the model looked, not where the
disease is, and a map on the lung border, a text marker or the image corner is
a sign of a shortcut.

The API, shared by the evaluation notebook, the CLI and the upload demo:

- :func:`gradcam` ``(model, images, *, layer=None) -> N x H x W`` maps in 0..1
  at each image's original size;
- :func:`overlay` ``(gray, heatmap, *, alpha=0.4) -> H x W x 3 uint8``;
- the figure, ``helpers.plots.plot_gradcam_grid``;
- the pieces :mod:`helpers.explain.sanity` shares: :func:`model_input`, :func:`weighted_activation`, :func:`upsample`.

The gradient is taken of the COVID *logit* (the input of the final sigmoid; for a
three-class softmax, its COVID unit's score), not of the probability: the sigmoid
is flat near 0 and 1, where the gradient of the probability vanishes (and
underflows in float16 under mixed precision), which would blank the map of
exactly the most confident predictions. Everything is
computed in float32. TensorFlow is imported where the gradient is taken, so
:func:`overlay` (and the figures) work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from PIL import Image

from helpers.images import resize, to_rgb

if TYPE_CHECKING:
    import keras


def gradcam(model: keras.Model, images, *, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps of the COVID score: ``N x H x W`` float32 in 0..1, at the images' own size ``H x W``.

    ``images`` is ``N x H x W`` (grayscale) or ``N x H x W x 3``, ``uint8`` in
    0..255; they are resized to the model's input size here, exactly as for a
    prediction. ``layer`` defaults to :func:`helpers.models.gradcam_layer`.
    An image with no evidence for COVID at all gets a map of zeros.
    """
    from helpers.models import gradcam_layer, input_size

    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"gradcam expects N x H x W or N x H x W x 3 images, got shape {images.shape}")
    height, width = images.shape[1:3]
    if len(images) == 0:
        return np.zeros((0, height, width), np.float32)
    maps = _class_activation(model, model_input(images, input_size(model)), layer or gradcam_layer(model))
    return np.stack([upsample(m, height, width) for m in maps])


def model_input(images: np.ndarray, size: int) -> np.ndarray:
    """``N x size x size x 3`` float32 in 0..255, the way training fed the model."""
    return np.stack([resize(image, size) if image.ndim == 3 else to_rgb(resize(image, size))
                     for image in images]).astype(np.float32)


def _class_activation(model: keras.Model, batch: np.ndarray, layer: str) -> np.ndarray:
    """``N x h x w`` maps at the target layer's resolution, each scaled to 0..1."""
    cam = np.maximum(weighted_activation(model, batch, layer)[0], 0.0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def weighted_activation(model: keras.Model, batch: np.ndarray, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """The layer's maps weighted by the mean gradient of the COVID logit (``N x h x w``, before the ReLU), and the logits.

    Its positive part is the COVID map; its negative part the NORMAL one (the gradient of the negative logit).
    """
    import tensorflow as tf

    features_model, head = _features_model(model, layer)
    with tf.GradientTape() as tape:
        conv, last = features_model(batch, training=False)
        score = _logit(last, head)
    grads = tf.cast(tape.gradient(score, conv), tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
    weighted = tf.reduce_sum(weights * tf.cast(conv, tf.float32), axis=-1).numpy()
    return weighted, score.numpy().astype(np.float64)


def _features_model(model: keras.Model, layer: str):
    """A model giving the target layer's output and the final sigmoid's input (or the output, see ``_logit``)."""
    import keras

    try:
        target = model.get_layer(layer).output
    except ValueError:
        names = ", ".join(item.name for item in model.layers[-8:])
        raise ValueError(f"model {model.name!r} has no layer {layer!r} for Grad-CAM (last layers: {names})") from None
    head = model.layers[-1]
    dense = isinstance(head, keras.layers.Dense) and (
        (head.activation is keras.activations.sigmoid and head.units == 1)
        or (head.activation is keras.activations.softmax and head.units > 1))
    if dense:
        return keras.Model(model.input, [target, head.input]), head
    return keras.Model(model.input, [target, model.output]), None


def _logit(last, head):
    """The COVID logit, float32: applied by hand from the final Dense layer, or the model's output otherwise.

    COVID is the last unit: the one sigmoid, or a softmax's last class (its score before the softmax).
    """
    import tensorflow as tf

    last = tf.cast(last, tf.float32)
    if head is None:
        return last[:, -1]
    kernel, bias = (tf.cast(w, tf.float32) for w in (head.kernel, head.bias))
    return (tf.matmul(last, kernel) + bias)[:, -1]


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map (``h x w``) resized bilinearly to ``height x width`` and clipped to 0..1."""
    resized = np.asarray(Image.fromarray(cam.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(resized, 0.0, 1.0)


def overlay(gray: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The image with the heatmap blended on top: ``H x W x 3`` uint8.

    ``gray`` is ``H x W`` (or ``H x W x 3``) uint8; ``heatmap`` is in 0..1 and
    is resized to the image when its size differs. ``alpha`` is the weight of
    the colour map (0: the image only, 1: the map only).
    """
    gray = np.asarray(gray, np.uint8)
    rgb = gray if gray.ndim == 3 else to_rgb(gray)
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.shape != rgb.shape[:2]:
        heatmap = upsample(heatmap, *rgb.shape[:2])
    colours = matplotlib.colormaps[cmap](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 255).astype(np.uint8)
