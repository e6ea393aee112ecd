"""Grad-CAM that can be read, and the sanity check of Adebayo et al. (2018).

:func:`gradcam` scales each map to its own maximum, so every map shows a hot spot, even
that of a confident NORMAL call with hardly any evidence for COVID. Here:

- :func:`gradcam_batch` puts a batch of maps on **one** scale (the batch maximum, or a given
  ``scale``) and returns each map's raw maximum beside it; ``target="predicted"`` explains the
  class the model called (the gradient of the negative logit for a NORMAL call);
- :func:`randomised_copy` is the model with its top layers re-initialised (seeded), and
  :func:`map_similarity` the Spearman rank correlation of two maps of the same image. Maps of a
  trained and a randomised model that look alike (correlation near 1) explain the input, not
  what the model learned ("Sanity checks for saliency maps", NeurIPS 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from scipy import stats

from helpers.constants import NEGATIVE, POSITIVE
from helpers.explain.gradcam import model_input, upsample, weighted_activation
from helpers.models import gradcam_layer, input_size

TARGETS = ("predicted", "covid", "normal")
# The variables a layer re-creates with its own initialiser (Dense, Conv*, BatchNormalization, ...).
INITIALISED = ("kernel", "depthwise_kernel", "pointwise_kernel", "bias", "gamma", "beta", "moving_mean",
               "moving_variance")


@dataclass
class GradcamBatch:
    """Maps of one batch on one scale: ``maps`` (N x H x W in 0..1) = raw map / ``scale``."""

    maps: np.ndarray
    peaks: np.ndarray  # each map's raw maximum (same units as scale)
    scale: float
    classes: list[str]  # the class each map explains
    probability: np.ndarray


def gradcam_batch(
    model: keras.Model, images, *, target="predicted", threshold: float = 0.5, scale: float | None = None,
    layer: str | None = None,
) -> GradcamBatch:
    """Grad-CAM of ``images`` (N x H x W or N x H x W x 3 uint8) on one shared scale.

    ``target``: ``"predicted"`` (COVID where ``probability >= threshold``, else NORMAL), ``"covid"``,
    ``"normal"``, or one class name per image. ``scale`` defaults to the largest raw value in the batch; pass the scale of
    another batch to compare two models' maps on one colour scale.
    """
    images = np.asarray(images)
    height, width = images.shape[1:3]
    cams, probability = raw_class_activation(model, model_input(images, input_size(model)),
                                             layer or gradcam_layer(model), target=target, threshold=threshold)
    peaks = cams.max(axis=(1, 2))
    scale = float(peaks.max()) if scale is None else float(scale)
    shared = cams / scale if scale > 0 else np.zeros_like(cams)
    covid = _covid_target(target, probability, threshold)
    return GradcamBatch(
        maps=np.stack([upsample(np.minimum(m, 1.0), height, width) for m in shared]),
        peaks=peaks, scale=scale, classes=[POSITIVE if c else NEGATIVE for c in covid], probability=probability,
    )


def _covid_target(target, probability: np.ndarray, threshold: float) -> np.ndarray:
    """Per image, whether its map explains COVID (True) or NORMAL."""
    if isinstance(target, str):
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {TARGETS} or give a class per image")
        return probability >= threshold if target == "predicted" else np.full(len(probability), target == "covid")
    classes = list(target)
    if len(classes) != len(probability) or not set(classes) <= {POSITIVE, NEGATIVE}:
        raise ValueError(f"give one class ({POSITIVE!r} or {NEGATIVE!r}) per image, got {classes!r}")
    return np.array([c == POSITIVE for c in classes])


def raw_class_activation(
    model: keras.Model, batch: np.ndarray, layer: str, *, target="covid", threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled Grad-CAM maps (N x h x w, at the layer's resolution) of the target class, and P(COVID).

    The NORMAL class's score is the negative COVID logit, so its map is the negative part of the
    channel-weighted sum whose positive part is the COVID map: the evidence against COVID (for a
    three-class model, against COVID whatever the other class).
    """
    weighted, logit = weighted_activation(model, batch, layer)
    probability = covid_probability(model, batch, logit)
    sign = np.where(_covid_target(target, probability, threshold), 1.0, -1.0)
    return np.maximum(sign[:, None, None] * weighted, 0.0), probability


