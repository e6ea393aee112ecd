"""Data exploration for notebook 01: what is in a dataset, and what the early COVID-19 classifiers got wrong.

Tables are ``DataFrame`` s and figures matplotlib ``Figure`` s, one call each:

- what is there: :func:`class_balance`, :func:`patients`, :func:`images_per_patient`,
  :func:`views`, :func:`demographics`, :func:`file_formats`, :func:`image_statistics`,
  :func:`sample_grid`, :func:`mean_images`, :func:`near_duplicate_pairs`;
- experiment (a), :func:`leakage`: an image-level random split puts one patient's
  images on both sides of the split; a patient-level split does not;
- experiment (b), :func:`source_predictability`: how well a 16x16 thumbnail (or a
  few image statistics) tells where an image comes from. If the source is easy to
  predict and the sources differ in their labels, a model can score by
  recognising the hospital instead of the disease (:func:`shortcut_mix` builds
  such a mix on purpose, :func:`pediatric_mix` the classic one).

Figures of synthetic data say ``SYNTHETIC DATA`` in their title. No TensorFlow here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PurePosixPath

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from helpers.constants import LABELS, SPLITS
from helpers.data.dataset import Dataset, load_dataset, near_duplicates, patient_split
from helpers.data.sources import SourceUnavailable
from helpers.images import read_image, resize
from helpers.plots import synthetic_title

LABEL_COLORS = {"COVID": "tab:red", "NORMAL": "tab:blue"}
NOT_RECORDED = "(not recorded)"
FEATURES = {
    "thumbnail": "16x16 thumbnail pixels",
    "statistics": "image statistics (width, height, mean, contrast)",
    "file format": "file format (extension, colour mode)",
    "source": "the source alone (which hospital)",
}


def _title(fig, text: str, dataset: Dataset) -> None:
    synthetic_title(fig, f"{dataset.name}: {text}", synthetic=dataset.synthetic)


def _hue(column: str, values: pd.Series) -> dict:
    """Seaborn colour options: the course's colours for labels (COVID red, NORMAL blue), defaults otherwise."""
    if column != "label":
        return {"hue_order": sorted(values.unique())}
    return {"hue_order": [label for label in LABELS if (values == label).any()], "palette": LABEL_COLORS}


def _recorded(values: pd.Series) -> pd.Series:
    """Empty or missing values named ``(not recorded)``."""
    return values.fillna("").astype(str).str.strip().replace("", NOT_RECORDED)


# ------------------------------------------------------------------------------------- tables


def class_balance(dataset: Dataset, *, by: str = "split") -> pd.DataFrame:
    """Images per label for each value of ``by`` (``split``, ``source``, ...), with totals and the COVID share."""
    manifest = dataset.manifest
    table = pd.crosstab(_recorded(manifest[by]), manifest["label"]).reindex(columns=LABELS, fill_value=0)
    if by == "split":
        table = table.reindex([s for s in SPLITS if s in table.index])
    table.loc["all"] = table.sum()
    table["total"] = table[list(LABELS)].sum(axis=1)
    table["% COVID"] = (100 * table["COVID"] / table["total"].clip(lower=1)).round(1)
    table.index.name, table.columns.name = by, None
    return table


