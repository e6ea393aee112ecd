"""The lung-masking figure: example images in the three conditions, and the AUCs with their intervals."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.plots import synthetic_title

__all__ = ["plot_masking"]


def plot_masking(
    conditions: dict[str, np.ndarray], tables: dict[str, pd.DataFrame], titles: Sequence[str] | None = None, *,
    synthetic: bool = False, title: str | None = None, panel_size: float = 2.2,
):
    """Images in each condition (one row per image) beside each model's AUC per condition, with its 95% CI.

    ``conditions`` maps a condition ("as is", "lungs removed", ...) to the same ``N x H x W``
    images in that condition (:func:`helpers.explain.masking.masking_conditions`); ``titles``
    names the rows (e.g. the labels). ``tables`` maps a model's name to its
    :func:`~helpers.explain.masking.masking_experiment` table (columns ``auc``, ``auc low``,
    ``auc high``). Returns the ``Figure``.
    """
    names = list(conditions)
    n = len(next(iter(conditions.values()))) if conditions else 0
    fig = plt.figure(figsize=(panel_size * len(names) + 5.0, panel_size * max(n, 2) + 0.6))
    grid = fig.add_gridspec(max(n, 1), len(names) + 1, width_ratios=[1] * len(names) + [5.0 / panel_size])
    for col, name in enumerate(names):
        for row in range(n):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(conditions[name][row], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=10)
            if col == 0 and titles is not None:
                ax.set_ylabel(titles[row], fontsize=9)
    _plot_aucs(fig.add_subplot(grid[:, -1]), tables)
    synthetic_title(fig, title, synthetic=synthetic)
    fig.tight_layout()
    return fig


def _plot_aucs(ax, tables: dict[str, pd.DataFrame]) -> None:
    """Each model's AUC per condition as a dot with its interval, side by side; chance as a dashed line."""
    order = list(dict.fromkeys(condition for table in tables.values() for condition in table.index))
    width = 0.5 / max(len(tables), 1)
    for k, (model, table) in enumerate(tables.items()):
        table = table.reindex(order)
        x = np.arange(len(order)) + (k - (len(tables) - 1) / 2) * width
        auc = table["auc"].to_numpy(float)
        low, high = table["auc low"].to_numpy(float), table["auc high"].to_numpy(float)
        errors = np.nan_to_num(np.vstack([auc - low, high - auc]), nan=0.0).clip(0)
        ax.errorbar(x, auc, yerr=errors, fmt="o", capsize=4, label=model)
        for xi, value in zip(x, auc, strict=True):
            if np.isfinite(value):
                ax.annotate(f"{value:.2f}", (xi, value), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.axhline(0.5, color="k", ls="--", lw=1, label="chance (AUC 0.50)")
    ax.set_xticks(np.arange(len(order)), order)
    ax.set(ylabel="test AUC (95% patient-bootstrap CI)", ylim=(0.0, 1.05), title="AUC by what the model sees")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower left", fontsize="small")
