"""Figures a reviewer asks for: paired differences against the best model, calibration before and after
temperature scaling, and Grad-CAM of the trained next to the randomised model on one colour scale.
Each returns its matplotlib ``Figure``; synthetic data are marked by :func:`helpers.plots.synthetic_title`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.constants import POSITIVE
from helpers.evaluation import calibration
from helpers.plots import synthetic_title

METRIC_NAMES = {"auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity"}


def plot_paired_differences(table: pd.DataFrame, *, synthetic: bool = False, title: str | None = None):
    """Forest plot of :func:`helpers.evaluation.paired.compare_to_best`: one panel per metric, one row per model,
    the difference (model minus best) and its paired 95 % interval; intervals that exclude 0 in colour."""
    metrics = [m for m in METRIC_NAMES if m in set(table["metric"])]
    if not metrics:
        raise ValueError("no paired differences to plot (expected the table of compare_to_best)")
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 0.6 * len(models) + 1.8),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        rows = table[table["metric"] == metric].set_index("model").reindex(models)
        positions = np.arange(len(models))
        for y, (_, row) in zip(positions, rows.iterrows(), strict=True):
            if pd.isna(row["difference"]):
                ax.text(0, y, "undefined", ha="center", va="center", fontsize=8, color="grey")
                continue
            colour = "tab:blue" if row["clear"] else "grey"
            ax.errorbar(row["difference"], y, xerr=[[row["difference"] - row["low"]], [row["high"] - row["difference"]]],
                        fmt="o", color=colour, capsize=3)
        ax.axvline(0, color="k", lw=1, ls="--")
        ax.set(title=METRIC_NAMES[metric], xlabel="difference (model - best)", yticks=positions, yticklabels=models)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].invert_yaxis()
    best = table["best"].iloc[0]
    synthetic_title(fig, title or f"each model against {best} (best validation AUC),\npaired 95% intervals",
                    synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_reliability_before_after(y_true, prob_before, prob_after, *, n_bins: int = 10, synthetic: bool = False,
                                  title: str = "calibration on test,\nbefore and after temperature scaling"):
    """Reliability diagram of the same (test) images before and after calibration, Brier scores in the legend,
    above a histogram of both sets of probabilities."""
    fig, (ax, hist_ax) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for name, prob in (("before", prob_before), ("after", prob_after)):
        table = calibration(y_true, np.asarray(prob, float), n_bins=n_bins)
        (line,) = ax.plot(table["mean_probability"], table["fraction_positive"], "o-",
                          label=f"{name} (Brier {table.attrs['brier']:.3f})")
        hist_ax.hist(prob, bins=n_bins, range=(0, 1), histtype="step", color=line.get_color(), label=name)
    ax.set(ylabel=f"observed fraction {POSITIVE}", xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.legend(loc="upper left", fontsize="small")
    hist_ax.set(xlabel=f"predicted probability of {POSITIVE}", ylabel="images")
    synthetic_title(fig, title, synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_sanity_check(images, result: dict, *, titles=None, synthetic: bool = False, alpha: float = 0.45,
                      panel_size: float = 2.6):
    """Rows: each image, its Grad-CAM from the trained model, the same from the randomised model, all maps on the
    one scale of :func:`helpers.explain.sanity.sanity_check`; each map's peak and the rank correlation in the titles."""
    from helpers.explain import overlay

    original, randomised, scale = result["original"], result["randomised"], result["scale"]
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(3 * panel_size + 1.2, n * panel_size + 1.0), squeeze=False,
                             layout="constrained")
    for i, image in enumerate(images):
        label = titles[i] if titles is not None else f"p({POSITIVE}) = {original.probability[i]:.2f}"
        panels = ((image, label),
                  (overlay(image, original.maps[i], alpha=alpha),
                   f"trained: {original.classes[i]} map\npeak {original.peaks[i] / scale:.2f}"),
                  (overlay(image, randomised.maps[i], alpha=alpha),
                   f"randomised: peak {randomised.peaks[i] / scale:.2f}\nrank corr. {result['similarity'][i]:.2f}"))
        for ax, (shown, text) in zip(axes[i], panels, strict=True):
            ax.imshow(shown, cmap="gray", vmin=0, vmax=255)
            ax.set_title(text, fontsize=8)
            ax.axis("off")
    mappable = plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0, 1))
    fig.colorbar(mappable, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, label="Grad-CAM / largest of all maps")
    synthetic_title(fig, f"sanity check, re-initialised: {', '.join(result['layers'])}\n"
                         "maps alike = the map ignores what the model learned", synthetic=synthetic)
    return fig
