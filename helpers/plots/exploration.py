"""Notebook 01's figures: what is in a dataset, and what a shortcut looks like. Each returns its ``Figure``.

The tables they draw come from :mod:`helpers.explore`. Figures of synthetic data say
``SYNTHETIC DATA`` in their title (:func:`helpers.plots.synthetic_title`).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from helpers.constants import NEGATIVE, PNEUMONIA, POSITIVE
from helpers.data.dataset import Dataset
from helpers.explore.tables import class_balance, file_header, images_per_patient, recorded
from helpers.images import read_image
from helpers.plots import synthetic_title

LABEL_COLORS = {NEGATIVE: "tab:blue", PNEUMONIA: "tab:orange", POSITIVE: "tab:red"}  # in class order


def _title(fig, text: str, dataset: Dataset) -> None:
    synthetic_title(fig, f"{dataset.name}: {text}", synthetic=dataset.synthetic)


def _hue(column: str, values: pd.Series) -> dict:
    """Seaborn colour options: the course's colours for labels (COVID red, NORMAL blue, PNEUMONIA orange)."""
    if column != "label":
        return {"hue_order": sorted(values.unique())}
    return {"hue_order": [label for label in LABEL_COLORS if (values == label).any()], "palette": LABEL_COLORS}


def _say(ax, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_class_balance(dataset: Dataset) -> plt.Figure:
    """Stacked bars of images per label: by split (left) and by source (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, by in zip(axes, ("split", "source"), strict=True):
        table = class_balance(dataset, by=by).drop(index="all")[list(dataset.classes)]
        table.plot.bar(stacked=True, ax=ax, color=[LABEL_COLORS[label] for label in dataset.classes], rot=0)
        ax.set(title=f"by {by}", xlabel="", ylabel="images")
        if by == "source" and len(table) > 2:
            ax.tick_params(axis="x", rotation=20)
    _title(fig, "class balance", dataset)
    return fig


def plot_images_per_patient(dataset: Dataset, *, cap: int = 10) -> plt.Figure:
    """Bar chart of :func:`helpers.explore.images_per_patient`."""
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    images_per_patient(dataset, cap=cap).plot.bar(ax=ax, color=[LABEL_COLORS[label] for label in dataset.classes],
                                                  rot=0)
    ax.set(xlabel="images per patient", ylabel="patients")
    _title(fig, "images per patient", dataset)
    return fig


def plot_demographics(dataset: Dataset, *, by: str = "label") -> plt.Figure:
    """Age histogram and sex counts per ``by``; says so where age or sex are not recorded."""
    manifest = dataset.manifest.assign(**{by: recorded(dataset.manifest[by])},
                                       age=pd.to_numeric(dataset.manifest["age"], errors="coerce"),
                                       sex=recorded(dataset.manifest["sex"]))
    fig, (age_ax, sex_ax) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    if manifest["age"].notna().any():
        known = manifest.dropna(subset=["age"])
        sns.histplot(data=known, x="age", hue=by, bins=range(0, 101, 5), element="step", ax=age_ax,
                     **_hue(by, known[by]))
        age_ax.axvline(18, color="k", ls=":", lw=1)
        age_ax.set(xlabel="age (years; dotted line: 18)", ylabel="images")
    else:
        _say(age_ax, "age not recorded in this dataset")
    sex = pd.crosstab(manifest[by], manifest["sex"])
    sex.plot.bar(ax=sex_ax, rot=0)
    sex_ax.set(xlabel=by, ylabel="images", title="sex")
    _title(fig, f"age and sex by {by}", dataset)
    return fig


def plot_image_statistics(dataset: Dataset, stats: pd.DataFrame, *, hue: str = "label") -> plt.Figure:
    """Original width against height, and the distributions of mean intensity and contrast, coloured by ``hue``."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    data = stats.assign(**{hue: recorded(stats[hue])})
    colors = _hue(hue, data[hue])
    sns.scatterplot(data=data, x="width", y="height", hue=hue, alpha=0.5, s=18, ax=axes[0], **colors)
    sizes = len(data[["width", "height"]].drop_duplicates())
    axes[0].set(title=f"original size in pixels ({sizes} distinct)")
    for ax, column, text in zip(axes[1:], ("mean", "contrast"), ("mean intensity (0-255)", "contrast (std)"),
                                strict=True):
        sns.histplot(data=data, x=column, hue=hue, stat="density", common_norm=False, element="step",
                     bins=30, ax=ax, legend=False, **colors)
        ax.set(title=text, xlabel=column)
    _title(fig, f"image statistics by {hue}", dataset)
    return fig


def _pick(rows: pd.DataFrame, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` row positions, from different patients where possible."""
    order = rows.iloc[rng.permutation(len(rows))]
    first = order.drop_duplicates("patient_id")
    return list(pd.concat([first, order.drop(first.index)]).index[:n])


def plot_sample_grid(dataset: Dataset, image_set, *, n_per_class: int = 4, seed: int = 0) -> plt.Figure:
    """A few images of each class (different patients where possible), titled with label, source and patient."""
    rows = image_set.manifest.reset_index(drop=True)
    labels = [label for label in dataset.classes if (rows["label"] == label).any()]
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(labels), n_per_class, figsize=(2.6 * n_per_class, 2.9 * len(labels)),
                             squeeze=False, layout="constrained")
    for row_axes, label in zip(axes, labels, strict=True):
        chosen = _pick(rows[rows["label"] == label], n_per_class, rng)
        for ax in row_axes:
            ax.set_axis_off()
        for ax, index in zip(row_axes, chosen, strict=False):
            row = rows.loc[index]
            ax.imshow(image_set.images[index], cmap="gray", vmin=0, vmax=255)
            patient = str(row["patient_id"]).split(":", 1)[-1][:18]
            ax.set_title(f"{label}\n{row['source']} · {patient}", fontsize=8,
                         color=LABEL_COLORS[label])
    _title(fig, "sample images", dataset)
    return fig


def plot_mean_images(dataset: Dataset, image_set, *, by: str = "source", max_groups: int = 5) -> plt.Figure:
    """The average image of each group of ``by``; with two groups also their difference (where they differ)."""
    rows = image_set.manifest.reset_index(drop=True)
    groups = sorted(recorded(rows[by]).unique())[:max_groups]
    means = {group: image_set.images[(recorded(rows[by]) == group).to_numpy()].mean(axis=0) for group in groups}
    panels = len(means) + (len(means) == 2)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.6), squeeze=False, layout="constrained")
    for ax, (group, mean) in zip(axes[0], means.items(), strict=False):
        ax.imshow(mean, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{group}\n({int((recorded(rows[by]) == group).sum())} images)", fontsize=9)
    if len(means) == 2:
        difference = np.subtract(*means.values())
        limit = max(float(np.abs(difference).max()), 1.0)
        shown = axes[0, -1].imshow(difference, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[0, -1].set_title(f"difference\n({groups[0]} - {groups[1]})", fontsize=9)
        fig.colorbar(shown, ax=axes[0, -1], fraction=0.046)
    for ax in axes[0]:
        ax.set_axis_off()
    _title(fig, f"average image by {by}", dataset)
    return fig


def plot_near_duplicates(dataset: Dataset, pairs: pd.DataFrame, *, n: int = 4, per_row: int = 2) -> plt.Figure:
    """The first ``n`` pairs side by side (``per_row`` pairs a row), titled with file name, original size, split."""
    shown = pairs.head(n)
    title = f"near-duplicates ({len(pairs)} pairs, first {len(shown)} shown)"
    if shown.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5), layout="constrained")
        _say(ax, "no near-duplicates found")
        _title(fig, title, dataset)
        return fig
    rows = -(-len(shown) // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2.9 * 2 * per_row, 3.3 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for number, (_, pair) in enumerate(shown.iterrows()):
        row, column = divmod(number, per_row)
        for side, key in enumerate("ab"):
            path = Path(dataset.root) / pair[f"path_{key}"]
            header = file_header(path)
            ax = axes[row, 2 * column + side]
            ax.imshow(read_image(path, reduce_to=256), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"pair {number + 1}{key}: {PurePosixPath(pair[f'path_{key}']).name[:26]}\n"
                         f"{header['width']}x{header['height']} · {pair[f'split_{key}']}", fontsize=8)
    _title(fig, title, dataset)
    return fig


def plot_predictability(dataset: Dataset, table: pd.DataFrame) -> plt.Figure:
    """AUC of each row of :func:`helpers.explore.shortcut_summary` as a bar, with chance (0.5) marked."""
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * max(len(table), 1)), layout="constrained")
    _title(fig, "what a logistic regression on tiny images can predict", dataset)
    if table.empty:
        _say(ax, "nothing to predict (see the message above the table)")
        return fig
    names = [f"{row.target} from {row.features.split(' (')[0]}" for row in table.itertuples()]
    colors = ["tab:orange" if target == "source" else "tab:green" for target in table["target"]]
    ax.barh(names, table["AUC"].astype(float), color=colors)
    for y, auc in enumerate(table["AUC"].astype(float)):
        ax.text(auc - 0.01, y, f"{auc:.2f}", va="center", ha="right", color="white", fontweight="bold")
    ax.axvline(0.5, color="k", ls="--", lw=1)
    ax.set(xlim=(0, 1), xlabel="cross-validated AUC (folds grouped by patient; dashed line: chance, 0.5)")
    ax.invert_yaxis()
    return fig