def plot_class_balance(dataset: Dataset) -> plt.Figure:
    """Stacked bars of images per label: by split (left) and by source (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, by in zip(axes, ("split", "source"), strict=True):
        table = class_balance(dataset, by=by).drop(index="all")[list(LABELS)]
        table.plot.bar(stacked=True, ax=ax, color=[LABEL_COLORS[label] for label in LABELS], rot=0)
        ax.set(title=f"by {by}", xlabel="", ylabel="images")
        if by == "source" and len(table) > 2:
            ax.tick_params(axis="x", rotation=20)
    _title(fig, "class balance", dataset)
    return fig


def patients(dataset: Dataset) -> pd.DataFrame:
    """Per label and in all: images, patients, images per patient (mean and most), patients with 2+ images."""
    manifest = dataset.manifest
    parts = {label: manifest[manifest["label"] == label] for label in LABELS if (manifest["label"] == label).any()}
    records = {}
    for name, rows in {**parts, "all": manifest}.items():
        per_patient = rows.groupby("patient_id").size()
        records[name] = {
            "images": len(rows),
            "patients": len(per_patient),
            "images per patient": round(float(per_patient.mean()), 2) if len(rows) else 0.0,
            "most images": int(per_patient.max()) if len(rows) else 0,
            "patients with 2+ images": int((per_patient >= 2).sum()),
        }
    return pd.DataFrame.from_dict(records, orient="index")


def images_per_patient(dataset: Dataset, *, cap: int = 10) -> pd.DataFrame:
    """How many patients have 1, 2, ... images (``cap`` and more in one row), per label."""
    counts = dataset.manifest.groupby(["patient_id", "label"]).size().clip(upper=cap).rename("images")
    table = pd.crosstab(counts, counts.index.get_level_values("label")).reindex(columns=LABELS, fill_value=0)
    table.index = [f"{n}+" if n == cap else str(n) for n in table.index]
    table.index.name, table.columns.name = "images per patient", "patients"
    return table


def plot_images_per_patient(dataset: Dataset, *, cap: int = 10) -> plt.Figure:
    """Bar chart of :func:`images_per_patient`."""
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    images_per_patient(dataset, cap=cap).plot.bar(ax=ax, color=[LABEL_COLORS[label] for label in LABELS], rot=0)
    ax.set(xlabel="images per patient", ylabel="patients")
    _title(fig, "images per patient", dataset)
    return fig


def views(dataset: Dataset, *, by: str = "label") -> pd.DataFrame:
    """Images per view (PA, AP, AP Supine, axial, ...) and ``by`` (label or source)."""
    manifest = dataset.manifest
    table = pd.crosstab(_recorded(manifest["view"]), _recorded(manifest[by]), margins=True, margins_name="all")
    table.index.name, table.columns.name = "view", by
    return table


def demographics(dataset: Dataset, *, by: str = "label") -> pd.DataFrame:
    """Age (where known) and sex per ``by`` (label or source), counted in images."""
    manifest = dataset.manifest.assign(group=_recorded(dataset.manifest[by]))
    age = pd.to_numeric(manifest["age"], errors="coerce")
    grouped = age.groupby(manifest["group"])
    table = pd.DataFrame({
        "images": manifest.groupby("group").size(),
        "age known": grouped.count(),
        "age mean": grouped.mean().round(1),
        "age min": grouped.min(),
        "age max": grouped.max(),
        "under 18": (age < 18).groupby(manifest["group"]).sum(),
    })
    sex = pd.crosstab(manifest["group"], _recorded(manifest["sex"]))
    table = table.join(sex.rename(columns=lambda s: f"sex {s}"))
    table.index.name = by
    return table


def plot_demographics(dataset: Dataset, *, by: str = "label") -> plt.Figure:
    """Age histogram and sex counts per ``by``; says so where age or sex are not recorded."""
    manifest = dataset.manifest.assign(**{by: _recorded(dataset.manifest[by])},
                                       age=pd.to_numeric(dataset.manifest["age"], errors="coerce"),
                                       sex=_recorded(dataset.manifest["sex"]))
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


def _say(ax, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def file_formats(dataset: Dataset, *, by: str = "label") -> pd.DataFrame:
    """Images per file extension and ``by``: a format that differs between classes is a shortcut."""
    manifest = dataset.manifest
    extension = manifest["path"].map(lambda path: PurePosixPath(path).suffix.lower() or NOT_RECORDED)
    table = pd.crosstab(extension.rename("extension"), _recorded(manifest[by]), margins=True, margins_name="all")
    table.columns.name = by
    return table


# ----------------------------------------------------------------------------- image statistics


def _header(path: Path) -> dict:
    """Width, height, format and colour mode from the file's header (no decoding), and its size on disk."""
    try:
        with Image.open(path) as image:
            info = {"width": image.width, "height": image.height, "format": image.format, "mode": image.mode}
    except Exception:  # unreadable files get no header; load_images reports them
        info = {"width": np.nan, "height": np.nan, "format": "", "mode": ""}
    return {**info, "kilobytes": round(os.path.getsize(path) / 1024, 1) if path.is_file() else np.nan}


