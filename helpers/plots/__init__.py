"""Every figure the notebooks show. Each function returns its matplotlib ``Figure``.

Figures of anything that ran on synthetic data carry ``SYNTHETIC DATA`` in their title.
matplotlib picks a non-interactive backend by itself where there is no display.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from helpers.constants import POSITIVE, SYNTHETIC_MARK
from helpers.evaluation import binary_metrics, calibration, to_binary
from helpers.evaluation.metrics import negative_name
from helpers.runs import Run

# =========================================================================================
# Evaluation figures: ROC/PR, confusion matrices, calibration, threshold trade-off.
# They take runs from helpers.runs.read_runs and use each run's validation-chosen threshold.
# =========================================================================================


def synthetic_title(target, title: str | None, *, synthetic: bool) -> None:
    """Title a figure (``suptitle``) or an axes (``set_title``), marked loudly when the data are synthetic.

    The one place that writes the synthetic mark into figures: every figure of the course calls it.
    """
    setter = target.suptitle if hasattr(target, "suptitle") else target.set_title
    if synthetic:
        setter(f"{SYNTHETIC_MARK} (not real patients)" + (f": {title}" if title else ""),
               color="firebrick", fontweight="bold")
    elif title:
        setter(title)


def _labelled(runs: list[Run], split: str) -> list[tuple[str, Run, np.ndarray, np.ndarray]]:
    """(label, run, y, prob) for each run with rows in ``split``; the dataset joins the label when several."""
    several = len({run.dataset for run in runs}) > 1
    out = []
    for run in runs:
        rows = run.split(split)
        if not rows.empty:
            label = f"{run.dataset}/{run.model}" if several else run.model
            out.append((label, run, to_binary(rows["y_true"]), rows["probability"].to_numpy(float)))
    if not out:
        raise ValueError(f"no run has {split} predictions")
    return out


def _where(items, split: str) -> str:
    """``"covid-ct, test split"``: the datasets and split a figure shows."""
    return f"{', '.join(sorted({item[1].dataset for item in items}))}, {split} split"


def _two_class(runs: list[Run], split: str):
    curves = [item for item in _labelled(runs, split) if 0 < item[2].sum() < len(item[2])]
    if not curves:
        raise ValueError(f"no run has both {POSITIVE} and non-{POSITIVE} images in its {split} predictions")
    return curves


def plot_roc_pr(runs: list[Run], split: str = "test", *, vertical: bool = False):
    """ROC and precision-recall curves side by side (or one above the other), one per model.

    Dots mark each model's operating point at its val-chosen threshold.
    """
    curves = _two_class(runs, split)
    fig, (roc_ax, pr_ax) = (
        plt.subplots(2, 1, figsize=(6, 10)) if vertical else plt.subplots(1, 2, figsize=(12, 5))
    )
    prevalences = {}
    for label, run, y, prob in curves:
        point = binary_metrics(y, prob, run.threshold)
        fpr, tpr, _ = roc_curve(y, prob)
        (line,) = roc_ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, prob):.2f})")
        roc_ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=line.get_color())
        precision, recall, _ = precision_recall_curve(y, prob)
        ap = average_precision_score(y, prob)
        pr_ax.plot(recall, precision, color=line.get_color(), label=f"{label} (AP {ap:.2f})")
        if point["precision"] is not None:
            pr_ax.plot(point["sensitivity"], point["precision"], "o", color=line.get_color())
        prevalences.setdefault(run.dataset, y.mean())
    roc_ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance / majority baseline (AUC 0.50)")
    for dataset, prevalence in prevalences.items():
        name = f" {dataset}" if len(prevalences) > 1 else ""
        pr_ax.axhline(
            prevalence, color="k", ls="--", lw=1, label=f"baseline{name}: prevalence {prevalence:.2f}"
        )
    roc_ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
               title="ROC (dots: threshold chosen on val)")
    pr_ax.set(xlabel="sensitivity (recall)", ylabel="PPV (precision)", title="Precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize="small")
        ax.grid(alpha=0.3)
    synthetic_title(fig, _where(curves, split), synthetic=any(item[1].synthetic for item in curves))
    fig.tight_layout()
    return fig


def draw_counts(ax, counts: np.ndarray, labels) -> None:
    """A confusion matrix on ``ax``: rows true, columns predicted, each cell its count and its row's share."""
    counts = np.asarray(counts)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(counts):
        color = "white" if shares[row, col] > 0.6 else "black"
        ax.text(col, row, f"{count}\n({shares[row, col]:.0%})", ha="center", va="center", color=color)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true")


