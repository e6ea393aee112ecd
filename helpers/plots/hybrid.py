"""Figures of the VGG16 + XGBoost hybrid (notebook 04): what the trees use, early stopping, where time goes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.plots import synthetic_title

if TYPE_CHECKING:
    from helpers.models.hybrid import Features


def feature_name(index: int, shape: tuple[int, ...]) -> str:
    """``"ch 123"`` for a pooled feature, ``"ch 123 @ (row 5, col 2)"`` for a flattened one."""
    if len(shape) == 3:
        row, col, channel = np.unravel_index(index, shape)
        return f"ch {channel} @ (row {row}, col {col})"
    return f"ch {index}"


def importances(model, n_features: int) -> np.ndarray:
    """Total gain of each feature in an XGBoost model (zeros for features no tree uses)."""
    scores = model.get_booster().get_score(importance_type="total_gain")
    values = np.zeros(n_features)
    for key, value in scores.items():
        values[int(key[1:])] = value
    return values


def plot_feature_importance(model, features: Features, *, top_k: int = 15, synthetic: bool = False):
    """Horizontal bars of the ``top_k`` features by total gain, as shares of the model's total."""
    gain = importances(model, features.n_features)
    order = np.argsort(gain)[::-1][:top_k]
    share = gain[order] / max(gain.sum(), 1e-12)
    fig, ax = plt.subplots(figsize=(7, 0.3 * top_k + 1.2))
    ax.barh([feature_name(i, features.shape) for i in order][::-1], share[::-1], color="tab:blue")
    ax.set_xlabel("share of total gain")
    used = int(np.sum(gain > 0))
    synthetic_title(ax, f"{features.backbone} {features.pooling} features: top {top_k} of {used} used "
                    f"({features.n_features} available)", synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_importance_map(model, features: Features, *, image: np.ndarray | None = None, synthetic: bool = False):
    """Total gain per position of the last feature map (flattened features only), over an example image."""
    if len(features.shape) != 3:
        raise ValueError("an importance map needs flattened features (pooling='flatten')")
    grid = importances(model, features.n_features).reshape(features.shape).sum(axis=2)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    extent = (0, features.size, features.size, 0)
    if image is not None:
        ax.imshow(image, cmap="gray", extent=extent)
    shown = ax.imshow(grid / max(grid.sum(), 1e-12), cmap="magma", alpha=0.55 if image is not None else 1.0,
                      extent=extent)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of total gain")
    ax.set_axis_off()
    synthetic_title(ax, f"where the trees look ({features.shape[0]} x {features.shape[1]} grid)", synthetic=synthetic)
    fig.tight_layout()
    return fig


METRIC_NAMES = {"auc": "AUC", "mlogloss": "log loss"}


def plot_boosting(models: dict, *, synthetic: bool = False):
    """Validation AUC after each boosting round, the kept round marked: what early stopping saw.

    A multi-class booster watched its validation log loss (``mlogloss``): that curve is shown instead.
    """
    fig, ax = plt.subplots(figsize=(7, 3.6))
    watched = set()
    for name, model in models.items():
        metric, curve = next(iter(model.evals_result()["validation_0"].items()))  # the one eval_metric
        watched.add(METRIC_NAMES.get(metric, metric))
        line, = ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
        ax.axvline(model.best_iteration + 1, color=line.get_color(), linestyle=":")
    ax.set(xlabel="boosting round (trees)", ylabel=f"validation {' / '.join(sorted(watched))}")
    ax.grid(alpha=0.3)
    ax.legend()
    synthetic_title(ax, "early stopping on the validation split (dotted: round kept)", synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_time_breakdown(table: pd.DataFrame, *, synthetic: bool = False):
    """Stacked bars of feature extraction and classifier training seconds per model (a ``results_table``)."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.5))
    names = list(table.index)
    ax.barh(names, table["extraction s"], color="tab:gray", label="feature extraction")
    ax.barh(names, table["training s"], left=table["extraction s"], color="tab:orange", label="classifier training")
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.legend(loc="lower right")
    synthetic_title(ax, "where the time goes", synthetic=synthetic)
    fig.tight_layout()
    return fig
