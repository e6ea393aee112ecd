"""The classification tasks and, per source, which upstream findings or folders go to which class.

- ``covid-vs-normal`` (the default): NORMAL, COVID, exactly as every source labels today;
- ``covid-vs-pneumonia``: PNEUMONIA, COVID (COVID-19 against other pneumonias only);
- ``three-class``: NORMAL, PNEUMONIA, COVID (the classes of COVID-Net's COVIDx).

Classes are listed in class-index order; the last one, COVID, is the positive class.
:func:`label_map` is the one place a source's findings become a task's classes; every
finding it leaves out is counted in the dataset's notes, and :func:`mapping_notes` prints
what went where. COVID-CT has no pneumonia class (its non-COVID slices mix normal lungs
and other diseases), so only ``covid-vs-normal`` is allowed there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from helpers.constants import NEGATIVE, PNEUMONIA, POSITIVE


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]  # in class-index order
    description: str

    @property
    def positive(self) -> str:
        return POSITIVE

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2


DEFAULT_TASK = "covid-vs-normal"
TASKS = {
    task.name: task
    for task in (
        Task(DEFAULT_TASK, (NEGATIVE, POSITIVE), "COVID-19 against normal lungs"),
        Task("covid-vs-pneumonia", (PNEUMONIA, POSITIVE), "COVID-19 against other pneumonias only (no normals)"),
        Task("three-class", (NEGATIVE, PNEUMONIA, POSITIVE), "normal / other pneumonia / COVID-19 (as COVIDx)"),
    )
}

# ieee8023: findings are "Pneumonia/<kind>/<pathogen>" since mid-2020, bare pathogen names before.
IEEE8023_PNEUMONIA_KINDS = ("Pneumonia/Bacterial/", "Pneumonia/Viral/", "Pneumonia/Fungal/")
IEEE8023_OLD_PNEUMONIAS = frozenset({
    "SARS", "MERS", "Streptococcus", "Klebsiella", "Chlamydophila", "Legionella", "E.Coli", "Staphylococcus",
    "Mycoplasma", "Influenza", "Varicella", "Herpes", "Pneumocystis", "Aspergillosis", "Nocardia", "Pneumonia",
})
IEEE8023_LEFT_OUT = "ARDS, Tuberculosis, lipoid and aspiration pneumonia, combined findings (e.g. 'COVID-19, ARDS')"
# Folder names -> classes, for the three classes (other tasks keep the folders of their classes).
RADIOGRAPHY_FOLDERS = {"COVID": POSITIVE, "Normal": NEGATIVE, "Viral Pneumonia": PNEUMONIA}
KERMANY_FOLDERS = {"NORMAL": NEGATIVE, "PNEUMONIA": PNEUMONIA}
FOLDER_PNEUMONIA = {name: PNEUMONIA for name in ("PNEUMONIA", "Pneumonia", "pneumonia", "Viral Pneumonia",
                                                 "Bacterial Pneumonia")}
NOT_FOR_TASKS = {
    "covid-ct": "covid-ct has no pneumonia class: its CT_NonCOVID slices mix normal lungs and other diseases, "
                "so only task 'covid-vs-normal' can be built from it",
}
SOURCE_CAVEATS = {
    "covid19-radiography": "covid19-radiography: Lung_Opacity (non-COVID lung opacity, from RSNA) is left out in "
                           "every task: an opacity is not necessarily a pneumonia, and COVIDx does not use it",
    "chest-xray-pneumonia": "chest-xray-pneumonia: its PNEUMONIA images are of children (one to five years old, one "
                            "hospital): a shortcut source; next to adult COVID-19 images a model can learn age",
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def check_source(source: str, task: str) -> Task:
    """The task, or a clear error where ``source`` cannot give its classes (COVID-CT has no pneumonia)."""
    found = get_task(task)
    if task != DEFAULT_TASK and source in NOT_FOR_TASKS:
        raise ValueError(f"task {task!r} refused: {NOT_FOR_TASKS[source]}")
    return found


def ieee8023_class(finding: str) -> str | None:
    """The three-class label of an ieee8023 finding, or None (left out)."""
    from helpers.data.sources.ieee8023 import IEEE8023_FINDINGS

    if finding in IEEE8023_FINDINGS:
        return IEEE8023_FINDINGS[finding]
    if finding.startswith(IEEE8023_PNEUMONIA_KINDS) or finding in IEEE8023_OLD_PNEUMONIAS:
        return PNEUMONIA
    return None


def three_class_map(source: str, findings: Iterable[str] = ()) -> dict[str, str]:
    """Finding (or folder) -> class of the three-class task, for the ``findings`` present (metadata sources)."""
    if source in ("ieee8023", "ieee8023-ct"):
        classes = {finding: ieee8023_class(finding) for finding in set(findings)}
        return {finding: label for finding, label in sorted(classes.items()) if label}
    if source == "actualmed":
        from helpers.data.sources.actualmed import ACTUALMED_FINDINGS

        return dict(ACTUALMED_FINDINGS)  # Actualmed publishes COVID-19, no finding and inconclusive only
    if source == "covid19-radiography":
        return dict(RADIOGRAPHY_FOLDERS)
    if source == "chest-xray-pneumonia":
        return dict(KERMANY_FOLDERS)
    if source == "folder":
        from helpers.data.sources.folder import FOLDER_CLASSES

        return {**FOLDER_CLASSES, **FOLDER_PNEUMONIA}
    raise ValueError(f"no task mapping for source {source!r}")


def label_map(source: str, task: str, findings: Iterable[str] = ()) -> dict[str, str]:
    """Finding (or folder) -> class of ``task``: the three-class map, keeping only the task's classes."""
    classes = check_source(source, task).classes
    return {finding: label for finding, label in three_class_map(source, findings).items() if label in classes}


def mapping_notes(source: str, task: str, rows: pd.DataFrame, column: str = "finding") -> list[str]:
    """What went where, with counts: ``task 'three-class': ieee8023 'SARS' -> PNEUMONIA (11 images); ...``."""
    found = get_task(task)
    counts = rows.groupby([column, "label"]).size()
    listed = "; ".join(f"{finding!r} -> {label} ({n})" for (finding, label), n in counts.items())
    per_class = rows["label"].value_counts()
    totals = ", ".join(f"{label} {int(per_class.get(label, 0))}" for label in found.classes)
    notes = [f"task {task!r} (classes {', '.join(found.classes)}): {source} {column}s mapped: {listed}; "
             f"images per class: {totals}"]
    notes += [f"task {task!r}: {source} gives no image of class {label}" for label in found.classes
              if not per_class.get(label, 0)]
    return notes + ([SOURCE_CAVEATS[source]] if source in SOURCE_CAVEATS else [])