def _pixel_statistics(images: np.ndarray, *, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each image's pixels, a chunk at a time (no float copy of the whole set)."""
    flat = images.reshape(len(images), -1)
    means, stds = np.empty(len(flat)), np.empty(len(flat))
    for start in range(0, len(flat), chunk):
        part = flat[start:start + chunk].astype(np.float32)
        means[start:start + chunk], stds[start:start + chunk] = part.mean(axis=1), part.std(axis=1)
    return means, stds


def image_statistics(dataset: Dataset, image_set) -> pd.DataFrame:
    """One row per image of ``image_set`` (from ``helpers.images.load_images``, or any subset of one):
    original size, format and colour mode read from the file header (cheap: nothing is decoded), file
    size, and the mean intensity and contrast (standard deviation) of its decoded pixels."""
    rows = image_set.manifest.reset_index(drop=True)
    headers = pd.DataFrame([_header(Path(dataset.root) / path) for path in rows["path"]],
                           columns=["width", "height", "format", "mode", "kilobytes"])
    table = rows[["path", "label", "source", "patient_id", "split"]].copy()
    table["extension"] = rows["path"].map(lambda path: PurePosixPath(path).suffix.lower())
    table = pd.concat([table, headers], axis=1)
    table["mean"], table["contrast"] = _pixel_statistics(image_set.images)
    return table


def plot_image_statistics(dataset: Dataset, stats: pd.DataFrame, *, hue: str = "label") -> plt.Figure:
    """Original width against height, and the distributions of mean intensity and contrast, coloured by ``hue``."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    data = stats.assign(**{hue: _recorded(stats[hue])})
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


def sample_grid(dataset: Dataset, image_set, *, n_per_class: int = 4, seed: int = 0) -> plt.Figure:
    """A few images of each class (different patients where possible), titled with label, source and patient."""
    rows = image_set.manifest.reset_index(drop=True)
    labels = [label for label in LABELS if (rows["label"] == label).any()]
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
                         color="tab:red" if label == "COVID" else "tab:blue")
    _title(fig, "sample images", dataset)
    return fig


def mean_images(dataset: Dataset, image_set, *, by: str = "source", max_groups: int = 5) -> plt.Figure:
    """The average image of each group of ``by``; with two groups also their difference (where they differ)."""
    rows = image_set.manifest.reset_index(drop=True)
    groups = sorted(_recorded(rows[by]).unique())[:max_groups]
    means = {group: image_set.images[(_recorded(rows[by]) == group).to_numpy()].mean(axis=0) for group in groups}
    panels = len(means) + (len(means) == 2)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.6), squeeze=False, layout="constrained")
    for ax, (group, mean) in zip(axes[0], means.items(), strict=False):
        ax.imshow(mean, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{group}\n({int((_recorded(rows[by]) == group).sum())} images)", fontsize=9)
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


# ------------------------------------------------------------------------------- near-duplicates


def near_duplicate_pairs(dataset: Dataset, *, groups: list[list[int]] | None = None) -> pd.DataFrame:
    """Pairs of near-identical images (each group's first image with each other one), and where they sit.

    ``groups`` defaults to :func:`helpers.data.dataset.near_duplicates` (perceptual hashes of every image).
    """
    groups = near_duplicates(dataset) if groups is None else groups
    manifest = dataset.manifest
    records = []
    for group in groups:
        first = manifest.iloc[group[0]]
        for other in group[1:]:
            second = manifest.iloc[other]
            records.append({
                "path_a": first["path"], "path_b": second["path"], "label_a": first["label"],
                "label_b": second["label"], "patient_a": first["patient_id"], "patient_b": second["patient_id"],
                "same_patient": first["patient_id"] == second["patient_id"], "split_a": first["split"],
                "split_b": second["split"], "same_split": first["split"] == second["split"],
            })
    columns = ["path_a", "path_b", "label_a", "label_b", "patient_a", "patient_b", "same_patient", "split_a",
               "split_b", "same_split"]
    return pd.DataFrame(records, columns=columns)


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
            header = _header(path)
            ax = axes[row, 2 * column + side]
            ax.imshow(read_image(path, reduce_to=256), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"pair {number + 1}{key}: {PurePosixPath(pair[f'path_{key}']).name[:26]}\n"
                         f"{header['width']}x{header['height']} · {pair[f'split_{key}']}", fontsize=8)
    _title(fig, title, dataset)
    return fig


# ------------------------------------------------------------------------- experiment (a): leakage


def image_level_split(rows: pd.DataFrame, *, test_fraction: float = 0.2, seed: int = 42) -> pd.Series:
    """``train``/``test`` by shuffling images (stratified by label), ignoring patients: the common mistake."""
    counts = rows["label"].value_counts()
    stratify = rows["label"] if len(counts) > 1 and counts.min() >= 2 else None
    _, test = train_test_split(rows.index, test_size=test_fraction, stratify=stratify, random_state=seed)
    return pd.Series("train", index=rows.index).mask(rows.index.isin(test), "test")


def _leaks(rows: pd.DataFrame, split: pd.Series, duplicates: list[list[int]] | None) -> dict:
    """What crosses from train to test: patients, their test images, and near-duplicate groups."""
    test = (split == "test").to_numpy()
    train_patients, test_patients = set(rows["patient_id"][~test]), set(rows["patient_id"][test])
    both = train_patients & test_patients
    leaked = rows["patient_id"][test].isin(both)
    counts = {
        "test images": int(test.sum()),
        "test patients": len(test_patients),
        "patients in train and test": len(both),
        "test images of those patients": int(leaked.sum()),
        "% test images leaked": round(100 * float(leaked.mean()), 1) if len(leaked) else 0.0,
    }
    if duplicates is not None:
        counts["near-duplicate groups in train and test"] = sum(len(set(test[group])) > 1 for group in duplicates)
    return counts


def leakage(dataset: Dataset, *, seed: int = 42, test_fraction: float = 0.2,
            duplicates: list[list[int]] | None = None) -> pd.DataFrame:
    """Experiment (a): how many patients an image-level random split puts in both train and test.

    Compares an image-level random split, a patient-level split
    (:func:`helpers.data.dataset.patient_split`; its val part counts as train) and the
    dataset's own split (train and val against test). ``duplicates`` (groups of
    manifest rows, from :func:`helpers.data.dataset.near_duplicates`) adds the number
    of near-duplicate groups that straddle train and test.
    """
    rows = dataset.manifest.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only N members"
        patient = patient_split(rows.assign(split=""), test_fraction=test_fraction, seed=seed)
    splits = {
        "image-level random split": image_level_split(rows, test_fraction=test_fraction, seed=seed),
        "patient-level split": patient.replace("val", "train"),
        "this dataset's split": rows["split"].replace("val", "train"),
    }
    table = pd.DataFrame.from_dict({name: _leaks(rows, split, duplicates) for name, split in splits.items()},
                                   orient="index")
    table.index.name = "split"
    return table


# ------------------------------------------------------------------- experiment (b): shortcuts


def thumbnails(image_set, *, size: int = 16) -> np.ndarray:
    """Each image shrunk to ``size x size`` and flattened: ``N x size**2`` floats in 0..255."""
    small = [resize(image, size) for image in image_set.images]
    return np.asarray(small, np.float32).reshape(len(small), -1)


def _features(kind: str, image_set, stats: pd.DataFrame, size: int) -> np.ndarray:
    if kind == "thumbnail":
        return thumbnails(image_set, size=size)
    if kind == "statistics":
        return stats[["width", "height", "mean", "contrast"]].astype(float).fillna(0).to_numpy()
    if kind == "file format":
        return pd.get_dummies(stats[["extension", "mode"]].astype(str)).to_numpy(float)
    if kind == "source":
        return pd.get_dummies(image_set.manifest["source"].astype(str)).to_numpy(float)
    raise ValueError(f"unknown features {kind!r}; choose from {list(FEATURES)}")


def _folds(y: np.ndarray, groups: np.ndarray, folds: int) -> int:
    """As many folds as asked, but no more than the patients of the rarest class."""
    per_class = pd.Series(groups).groupby(y).nunique()
    return int(min(folds, per_class.min()))


def _cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int, seed: int) -> dict:
    """Out-of-fold AUC and accuracy of a logistic regression, folds grouped by patient."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only N members"
        prob = cross_val_predict(model, x, y, groups=groups, cv=cv, method="predict_proba")
    classes = np.unique(y)
    auc = roc_auc_score(y, prob[:, 1]) if len(classes) == 2 else roc_auc_score(y, prob, multi_class="ovr")
    return {"AUC": round(float(auc), 3), "accuracy": round(accuracy_score(y, classes[prob.argmax(axis=1)]), 3)}


def source_predictability(
    dataset: Dataset, image_set, *, target: str = "source", features=("thumbnail", "statistics"),
    stats: pd.DataFrame | None = None, size: int = 16, folds: int = 5, seed: int = 0,
) -> pd.DataFrame:
    """Experiment (b): how well ``target`` (the source, or the label) is predicted from tiny images.

    One row per feature set (see :data:`FEATURES`): cross-validated AUC (one-vs-rest
    for 3+ classes) and accuracy of a logistic regression, folds grouped by patient,
    next to the majority-class accuracy. With one value of ``target`` only, there is
    nothing to predict: the table is empty and a message says so.
    """
    rows = image_set.manifest.reset_index(drop=True)
    y = _recorded(rows[target]).to_numpy()
    groups = rows["patient_id"].astype(str).to_numpy()
    classes = pd.Series(y).value_counts()
    columns = ["target", "features", "classes", "images", "AUC", "accuracy", "majority accuracy"]
    n_folds = _folds(y, groups, folds) if len(classes) > 1 else 0
    if n_folds < 2:
        why = (f"only one {target} ({classes.index[0]!r})" if len(classes) == 1
               else f"too few patients in {target} {classes.index[-1]!r}")
        print(f"{dataset.name}: cannot predict the {target}: {why}. Mix several sources "
              "(helpers.explore.shortcut_mix) or use the synthetic set with marker=True to see the shortcut.")
        return pd.DataFrame(columns=columns)
    stats = image_statistics(dataset, image_set) if stats is None and set(features) - {"thumbnail"} else stats
    records = [
        {"target": target, "features": FEATURES[kind], "classes": len(classes), "images": len(y),
         **_cross_validate(_features(kind, image_set, stats, size), y, groups, folds=n_folds, seed=seed),
         "majority accuracy": round(float(classes.iloc[0] / len(y)), 3)}
        for kind in features
    ]
    return pd.DataFrame(records, columns=columns)


def shortcut_summary(dataset: Dataset, image_set, *, stats: pd.DataFrame | None = None,
                     **options) -> pd.DataFrame:
    """The shortcut in two steps: can pixels tell the source, and can the source tell the label?

    Rows of :func:`source_predictability`: the source from thumbnails and image
    statistics; then, for contrast, the label from the same features and (with
    several sources) from the source alone.
    """
    stats = image_statistics(dataset, image_set) if stats is None else stats
    several = image_set.manifest["source"].nunique() > 1
    tables = [
        source_predictability(dataset, image_set, target="source", stats=stats, **options),
        source_predictability(dataset, image_set, target="label", stats=stats,
                              features=("thumbnail", "statistics") + (("source",) if several else ()), **options),
    ]
    return pd.concat([table for table in tables if not table.empty], ignore_index=True)


def plot_predictability(dataset: Dataset, table: pd.DataFrame) -> plt.Figure:
    """AUC of each row of :func:`shortcut_summary` as a bar, with chance (0.5) marked."""
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


# ------------------------------------------------------------------------- mixing two sources


def shortcut_mix(covid: Dataset, normal: Dataset, *, name: str | None = None, seed: int = 42) -> Dataset:
    """The COVID images of ``covid`` with the NORMAL images of ``normal``, split anew by patient.

    This is how many early COVID-19 data sets were built, and why their results
    were too good: every COVID image comes from one source and every NORMAL
    image from another, so recognising the source is enough.
    """
    if covid.modality != normal.modality:
        raise ValueError(f"cannot mix {covid.modality} ({covid.name}) with {normal.modality} ({normal.name})")
    parts = [(covid, "COVID"), (normal, "NORMAL")]
    for dataset, label in parts:
        if not (dataset.manifest["label"] == label).any():
            raise ValueError(f"{dataset.name} has no {label} images to mix")
    root = Path(os.path.commonpath([Path(dataset.root).resolve() for dataset, _ in parts]))
    rows = pd.concat([
        dataset.manifest[dataset.manifest["label"] == label].assign(
            path=lambda rows, d=dataset: [(Path(d.root).resolve() / p).relative_to(root).as_posix()
                                          for p in rows["path"]])
        for dataset, label in parts
    ], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only N members"
        rows["split"] = patient_split(rows.assign(split=""), seed=seed)
    return Dataset(
        name=name or f"{covid.name}-covid+{normal.name}-normal", root=root, manifest=rows,
        modality=covid.modality, synthetic=covid.synthetic or normal.synthetic,
        notes=[f"COVID images from {covid.name}, NORMAL images from {normal.name}: label and source coincide, "
               "so a model can score by recognising the source (a shortcut)"],
        requested="mix",
    )


def pediatric_mix(dataset: Dataset, *, max_per_class: int | None = None, **options) -> Dataset | None:
    """``dataset``'s COVID images with the pediatric normals of ``chest-xray-pneumonia`` (Kermany et al.).

    The age shortcut of the early COVID-19 models, rebuilt on purpose. Returns
    ``None`` with a message when ``dataset`` is synthetic or CT, or when the
    pediatric set cannot be loaded (``options`` go to its ``prepare``, e.g. ``path=``).
    """
    if dataset.synthetic or dataset.modality != "xray":
        print(f"pediatric mix: skipped ({dataset.name} is {'synthetic' if dataset.synthetic else 'CT'}; "
              "it needs real chest X-rays)")
        return None
    try:
        normal = load_dataset("chest-xray-pneumonia", strict=True, max_per_class=max_per_class, verbose=False,
                              **options)
    except SourceUnavailable as error:
        print(f"pediatric mix: skipped, chest-xray-pneumonia is unavailable: {error}")
        return None
    return shortcut_mix(dataset, normal, name=f"{dataset.name}+pediatric-normals")
