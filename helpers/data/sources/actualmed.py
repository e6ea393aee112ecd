"""``actualmed``: Actualmed COVID-19 chest X-rays (COVID-Net team), GitHub at a pinned commit."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from helpers.constants import LABELS
from helpers.data.registry import Prepared, Source, as_names, check_label_map, finding_notes, n_images, register
from helpers.data.sources.github import GitHubCheckout
from helpers.data.tasks import DEFAULT_TASK, get_task, label_map

ACTUALMED_REPO = "agchung/Actualmed-COVID-chestxray-dataset"
ACTUALMED_COMMIT = "2635e4b05d2b59628edb10a6e16a506951c84c59"
ACTUALMED_FINDINGS = {"COVID-19": "COVID", "No finding": "NORMAL"}


def prepare_actualmed(
    data_dir: Path,
    *,
    findings: dict[str, str] | None = None,
    views: str | Iterable[str] | None = None,
    task: str = DEFAULT_TASK,
    commit: str = ACTUALMED_COMMIT,
    **fetch,
) -> Prepared:
    """Download ``metadata.csv`` and the images of the COVID-19 and no-finding rows (all views by default).

    ``fetch`` (``base_url``, ``retries``, ``progress``) goes to :meth:`GitHubCheckout.open`.
    """
    classes = get_task(task).classes
    default = ACTUALMED_FINDINGS if task == DEFAULT_TASK else label_map("actualmed", task)
    findings = check_label_map(default if findings is None else findings, "findings", classes)
    checkout = GitHubCheckout.open(data_dir, source="actualmed", repo=ACTUALMED_REPO, commit=commit, **fetch)
    table, notes = select_actualmed(checkout.metadata(), findings=findings, views=views, classes=classes)
    paths = ("images/" + table["imagename"]).tolist()
    return checkout.metadata_rows(table, notes, paths=paths, findings=findings, modality="xray")


def select_actualmed(
    table: pd.DataFrame, *, findings: dict[str, str], views: str | Iterable[str] | None = None,
    classes: tuple[str, ...] = LABELS,
) -> tuple[pd.DataFrame, list[str]]:
    """The rows with a mapped finding (and a view in ``views`` when given), and notes on the others."""
    notes = []
    empty = table["finding"] == ""
    if empty.any():
        notes.append(f"actualmed: {n_images(int(empty.sum()))} without a finding (inconclusive) excluded")
    table = table[~empty]
    if views is not None:
        views = as_names(views)
        in_view = table["view"].isin(views)
        if (~in_view).any():
            notes.append(
                f"actualmed: {n_images(int((~in_view).sum()))} excluded by view; views kept: {', '.join(views)}"
            )
        table = table[in_view]
    known = table["finding"].isin(findings)
    notes += finding_notes("actualmed", table.loc[~known, "finding"], classes)
    return table[known], notes


register(Source(
    "actualmed", "xray",
    "Actualmed COVID-19 chest X-rays (COVID-Net team): COVID-19 and no-finding images from one hospital network, "
    "the natural external test set",
    license="research use (see the repository)",
    size="238 full-resolution PNG images (COVID-19, no finding and inconclusive)",
    homepage="https://github.com/agchung/Actualmed-COVID-chestxray-dataset", prepare=prepare_actualmed,
))
