"""Load a dataset by name: fetch it (or fall back to synthetic data), build the manifest, split by patient.

>>> ds = load_dataset("synthetic")          # doctest: +SKIP
>>> ds.manifest.head(); ds.summary()          # doctest: +SKIP

The split is stratified by label and grouped by patient, from a fixed seed, so
no patient is in two parts and the same data gives the same split everywhere.
Near-duplicate images (same picture, other size or crop) are grouped with each
other too, so a copy cannot sit in train while its twin is in test. Where a
source publishes an official split (COVID-CT) that split is used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from helpers import paths
from helpers.constants import SPLITS
from helpers.data.download import DownloadError
from helpers.data.registry import mixed_sources_note
from helpers.data.sources import MANIFEST_COLUMNS, SourceUnavailable, base_name, get_source, marker_variant
from helpers.data.tasks import DEFAULT_TASK, check_source, get_task, mapping_notes
from helpers.files import atomic_write, write_text

SYNTHETIC_FOR = {"xray": "synthetic", "ct": "synthetic-ct"}
SYNTHETIC_BANNER = (
    "SYNTHETIC DATA: everything below ran on generated cartoon images, not real patients. "
    "The numbers show that the code works, not how well a model detects COVID-19."
)


@dataclass
class Dataset:
    """A prepared dataset: files under ``root`` and one manifest row per image."""

    name: str
    root: Path
    manifest: pd.DataFrame
    modality: str
    synthetic: bool
    notes: list[str] = field(default_factory=list)
    requested: str = ""
    max_per_class: int | None = None  # the cap it was loaded with (part of its saved files' names)
    task: str = DEFAULT_TASK  # helpers.data.tasks: which classes the labels are

    @property
    def classes(self) -> tuple[str, ...]:
        """The task's classes in class-index order (NORMAL, COVID for the default task)."""
        return get_task(self.task).classes

    def _shown_labels(self) -> list[str]:
        return ["COVID", "NORMAL"] if self.task == DEFAULT_TASK else list(self.classes)

    @property
    def key(self) -> str:
        """A hash of the manifest and the files' sizes: any change gives a new key (and new caches)."""
        digest = hashlib.sha256(self.manifest[MANIFEST_COLUMNS].to_csv(index=False).encode())
        for rel in self.manifest["path"]:
            stat = (self.root / rel).stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    @property
    def test_fingerprint(self) -> str:
        """A hash of the test split's images and patients: runs scored on the same test set share it."""
        return test_fingerprint(self.manifest)

    def split(self, name: str) -> pd.DataFrame:
        return self.manifest[self.manifest["split"] == name]

    def summary(self) -> pd.DataFrame:
        """Images (and patients) per split and label."""
        table = self.manifest.groupby(["split", "label"]).agg(
            images=("path", "size"), patients=("patient_id", "nunique")
        )
        return table.reindex(pd.MultiIndex.from_product([SPLITS, self._shown_labels()]), fill_value=0)

    def info(self) -> dict:
        """What ``dataset.json`` records (the report reads it through :func:`dataset_info`)."""
        counts = self.manifest.groupby(["split", "label"]).size()
        task = {} if self.task == DEFAULT_TASK else {"task": self.task, "classes": list(self.classes)}
        return {
            "name": self.name,
            "requested": self.requested,
            "max_per_class": self.max_per_class,
            "key": self.key,
            "synthetic": self.synthetic,
            "modality": self.modality,
            "n_images": len(self.manifest),
            "n_patients": int(self.manifest["patient_id"].nunique()),
            "splits": {s: {lab: int(counts.get((s, lab), 0)) for lab in self._shown_labels()} for s in SPLITS},
            "sources": self.manifest["source"].value_counts().to_dict(),
            "notes": self.notes,
            "test_fingerprint": self.test_fingerprint,
            **task,
        }

    def save(self) -> Path:
        """Write the manifest and ``dataset.json`` to ``outputs/<name>/`` under this cap's names.

        No cap: ``manifest.csv`` and ``dataset.json``; ``max_per_class=250``: ``manifest-cap250.csv``
        and ``dataset-cap250.json``. Files of other content (another key) under those names are
        kept, renamed ``dataset.<their key>.json`` and the like, never overwritten.
        """
        info = self.info()
        json_file, csv_file = saved_files(self.name, self.max_per_class, task=self.task)
        earlier = _read_info(json_file)
        if earlier is not None and earlier.get("key") != info["key"]:
            tag = earlier.get("key") or earlier.get("test_fingerprint") or "earlier"
            for file in (json_file, csv_file):
                if file.exists():
                    file.replace(file.with_suffix(f".{tag}{file.suffix}"))
            print(f"note: {json_file} held another content of {self.name!r} (key {tag}); it was kept as "
                  f"{json_file.with_suffix(f'.{tag}.json').name}")
        with atomic_write(csv_file, "w", newline="") as file:
            self.manifest.to_csv(file, index=False)
        write_text(json_file, json.dumps(info, indent=2, default=str))
        return json_file.parent


