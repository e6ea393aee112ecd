"""The dataset registry and the manifest contract every source fills.

Each :class:`Source` is declarative (name, modality, license, size, homepage)
plus a ``prepare(data_dir, **options)`` function that fetches what is missing
and returns a :class:`Prepared`: the dataset root and one row per image with
:data:`MANIFEST_COLUMNS` (``split`` only where the source publishes an official
one). The sources themselves live in :mod:`helpers.data.sources`, one module per
dataset; this module holds what they share.

Rules every source follows: ``label`` is exactly ``COVID`` or ``NORMAL`` through
an explicit map; every row dropped for a reason is counted in ``Prepared.notes``;
``patient_id`` is prefixed with the dataset's name and ``source`` names where
the image came from (per image where the dataset says so); a network failure
raises :class:`SourceUnavailable` naming the source and the remedy; a second
call with all files present does no network I/O.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from helpers.constants import LABELS, MARKER_SUFFIX, NEGATIVE, PNEUMONIA, POSITIVE

MANIFEST_COLUMNS = ["path", "label", "patient_id", "source", "modality", "view", "sex", "age", "split"]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".dcm"})
MODALITIES = {"xray": "X-ray", "ct": "CT"}  # the course's name -> the name in ieee8023's metadata


class SourceUnavailable(RuntimeError):
    """A dataset could not be fetched or found; the message names the source and the remedy."""


@dataclass
class Prepared:
    """What a source's ``prepare`` returns."""

    root: Path
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    name: str
    modality: str  # "xray" or "ct"
    description: str
    license: str
    size: str
    homepage: str
    prepare: Callable[..., Prepared]
    official_split: bool = False
    synthetic: bool = False


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    SOURCES[source.name] = source
    return source


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(SOURCES))}") from None


# --- dataset names: the one owner of the ``-marker`` suffix ------------------------------------------


def marker_variant(name: str) -> str:
    """The name of ``name``'s variant whose images carry the source tag: ``synthetic`` -> ``synthetic-marker``."""
    return name if name.endswith(MARKER_SUFFIX) else name + MARKER_SUFFIX


def base_name(name: str) -> tuple[str, bool]:
    """``(base dataset, tagged)``: ``synthetic-marker`` -> ``("synthetic", True)``, ``ieee8023`` -> ``(.., False)``."""
    return name.removesuffix(MARKER_SUFFIX), name.endswith(MARKER_SUFFIX)


# --- what the sources share --------------------------------------------------------------------------


def n_images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def as_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """A tuple of names; one name alone (``views="PA"``) is a tuple of one."""
    return (names,) if isinstance(names, str) else tuple(names)


def check_label_map(mapping: dict[str, str], option: str, classes: tuple[str, ...] = LABELS) -> dict[str, str]:
    """``mapping`` as a dict, or an error naming the labels that are not among ``classes`` (the task's)."""
    wrong = sorted({label for label in mapping.values() if label not in classes})
    if wrong:
        raise ValueError(f"{option} must map to {' or '.join(classes)}, not {wrong}")
    return dict(mapping)


def manifest(**columns) -> pd.DataFrame:
    """A manifest frame: the manifest columns in order (missing ones empty), then the extra ones."""
    frame = pd.DataFrame(columns).reset_index(drop=True)
    for name in MANIFEST_COLUMNS:
        if name not in frame:
            frame[name] = ""
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    extra = [name for name in frame.columns if name not in MANIFEST_COLUMNS]
    return frame[MANIFEST_COLUMNS + extra]


def finding_notes(source: str, findings: Iterable[str], classes: tuple[str, ...] = LABELS) -> list[str]:
    """One note per finding that maps to none of ``classes`` (a task's, NORMAL and COVID by default)."""
    counts = Counter(findings)
    return [
        f"{source}: {n_images(n)} with finding {finding!r} excluded (not {'/'.join(reversed(classes))})"
        for finding, n in sorted(counts.items())
    ]


