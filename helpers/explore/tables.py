"""Notebook 01's tables: what is in a dataset, one ``DataFrame`` per call.

Classes (:func:`class_balance`), patients (:func:`patients`, :func:`images_per_patient`),
views and people (:func:`views`, :func:`demographics`), files (:func:`file_formats`,
:func:`image_statistics`) and near-duplicates (:func:`near_duplicate_pairs`).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from helpers.constants import POSITIVE, SPLITS
from helpers.data.dataset import Dataset, near_duplicates

NOT_RECORDED = "(not recorded)"


def recorded(values: pd.Series) -> pd.Series:
    """Empty or missing values named ``(not recorded)``."""
    return values.fillna("").astype(str).str.strip().replace("", NOT_RECORDED)


def class_balance(dataset: Dataset, *, by: str = "split") -> pd.DataFrame:
    """Images per class (the task's, in class order) for each value of ``by`` (``split``, ``source``, ...),
    with totals and the COVID share."""
    manifest, classes = dataset.manifest, list(dataset.classes)
    table = pd.crosstab(recorded(manifest[by]), manifest["label"]).reindex(columns=classes, fill_value=0)
    if by == "split":
        table = table.reindex([s for s in SPLITS if s in table.index])
    table.loc["all"] = table.sum()
    table["total"] = table[classes].sum(axis=1)
    table[f"% {POSITIVE}"] = (100 * table[POSITIVE] / table["total"].clip(lower=1)).round(1)
    table.index.name, table.columns.name = by, None
    return table


def patients(dataset: Dataset) -> pd.DataFrame:
    """Per label and in all: images, patients, images per patient (mean and most), patients with 2+ images."""
    manifest = dataset.manifest
    parts = {label: manifest[manifest["label"] == label] for label in dataset.classes
             if (manifest["label"] == label).any()}
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
    """How many patients have 1, 2, ... images (``cap`` and more in one row), per class."""
    counts = dataset.manifest.groupby(["patient_id", "label"]).size().clip(upper=cap).rename("images")
    table = pd.crosstab(counts, counts.index.get_level_values("label")).reindex(columns=list(dataset.classes),
                                                                                fill_value=0)
    table.index = [f"{n}+" if n == cap else str(n) for n in table.index]
    table.index.name, table.columns.name = "images per patient", "patients"
    return table


def views(dataset: Dataset, *, by: str = "label") -> pd.DataFrame:
    """Images per view (PA, AP, AP Supine, axial, ...) and ``by`` (label or source)."""
    manifest = dataset.manifest
    table = pd.crosstab(recorded(manifest["view"]), recorded(manifest[by]), margins=True, margins_name="all")
    table.index.name, table.columns.name = "view", by
    return table


def demographics(dataset: Dataset, *, by: str = "label") -> pd.DataFrame:
    """Age (where known) and sex per ``by`` (label or source), counted in images."""
    manifest = dataset.manifest.assign(group=recorded(dataset.manifest[by]))
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
    sex = pd.crosstab(manifest["group"], recorded(manifest["sex"]))
    table = table.join(sex.rename(columns=lambda s: f"sex {s}"))
    table.index.name = by
    return table


def file_formats(dataset: Dataset, *, by: str = "label") -> pd.DataFrame:
    """Images per file extension and ``by``: a format that differs between classes is a shortcut."""
    manifest = dataset.manifest
    extension = manifest["path"].map(lambda path: PurePosixPath(path).suffix.lower() or NOT_RECORDED)
    table = pd.crosstab(extension.rename("extension"), recorded(manifest[by]), margins=True, margins_name="all")
    table.columns.name = by
    return table


# ----------------------------------------------------------------------------- image statistics


def file_header(path: Path) -> dict:
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
    headers = pd.DataFrame([file_header(Path(dataset.root) / path) for path in rows["path"]],
                           columns=["width", "height", "format", "mode", "kilobytes"])
    table = rows[["path", "label", "source", "patient_id", "split"]].copy()
    table["extension"] = rows["path"].map(lambda path: PurePosixPath(path).suffix.lower())
    table = pd.concat([table, headers], axis=1)
    table["mean"], table["contrast"] = _pixel_statistics(image_set.images)
    return table


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