def saved_files(
    name: str, cap: int | None = None, *, root: Path | None = None, task: str = DEFAULT_TASK,
) -> tuple[Path, Path]:
    """``(dataset.json, manifest.csv)`` of dataset ``name`` loaded with ``max_per_class=cap``, under ``root``.

    ``root`` defaults to the course's output folder; a task other than the default adds its name
    (``dataset-three-class-cap250.json``).
    """
    suffix = ("" if task == DEFAULT_TASK else f"-{task}") + (f"-cap{cap}" if cap else "")
    folder = Path(root or paths.output_dir()) / name
    return folder / f"dataset{suffix}.json", folder / f"manifest{suffix}.csv"


def dataset_info(
    name: str, cap: int | None = None, *, fingerprint: str | None = None, root: Path | None = None,
) -> dict | None:
    """What :meth:`Dataset.save` recorded for ``name`` loaded with ``max_per_class=cap``, or None.

    With ``fingerprint`` (a run's ``test_fingerprint``), the saved record whose test split has
    it, whatever its cap (earlier records kept beside included). ``root``: another output folder.
    """
    if fingerprint is None:
        return _read_info(saved_files(name, cap, root=root)[0])
    for file in sorted(saved_files(name, root=root)[0].parent.glob("dataset*.json")):
        info = _read_info(file)
        if info is not None and info.get("test_fingerprint") == fingerprint:
            return info
    return None


def _read_info(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def test_fingerprint(manifest: pd.DataFrame) -> str:
    """16 hex digits of SHA-256 over the sorted ``path,patient_id`` pairs of the test rows."""
    test = manifest[manifest["split"] == "test"]
    pairs = sorted(f"{path},{patient}" for path, patient in zip(test["path"], test["patient_id"].astype(str)))
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16]


