"""Grad-CAM figures: a grid of overlays, a run's correct and wrong calls, tagged images with and without the tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.explain.gradcam import overlay
from helpers.plots import synthetic_title

if TYPE_CHECKING:
    from helpers.explain.shortcut import TagView
    from helpers.runs import Run


def plot_gradcam_grid(
    images: Sequence[np.ndarray], heatmaps: Sequence[np.ndarray | None], titles: Sequence[str] | None = None, *,
    ncols: int = 4, alpha: float = 0.4, synthetic: bool = False, title: str | None = None, panel_size: float = 3.0,
):
    """A grid of images with their Grad-CAM overlays; returns the matplotlib ``Figure``.

    ``heatmaps[i]`` may be ``None`` to show ``images[i]`` as it is (e.g. the
    original next to its overlay). ``synthetic=True`` marks the figure title
    ``SYNTHETIC DATA``.
    """
    if len(images) != len(heatmaps) or (titles is not None and len(titles) != len(images)):
        raise ValueError("images, heatmaps and titles must have the same length")
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            shown = images[i] if heatmaps[i] is None else overlay(images[i], heatmaps[i], alpha=alpha)
            ax.imshow(shown, cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[i] if titles is not None else "", fontsize=9)
    synthetic_title(fig, title, synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_outcome_gradcam(run: Run, examples: pd.DataFrame, images: np.ndarray, heatmaps: np.ndarray):
    """Each example image next to its Grad-CAM overlay, titled with its outcome, label and probability.

    The arguments after ``run`` are what ``helpers.explain.examples.outcome_gradcam`` returns.
    """
    panels, maps, titles = [], [], []
    for image, heatmap, (_, row) in zip(images, heatmaps, examples.iterrows(), strict=True):
        panels += [image, image]
        maps += [None, heatmap]
        titles += [f"{row['outcome']}: {row['label']}", f"p(COVID) = {row['probability']:.3f}"]
    return plot_gradcam_grid(
        panels, maps, titles, ncols=4, synthetic=run.synthetic, panel_size=2.4,
        title=f"{run.dataset}/{run.model}: Grad-CAM on test images (threshold {run.threshold:.3f})",
    )


def _call(probability: float, threshold: float | None) -> str:
    return "" if threshold is None else (" -> COVID" if probability >= threshold else " -> NORMAL")


def plot_shortcut_gradcam(labels: np.ndarray, views: dict[str, TagView], *, threshold: float | None = None):
    """For each tagged image: the image, then its Grad-CAM in each view (with the tag, corner masked).

    The arguments are what ``helpers.explain.shortcut.tag_gradcam`` returns; titles give the probability
    of COVID (and the call at ``threshold``) and the share of the map's heat in the tag's corner.
    """
    first = next(iter(views.values()))
    panels, maps, titles = [], [], []
    for i, label in enumerate(labels):
        panels.append(first.images[i])
        maps.append(None)
        titles.append(f"{label}, tagged")
        for kind, view in views.items():
            panels.append(view.images[i])
            maps.append(view.heatmaps[i])
            titles.append(f"{kind}: p(COVID)={view.probability[i]:.3f}{_call(view.probability[i], threshold)}\n"
                          f"{float(view.tag_heat[i]):.0%} of the heat in the tag's corner")
    shown = "" if threshold is None else f" (threshold {threshold:.3f})"
    return plot_gradcam_grid(
        panels, maps, titles, ncols=len(views) + 1, synthetic=True, panel_size=3.0,
        title=f"shortcut model, with and without the tag{shown}",
    )