def plot_confusion_matrices(runs: list[Run], split: str = "test", *, ncols: int = 3):
    """One confusion matrix per model at its val-chosen threshold: counts and share of each true class.

    COVID against the rest: for a three-class run the rest is NORMAL and PNEUMONIA together.
    """
    items = _labelled(runs, split)
    ncols = min(ncols, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (label, run, y, prob) in zip(axes.flat, items, strict=False):
        counts = binary_metrics(y, prob, run.threshold)["confusion_matrix"]
        draw_counts(ax, counts, [negative_name(run.classes).replace(" (", "\n("), POSITIVE])
        ax.set_title(f"{label}\nthreshold {run.threshold:.2f}")
    for ax in axes.flat[len(items) :]:
        ax.set_visible(False)
    synthetic_title(
        fig, f"confusion matrices: {_where(items, split)}", synthetic=any(i[1].synthetic for i in items)
    )
    fig.tight_layout()
    return fig


def plot_calibration(runs: list[Run], split: str = "test", *, n_bins: int = 10):
    """Reliability diagram (observed COVID rate per probability bin) above a histogram of probabilities."""
    items = _labelled(runs, split)
    fig, (ax, hist_ax) = plt.subplots(
        2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for label, _, y, prob in items:
        table = calibration(y, prob, n_bins=n_bins)
        (line,) = ax.plot(
            table["mean_probability"],
            table["fraction_positive"],
            "o-",
            label=f"{label} (Brier {table.attrs['brier']:.3f})",
        )
        hist_ax.hist(prob, bins=n_bins, range=(0, 1), histtype="step", color=line.get_color())
    ax.set(ylabel=f"observed fraction {POSITIVE}", xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    hist_ax.set(xlabel=f"predicted probability of {POSITIVE}", ylabel="images")
    synthetic_title(fig, f"calibration: {_where(items, split)}", synthetic=any(item[1].synthetic for item in items))
    fig.tight_layout()
    return fig


def _rates_by_threshold(y: np.ndarray, prob: np.ndarray, thresholds: np.ndarray):
    """Sensitivity and specificity at each threshold (``prob >= threshold`` is COVID)."""
    positives, negatives = np.sort(prob[y == 1]), np.sort(prob[y == 0])
    sensitivity = 1 - np.searchsorted(positives, thresholds, side="left") / max(len(positives), 1)
    specificity = np.searchsorted(negatives, thresholds, side="left") / max(len(negatives), 1)
    return sensitivity, specificity


def plot_threshold_tradeoff(run: Run, *, splits=("val", "test"), figsize=(8, 4.5)):
    """Sensitivity and specificity against the threshold, per split, with the val-chosen threshold marked."""
    thresholds = np.linspace(0, 1, 401)
    fig, ax = plt.subplots(figsize=figsize)
    for split, style in zip(splits, ("-", "--", ":"), strict=False):
        rows = run.split(split)
        if rows.empty:
            continue
        sensitivity, specificity = _rates_by_threshold(
            to_binary(rows["y_true"]), rows["probability"].to_numpy(float), thresholds
        )
        ax.plot(thresholds, sensitivity, style, color="tab:red", label=f"sensitivity ({split})")
        ax.plot(thresholds, specificity, style, color="tab:blue", label=f"specificity ({split})")
    ax.axvline(
        run.threshold,
        color="k",
        lw=1,
        label=f"threshold {run.threshold:.2f} chosen on val ({run.threshold_rule})",
    )
    ax.set(
        xlabel=f"threshold (probability of {POSITIVE} at or above it counts as {POSITIVE})",
        ylabel="rate",
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize="small", ncol=3)
    ax.grid(alpha=0.3)
    synthetic_title(fig, f"{run.dataset}/{run.model}: sensitivity-specificity trade-off", synthetic=run.synthetic)
    fig.tight_layout()
    return fig


# =========================================================================================
# Training figures: learning curves and labelled image grids.
# =========================================================================================


def plot_history(history: dict, *, title: str = "training", synthetic: bool = False):
    """Loss and AUC per epoch for train and validation: where the two curves part, over-fitting starts.

    A history without AUC (a softmax model of three classes) shows the accuracy instead.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "auc" if "auc" in history or "accuracy" not in history else "accuracy")):
        epochs = np.arange(1, len(history.get(metric, [])) + 1)
        ax.plot(epochs, history.get(metric, []), "o-", label="train")
        ax.plot(epochs, history.get(f"val_{metric}", []), "o-", label="validation")
        ax.set(xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    synthetic_title(fig, title, synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_images(images, titles, *, ncols: int = 6, title: str = "", synthetic: bool = False, size: float = 2.0):
    """A grid of grayscale images with a title each."""
    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, text in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(text, fontsize=8)
    synthetic_title(fig, title, synthetic=synthetic)
    fig.tight_layout()
    return fig


# =========================================================================================
# Lesson figures: augmentation, two-phase learning curves, a forest plot of test AUCs.
# =========================================================================================


def plot_augmentations(image, augment, *, n: int = 8, ncols: int = 5, title: str | None = None,
                       synthetic: bool = False, size: float = 2.2):
    """One image, ``n`` passes through ``augment`` in training mode, and its horizontal flip (never used).

    ``image`` is ``H x W`` (grayscale) or ``H x W x 3``, uint8; ``augment`` is a Keras layer
    (or any callable taking a ``1 x H x W x 3`` float batch and ``training=True``).
    """
    image = np.asarray(image)
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
    batch = rgb[None].astype(np.float32)
    panels = [(image, "original")]
    for i in range(n):
        out = np.asarray(augment(batch, training=True))[0, ..., 0]
        panels.append((np.clip(out, 0, 255), f"augmented #{i + 1}"))
    panels.append((image[:, ::-1], "horizontal flip:\nNOT used (anatomy)"))
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (shown, text) in zip(axes.ravel(), panels):
        ax.imshow(shown[..., 0] if shown.ndim == 3 else shown, cmap="gray", vmin=0, vmax=255)
        ax.set_title(text, fontsize=8, color="firebrick" if "NOT" in text else "black")
    synthetic_title(fig, title, synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_phased_history(history: dict, fine_tune_start: int | None, *, title: str = "training",
                        synthetic: bool = False, kept: bool | None = None):
    """:func:`plot_history` with a line where fine-tuning starts (after ``fine_tune_start`` epochs).

    ``kept``: whether the fine-tuned weights were kept (phase 2 beat phase 1 on validation AUC); shown in the legend.
    """
    fig = plot_history(history, title=title, synthetic=synthetic)
    if fine_tune_start is not None and fine_tune_start < len(history.get("loss", [])):
        label = "fine-tuning starts" + ("" if kept is None else (" (kept)" if kept else " (not kept: phase 1 was better)"))
        for ax in fig.axes:
            ax.axvline(fine_tune_start + 0.5, color="k", ls="--", lw=1, label=label)
            ax.legend(fontsize="small")
    for ax in fig.axes:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    return fig


def plot_forest(table, *, metric: str = "auc", title: str | None = None):
    """A forest plot: each model's ``metric`` with its 95% interval, one row per model, baseline included.

    ``table`` is :func:`helpers.evaluation.comparison_table` (columns ``model, dataset, synthetic,
    <metric>, <metric>_low, <metric>_high``); the majority baseline rows are drawn in grey and its value
    as a dashed line.
    """
    from helpers.evaluation import BASELINE

    rows = table.reset_index(drop=True)
    several = rows["dataset"].nunique() > 1
    labels = [f"{r.dataset}/{r.model}" if several else r.model for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
    positions = np.arange(len(rows))[::-1]
    for y, (_, row) in zip(positions, rows.iterrows()):
        baseline = row["model"] == BASELINE
        estimate, low, high = (float(row[k]) for k in (metric, f"{metric}_low", f"{metric}_high"))
        color = "grey" if baseline else "tab:blue"
        if not (np.isnan(low) or np.isnan(high)):
            ax.hlines(y, low, high, color=color, lw=2)
        ax.plot(estimate, y, "s" if not baseline else "D", color=color, ms=7)
        text = "n/a" if np.isnan(estimate) else f"{estimate:.2f}" + (
            "" if np.isnan(low) or np.isnan(high) else f" ({low:.2f}-{high:.2f})")
        ax.annotate(text, (1.02, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    baselines = rows.loc[rows["model"] == BASELINE, metric].dropna()
    if len(baselines):
        ax.axvline(float(baselines.iloc[0]), color="grey", ls="--", lw=1, label=f"{BASELINE}")
        ax.legend(loc="best", fontsize="small")
    ax.set_yticks(positions, labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set(xlabel=f"test {metric.upper() if metric == 'auc' else metric} (95% patient-bootstrap interval)",
           xlim=(min(0.4, float(np.nanmin(rows[f"{metric}_low"].to_numpy(float), initial=0.4))) - 0.02, 1.02))
    ax.grid(axis="x", alpha=0.3)
    synthetic_title(ax, title or f"{', '.join(sorted(set(rows['dataset'])))}: every model on one test set",
                    synthetic=bool(rows["synthetic"].any()))
    fig.tight_layout()
    return fig


# Figures with a module of their own, re-exported here: `from helpers import plots` gives every figure.
from helpers.plots.gradcam import plot_gradcam_grid, plot_outcome_gradcam, plot_shortcut_gradcam  # noqa: E402, F401
from helpers.plots.hybrid import plot_boosting, plot_feature_importance, plot_importance_map, plot_time_breakdown  # noqa: E402, F401
from helpers.plots.multiclass import plot_multiclass_confusion  # noqa: E402, F401
