"""What one prediction's explanation explains: always the COVID score, whatever the model and task.

- A Keras model with one sigmoid: Grad-CAM of the COVID logit (:func:`helpers.explain.gradcam`).
- A three-class Keras model (softmax): Grad-CAM of the *log-odds of COVID against the other classes*,
  ``z_COVID - logsumexp(z_NORMAL, z_PNEUMONIA)`` (the logit of P(COVID), the number the COVID call
  thresholds), through :func:`covid_score_model`: the same layers, ending in that one unit.
- A hybrid (VGG16 features + XGBoost or logistic regression, no gradient): occlusion sensitivity,
  how much P(COVID) drops when each of ``grid x grid`` squares is covered (:func:`occlusion`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

OCCLUSION_GRID = 5  # the hybrid's explanation covers 5 x 5 squares in turn


def covid_score_model(model, covid_index: int = -1):
    """A softmax Keras model's layers ending in one unit: the log-odds of class ``covid_index`` against the rest.

    The final Dense layer's weights are reused without its softmax; the model keeps its name, so
    :func:`helpers.models.gradcam_layer` finds the same layer.
    """
    import keras

    head = model.layers[-1]
    units = head.get_weights()[0].shape[-1]
    covid = covid_index % units
    others = [i for i in range(units) if i != covid]
    linear = keras.layers.Dense(units, dtype="float32", name="class_logits")
    logits = linear(head.input)
    linear.set_weights(head.get_weights())

    def log_odds(z):
        rest = keras.ops.logsumexp(keras.ops.take(z, others, axis=1), axis=1, keepdims=True)
        return z[:, covid:covid + 1] - rest

    return keras.Model(model.input, keras.layers.Lambda(log_odds, name="covid_log_odds")(logits), name=model.name)


def explain(info, gray: np.ndarray, small: np.ndarray, probability: float) -> np.ndarray:
    """A 0..1 map at ``gray``'s size for a :class:`helpers.app.predict.ModelInfo`; ``probability`` is P(COVID)."""
    if info.kind == "keras":
        from helpers.explain import gradcam

        return gradcam(info.gradcam_model, gray[None], layer=info.gradcam_layer)[0]
    return occlusion(info, small, probability, out_shape=gray.shape)


def occlusion(info, small: np.ndarray, probability: float, *, out_shape: tuple[int, int],
              grid: int = OCCLUSION_GRID) -> np.ndarray:
    """How much P(COVID) drops when each of ``grid x grid`` squares is covered with the mean gray."""
    size = small.shape[0]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    covered = []
    for row in range(grid):
        for col in range(grid):
            image = small.copy()
            image[edges[row]:edges[row + 1], edges[col]:edges[col + 1]] = int(small.mean())
            covered.append(image)
    drop = np.clip(probability - info.probabilities(np.stack(covered))[:, -1], 0, None).reshape(grid, grid)
    drop = drop / drop.max() if drop.max() > 0 else drop
    square = Image.fromarray(drop.astype(np.float32)).resize((out_shape[1], out_shape[0]), Image.Resampling.NEAREST)
    return np.asarray(square, np.float32)
