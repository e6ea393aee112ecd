"""Notebook 01's experiments on what the early COVID-19 classifiers got wrong.

- (a) :func:`leakage`: an image-level random split puts one patient's images on both
  sides of the split; a patient-level split does not;
- (b) :func:`source_predictability` and :func:`shortcut_summary`: how well a 16x16
  thumbnail (or a few image statistics) tells where an image comes from. If the source
  is easy to predict and the sources differ in their labels, a model can score by
  recognising the hospital instead of the disease;
- the mixes that build such a shortcut on purpose: :func:`shortcut_mix`, and
  :func:`pediatric_mix`, the classic one (adult COVID-19 against children's normals).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from helpers.data.dataset import Dataset, load_dataset, patient_split
from helpers.data.sources import SourceUnavailable
from helpers.explore.tables import image_statistics, recorded
from helpers.images import resize

FEATURES = {
    "thumbnail": "16x16 thumbnail pixels",
    "statistics": "image statistics (width, height, mean, contrast)",
    "file format": "file format (extension, colour mode)",
    "source": "the source alone (which hospital)",
}


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
    y = recorded(rows[target]).to_numpy()
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