def covid_probability(model: keras.Model, batch: np.ndarray, logit: np.ndarray) -> np.ndarray:
    """P(COVID): the sigmoid of the COVID logit, or a softmax model's COVID (last) output."""
    if model.output_shape[-1] == 1:
        return 1 / (1 + np.exp(-logit))
    return np.asarray(model(batch, training=False), np.float64)[:, -1]


def _weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers with initialised variables, input to output, nested models (a backbone) opened."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers(layer))
        elif any(getattr(layer, name, None) is not None for name in INITIALISED):
            found.append(layer)
    return found


def _reinitialise(layer: keras.layers.Layer, seed: int) -> None:
    for name in INITIALISED:
        variable, initialiser = getattr(layer, name, None), getattr(layer, f"{name}_initializer", None)
        if variable is None or initialiser is None:
            continue
        config = initialiser.get_config()
        if "seed" in config:
            initialiser = initialiser.__class__.from_config({**config, "seed": seed})
        variable.assign(initialiser(tuple(variable.shape), dtype=variable.dtype))


def randomised_copy(model: keras.Model, *, n_layers: int = 3, seed: int = 0) -> tuple[keras.Model, list[str]]:
    """A copy of ``model`` with its top ``n_layers`` weighted layers re-initialised; the model is not changed.

    Returns the copy and the names of the re-initialised layers (output first). For the course CNN,
    3 is the output layer, the last batch norm and the last convolution. Same seed, same copy.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = _weighted_layers(copy)[::-1][:n_layers]
    if len(layers) < n_layers:
        raise ValueError(f"model {model.name!r} has only {len(layers)} layers with weights, not {n_layers}")
    for offset, layer in enumerate(layers):
        _reinitialise(layer, seed + offset)
    return copy, [layer.name for layer in layers]


def map_similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (N x H x W each); NaN where a map is constant."""
    first, second = (np.asarray(m, float).reshape(len(m), -1) for m in (first, second))
    result = []
    for a, b in zip(first, second, strict=True):
        constant = np.ptp(a) == 0 or np.ptp(b) == 0
        result.append(np.nan if constant else stats.spearmanr(a, b).statistic)
    return np.asarray(result, float)


def sanity_check(model: keras.Model, images, *, n_layers: int = 3, seed: int = 0, target: str = "predicted",
                 threshold: float = 0.5) -> dict:
    """The trained and the randomised model's maps of ``images`` on one scale, and their similarity.

    The randomised copy explains the class the *trained* model predicted, so that both maps answer
    the same question. Returns ``original``, ``randomised`` (:class:`GradcamBatch`), ``similarity``
    (per image), ``layers`` (re-initialised) and ``scale`` (shared by both batches).
    """
    original = gradcam_batch(model, images, target=target, threshold=threshold)
    randomised_model, names = randomised_copy(model, n_layers=n_layers, seed=seed)
    randomised = gradcam_batch(randomised_model, images, target=original.classes)
    scale = max(original.scale, randomised.scale)
    original, randomised = (_rescaled(batch, scale) for batch in (original, randomised))
    return {"original": original, "randomised": randomised, "similarity": map_similarity(original.maps,
            randomised.maps), "layers": names, "scale": scale}


def _rescaled(batch: GradcamBatch, scale: float) -> GradcamBatch:
    """The same maps on another (larger or equal) scale."""
    factor = batch.scale / scale if scale > 0 else 0.0
    return GradcamBatch(maps=batch.maps * factor, peaks=batch.peaks, scale=scale, classes=batch.classes,
                        probability=batch.probability)