def _classes_named(labels: tuple[str, ...]) -> str:
    """``"both COVID and NORMAL"``, ``"all of NORMAL, PNEUMONIA and COVID"``."""
    return f"both {labels[0]} and {labels[1]}" if len(labels) == 2 else f"all of {', '.join(labels[:-1])} and {labels[-1]}"


def mixed_patient_note(source: str, rows: pd.DataFrame) -> list[str]:
    """A note counting the patients with images of more than one class, per combination of classes."""
    order = {label: i for i, label in enumerate((POSITIVE, NEGATIVE, PNEUMONIA))}
    labels = rows.groupby("patient_id")["label"].agg(lambda values: tuple(sorted(set(values), key=order.get)))
    combinations = labels[labels.map(len) > 1].value_counts()
    if combinations.empty:
        return []
    counts = ", ".join(f"{n} patients have {_classes_named(combination)} images"
                       for combination, n in combinations.items())
    return [
        f"{source}: {counts} (for example a follow-up study with another finding); a patient-level split keeps "
        "each of them on one side"
    ]


def mixed_sources_note(rows: pd.DataFrame) -> list[str]:
    """A note when some collection gives images of one class only: internal scores are then an upper bound."""
    labels = rows.groupby("source")["label"].agg(lambda values: tuple(sorted(set(values))))
    if rows["source"].nunique() < 2 or rows["label"].nunique() < 2 or (labels.str.len() > 1).all():
        return []
    only = "; ".join(f"{label} only: {', '.join(sorted(part.index))}"
                     for label, part in labels[labels.str.len() == 1].groupby(lambda source: labels[source][0]))
    return [
        f"the classes come from different collections ({only}): a model can tell the collection instead of "
        "the disease, so internal test scores are an upper bound (notebook 01 measures it)"
    ]


def read_metadata(path: Path) -> pd.DataFrame:
    """A metadata CSV as stripped strings, headers lowercased (ieee8023's has ' url' and 'Patientid')."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [str(name).strip().lower() for name in table.columns]
    return table.apply(lambda column: column.str.strip())


def is_image_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def header_key(name: object) -> str:
    """A column header as sheets are matched: ``File name``, ``FILE_NAME`` and ``filename`` -> ``FILENAME``."""
    return re.sub(r"[^A-Z0-9]", "", str(name).upper())


def image_key(name: str) -> str:
    """A file name as metadata sheets write it: lowercased, no image extension (``COVID-1.png`` -> ``covid-1``)."""
    path = PurePosixPath(str(name).strip().lower())
    return path.stem if path.suffix in IMAGE_SUFFIXES else path.name


def is_image(path: Path) -> bool:
    return is_image_name(path.name) and "__MACOSX" not in path.parts and path.is_file()


def image_files(folder: Path, *, skip: Iterable[str] = ()) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, leaving out sub-folders named in ``skip``."""
    skip = set(skip)
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.rglob("*")
        if is_image(path) and not skip.intersection(path.relative_to(folder).parts[:-1])
    )


def combine(parts: Iterable[str]) -> Callable[..., Prepared]:
    """A ``prepare`` that prepares each source of ``parts`` and joins their rows under one root.

    Options go per part by name: ``prepare(data_dir, ieee8023={"views": ["PA"]})``.
    """
    parts = tuple(parts)

    def prepare(data_dir: Path, *, task: str | None = None, **options: dict) -> Prepared:
        unknown = set(options) - set(parts)
        if unknown:
            raise TypeError(f"options for unknown parts {sorted(unknown)}; the parts are {list(parts)}")
        common = {} if task is None else {"task": task}
        prepared = [get_source(name).prepare(data_dir, **common, **options.get(name, {})) for name in parts]
        root = Path(os.path.commonpath([p.root.resolve() for p in prepared]))
        rows = pd.concat(
            [
                p.rows.assign(path=[(p.root.resolve() / path).relative_to(root).as_posix() for path in p.rows["path"]])
                for p in prepared
            ],
            ignore_index=True,
        )
        return Prepared(root, rows, [note for p in prepared for note in p.notes])

    return prepare
