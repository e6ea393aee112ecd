"""Three-class figures: the k x k confusion matrix of one or more models (COVID-Net's view of a model)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from helpers.plots import draw_counts, synthetic_title


def plot_multiclass_confusion(confusions: dict[str, pd.DataFrame], *, title: str | None = None,
                              synthetic: bool = False, size: float = 4.2):
    """One k x k confusion matrix per model (``{name: helpers.evaluation.multiclass.confusion(...)}``).

    Rows are the true class, columns the predicted (most probable) class; each cell shows its count
    and its share of the row, so the diagonal reads as each class's sensitivity.
    """
    if not confusions:
        raise ValueError("no confusion matrix to draw: pass {model name: confusion table}")
    fig, axes = plt.subplots(1, len(confusions), figsize=(size * len(confusions), size), squeeze=False)
    for ax, (name, table) in zip(axes[0], confusions.items(), strict=True):
        draw_counts(ax, table.to_numpy(), list(table.columns))
        ax.set_title(name)
    synthetic_title(fig, title or "confusion matrix (rows: truth, columns: the most probable class)",
                    synthetic=synthetic)
    fig.tight_layout()
    return fig
