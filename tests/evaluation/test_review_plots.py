"""helpers.plots.review: the forest plot of paired differences, calibration before/after, the sanity-check grid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss

from helpers.constants import SYNTHETIC_MARK
from helpers.plots.review import plot_paired_differences, plot_reliability_before_after, plot_sanity_check


def table():
    rows = []
    for model, difference, low, high in (("cnn", -0.10, -0.18, -0.03), ("vgg16", -0.02, -0.07, 0.04)):
        for metric in ("auc", "sensitivity", "specificity"):
            rows.append({"model": model, "best": "resnet50", "metric": metric, "difference": difference,
                         "low": low, "high": high, "clear": high < 0})
    rows[-1].update(difference=np.nan, low=np.nan, high=np.nan, clear=False)  # vgg16's specificity undefined
    return pd.DataFrame(rows)


def test_forest_plot_draws_each_defined_difference_and_marks_undefined_ones():
    fig = plot_paired_differences(table(), synthetic=True)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["AUC", "sensitivity", "specificity"]
    assert [label.get_text() for label in axes[0].get_yticklabels()] == ["cnn", "vgg16"]
    points = [line for line in axes[2].lines if line.get_marker() == "o"]
    assert len(points) == 1 and [t.get_text() for t in axes[2].texts] == ["undefined"]
    assert points[0].get_xdata()[0] == pytest.approx(-0.10)
    assert SYNTHETIC_MARK in fig._suptitle.get_text() and "resnet50" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="no paired differences"):
        plot_paired_differences(pd.DataFrame({"metric": ["f1"], "model": ["x"]}))


def test_reliability_before_after_shows_both_brier_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    before = np.clip(y * 0.9 + rng.normal(0, 0.3, 300), 0, 1)
    after = 0.5 + (before - 0.5) * 0.6
    fig = plot_reliability_before_after(y, before, after)
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["perfectly calibrated", f"before (Brier {brier_score_loss(y, before):.3f})",
                      f"after (Brier {brier_score_loss(y, after):.3f})"]
    assert SYNTHETIC_MARK not in fig._suptitle.get_text()
    plt.close(fig)


def test_sanity_grid_shows_image_trained_and_randomised_maps():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (2, 16, 16)).astype(np.uint8)
    maps = rng.random((2, 16, 16))

    class Batch:
        def __init__(self, maps, peaks):
            self.maps, self.peaks, self.classes, self.probability = maps, peaks, ["COVID", "NORMAL"], np.array([0.9, 0.2])

    result = {"original": Batch(maps, np.array([2.0, 1.0])), "randomised": Batch(maps / 2, np.array([1.0, 0.5])),
              "similarity": np.array([0.1, 0.3]), "layers": ["probability", "bn2"], "scale": 2.0}
    fig = plot_sanity_check(images, result, synthetic=True)
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["p(COVID) = 0.90", "trained: COVID map\npeak 1.00", "randomised: peak 0.50\nrank corr. 0.10",
                      "p(COVID) = 0.20", "trained: NORMAL map\npeak 0.50", "randomised: peak 0.25\nrank corr. 0.30"]
    assert len(fig.axes) == 7  # six panels and one colour bar for all maps
    assert "probability, bn2" in fig._suptitle.get_text() and SYNTHETIC_MARK in fig._suptitle.get_text()
    plt.close(fig)