def load_dataset(
    name: str = "synthetic", *, strict: bool = False, max_per_class: int | None = None, seed: int = 42,
    val_fraction: float = 0.15, test_fraction: float = 0.15, dedup: bool = True,
    synthetic_options: dict | None = None, verbose: bool = True, task: str = DEFAULT_TASK, **options,
) -> Dataset:
    """Prepare dataset ``name`` and return it split by patient.

    If the source cannot be reached and ``strict`` is false, the synthetic
    dataset of the same modality is used instead, and said so loudly.
    ``options`` go to the source's ``prepare`` (``synthetic_options`` to the
    synthetic fallback); ``max_per_class`` caps images per class by whole patients.
    ``task`` (:mod:`helpers.data.tasks`) chooses the classes; its mapping and counts go to the notes.
    """
    name, tagged = base_name(name)
    if tagged:
        options["marker"] = True
    source = get_source(name)
    check_source(name, task)
    if task != DEFAULT_TASK:
        options["task"] = task
    try:
        prepared = source.prepare(paths.data_dir(), **options)
    except (SourceUnavailable, DownloadError) as error:
        if strict:
            raise SourceUnavailable(f"{error}\n(strict mode: not falling back to synthetic data)") from error
        fallback = SYNTHETIC_FOR[source.modality]
        message = f"Could not load dataset {name!r}: {error}\nFalling back to {fallback!r} (synthetic data)."
        print(f"WARNING: {message}")
        dataset = load_dataset(
            fallback, max_per_class=max_per_class, seed=seed, val_fraction=val_fraction,
            test_fraction=test_fraction, verbose=verbose, task=task, **(synthetic_options or {}),
        )
        dataset.notes.insert(0, message)
        dataset.requested = name
        dataset.save()
        return dataset
    rows = prepared.rows.copy()
    if "split" not in rows:
        rows["split"] = ""
    rows["split"] = rows["split"].fillna("").astype(str)
    rows["patient_id"] = rows["patient_id"].astype(str)
    notes = list(prepared.notes)
    if task != DEFAULT_TASK:
        notes += mapping_notes(name, task, rows.assign(finding=rows.get("finding", rows["label"])))
    if max_per_class:
        rows = cap_per_class(rows, max_per_class, seed=seed)
        notes.append(f"capped at {max_per_class} images per class (whole patients, seed {seed})")
    notes += mixed_sources_note(rows)
    groups = rows["patient_id"]
    if dedup and not source.synthetic:
        groups, note = _merge_near_duplicates(prepared.root, rows)
        notes += note
    rows["split"] = patient_split(
        rows, groups=groups, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    columns = MANIFEST_COLUMNS + [c for c in rows.columns if c not in MANIFEST_COLUMNS]
    dataset = Dataset(
        name=marker_variant(name) if options.get("marker") else name, root=Path(prepared.root),
        manifest=rows[columns].reset_index(drop=True),
        modality=source.modality, synthetic=source.synthetic, notes=notes, requested=name,
        max_per_class=max_per_class or None, task=task,
    )
    dataset.save()
    if verbose:
        print(describe(dataset))
    return dataset


def describe(dataset: Dataset) -> str:
    """A few lines a learner reads first: what was loaded, how it was split, what to keep in mind."""
    s = dataset.summary()["images"].unstack()
    lines = [f"dataset {dataset.name!r} ({dataset.modality}): {len(dataset.manifest)} images, "
             f"{dataset.manifest['patient_id'].nunique()} patients"]
    lines += [f"  {split:5s}: " + ", ".join(f"{int(s.loc[split, label])} {label}" for label in s.columns)
              for split in SPLITS]
    lines += [f"  note: {note}" for note in dataset.notes]
    if dataset.synthetic:
        lines.insert(0, "=" * 80 + "\n" + SYNTHETIC_BANNER + "\n" + "=" * 80)
    return "\n".join(lines)


def cap_per_class(rows: pd.DataFrame, max_per_class: int, *, seed: int = 42) -> pd.DataFrame:
    """Keep at most ``max_per_class`` images per label, taking whole patients in a seeded random order."""
    keep = []
    rng = np.random.default_rng(seed)
    for _, part in rows.groupby("label"):
        patients = rng.permutation(np.asarray(part["patient_id"].unique(), dtype=object))
        sizes = part.groupby("patient_id").size().loc[patients]
        chosen = sizes.index[(sizes.cumsum() <= max_per_class).to_numpy()]
        keep.append(part[part["patient_id"].isin(chosen)])
    return pd.concat(keep).sort_index()


def patient_split(
    rows: pd.DataFrame, *, groups: pd.Series | None = None, val_fraction: float = 0.15,
    test_fraction: float = 0.15, seed: int = 42,
) -> pd.Series:
    """Assign ``train``/``val``/``test``, stratified by label and grouped by patient.

    Rows that already carry a split (an official one) keep it; the others are
    split. ``groups`` defaults to ``patient_id``.
    """
    groups = (rows["patient_id"] if groups is None else groups).astype(str)
    split = rows["split"].copy() if "split" in rows else pd.Series("", index=rows.index)
    todo = split == ""
    if not todo.any():
        return split
    has_test = (split == "test").any()
    remaining = rows.index[todo]
    if not has_test:
        test = _take_fraction(rows.loc[remaining], groups.loc[remaining], test_fraction, seed)
        split.loc[test] = "test"
        remaining = remaining.difference(test)
    val_share = val_fraction / (1 - (0 if has_test else test_fraction))
    val = _take_fraction(rows.loc[remaining], groups.loc[remaining], val_share, seed + 1)
    split.loc[val] = "val"
    split.loc[remaining.difference(val)] = "train"
    return split


def _take_fraction(rows: pd.DataFrame, groups: pd.Series, fraction: float, seed: int) -> pd.Index:
    """About ``fraction`` of the rows, whole groups only, with the label balance kept."""
    n_groups = groups.nunique()
    n_splits = int(min(max(2, round(1 / fraction)), n_groups))
    if n_splits < 2:
        return rows.index[:0]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # tiny classes (a handful of patients) are split as well as they can be
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        _, chosen = next(folds.split(rows, rows["label"], groups))
    return rows.index[chosen]


def _duplicate_clusters(root: Path, rows: pd.DataFrame) -> list[list[int]]:
    """Groups of row numbers whose images look nearly identical, cached per list of files."""
    from helpers.images import near_duplicate_groups

    digest = hashlib.sha256(rows[["path", "patient_id"]].to_csv(index=False).encode()).hexdigest()[:16]
    cache = paths.cache_dir("duplicates") / f"{digest}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    clusters = near_duplicate_groups(Path(root), list(rows["path"]))
    cache.write_text(json.dumps(clusters))
    return clusters


def _merge_near_duplicates(root: Path, rows: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """Group ids in which near-duplicate images share a group."""
    clusters = _duplicate_clusters(root, rows)
    groups = rows["patient_id"].astype(str).copy()
    merged = 0
    for cluster in clusters:
        ids = sorted(set(groups.iloc[cluster]))
        if len(ids) > 1:
            merged += 1
            groups[groups.isin(ids)] = ids[0]
    notes = []
    if clusters:
        notes.append(f"{len(clusters)} groups of near-duplicate images found; {merged} of them spanned several "
                     "patient ids and were kept on one side of the split")
    return groups, notes


def near_duplicates(dataset: Dataset) -> list[list[int]]:
    """Groups of manifest row numbers whose images look nearly identical (for notebook 01)."""
    return _duplicate_clusters(dataset.root, dataset.manifest)


SYNTHETIC_SIZES = {True: dict(n_patients=90, size=128), False: dict(n_patients=400, size=256)}


def course_dataset(
    name: str = "synthetic", *, smoke: bool = False, strict: bool = False, max_per_class: int | None = None,
    marker: bool = False, task: str = DEFAULT_TASK, **options,
) -> Dataset:
    """The one call every notebook makes: ``load_dataset`` with the course's settings for SMOKE or full runs.

    Synthetic data (asked for, or the offline fallback) is generated small in
    SMOKE mode and larger otherwise; ``marker=True`` adds the source marker of
    the shortcut lesson; ``task`` chooses the classes (:mod:`helpers.data.tasks`).
    """
    name, tagged = base_name(name)
    synthetic = {**SYNTHETIC_SIZES[bool(smoke)], "marker": marker or tagged}
    if get_source(name).synthetic:
        options = {**synthetic, **options}
    return load_dataset(name, strict=strict, max_per_class=max_per_class, synthetic_options=synthetic, task=task,
                        **options)
