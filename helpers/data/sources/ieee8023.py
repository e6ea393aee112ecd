"""``ieee8023`` and ``ieee8023-ct``: the COVID-19 image data collection (Cohen et al.), GitHub at a pinned commit."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

import pandas as pd

from helpers.constants import LABELS
from helpers.data.registry import (
    MODALITIES,
    Prepared,
    Source,
    as_names,
    check_label_map,
    finding_notes,
    n_images,
    register,
)
from helpers.data.sources.github import GitHubCheckout
from helpers.data.tasks import DEFAULT_TASK, get_task, label_map

IEEE8023_REPO = "ieee8023/covid-chestxray-dataset"
IEEE8023_COMMIT = "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"
IEEE8023_FINDINGS = {"COVID-19": "COVID", "Pneumonia/Viral/COVID-19": "COVID", "No Finding": "NORMAL"}
IEEE8023_VIEWS = {"xray": ("PA", "AP", "AP Supine"), "ct": ("Axial", "Coronal")}


def prepare_ieee8023(
    data_dir: Path,
    *,
    modality: str = "xray",
    views: str | Iterable[str] | None = None,
    findings: dict[str, str] | None = None,
    task: str = DEFAULT_TASK,
    commit: str = IEEE8023_COMMIT,
    **fetch,
) -> Prepared:
    """Download ``metadata.csv``, then only the images of the rows asked for.

    ``views`` defaults to PA, AP and AP Supine for X-ray and Axial and Coronal for CT;
    ``findings`` maps the metadata's findings to labels (default :data:`IEEE8023_FINDINGS`);
    ``task`` (:mod:`helpers.data.tasks`) picks the default map of another task's classes;
    ``fetch`` (``base_url``, ``retries``, ``progress``) goes to :meth:`GitHubCheckout.open`.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {sorted(MODALITIES)}, not {modality!r}")
    classes = get_task(task).classes
    if findings is not None or task == DEFAULT_TASK:
        findings = check_label_map(IEEE8023_FINDINGS if findings is None else findings, "findings", classes)
    views = IEEE8023_VIEWS[modality] if views is None else as_names(views)
    checkout = GitHubCheckout.open(data_dir, source="ieee8023", repo=IEEE8023_REPO, commit=commit, **fetch)
    metadata = checkout.metadata()
    findings = label_map("ieee8023", task, metadata["finding"]) if findings is None else findings
    table, notes = select_ieee8023(metadata, modality=modality, views=views, findings=findings, classes=classes)
    return checkout.metadata_rows(
        table, notes, paths=(table["folder"] + "/" + table["filename"]).tolist(), findings=findings,
        modality=modality, license=table.get("license", pd.Series("", index=table.index)).tolist(),
    )


def select_ieee8023(
    table: pd.DataFrame, *, modality: str, views: str | Iterable[str], findings: dict[str, str],
    classes: tuple[str, ...] = LABELS,
) -> tuple[pd.DataFrame, list[str]]:
    """The metadata rows asked for, and a note for each reason rows were left out.

    Filters in this order: modality, 2-D images only (not the ``volumes/`` folder),
    view, finding; a file listed twice is kept once.
    """
    if "folder" not in table:  # snapshots before mid-2020 keep every file in images/
        table = table.assign(folder="images")
    notes = []
    wanted = table["modality"] == MODALITIES[modality]
    if (~wanted).any():
        others = ", ".join(sorted(set(table.loc[~wanted, "modality"])))
        notes.append(
            f"ieee8023: {n_images(int((~wanted).sum()))} of other modalities ({others}) not used "
            f"(modality={modality!r})"
        )
    table = table[wanted]
    flat = table["folder"] == "images"
    if (~flat).any():
        notes.append(f"ieee8023: {int((~flat).sum())} volumes outside images/ not used (only 2-D images are)")
    table = table[flat]
    views = as_names(views)
    in_view = table["view"].isin(views)
    if (~in_view).any():
        counts = table.loc[~in_view, "view"].replace("", "none").value_counts()
        listed = ", ".join(f"{view}: {n}" for view, n in counts.items())
        notes.append(
            f"ieee8023: {n_images(int(counts.sum()))} excluded by view ({listed}); views kept: {', '.join(views)}"
        )
    table = table[in_view]
    known = table["finding"].isin(findings)
    notes += finding_notes("ieee8023", table.loc[~known, "finding"], classes)
    table = table[known]
    twice = table.duplicated(["folder", "filename"])
    if twice.any():
        notes.append(f"ieee8023: {n_images(int(twice.sum()))} listed twice in metadata.csv kept once")
    return table[~twice], notes


HOMEPAGE = "https://github.com/ieee8023/covid-chestxray-dataset"
register(Source(
    "ieee8023", "xray",
    "COVID-19 image data collection (Cohen et al.): frontal X-rays from papers and websites, "
    "with patient ids, views, sex and age",
    license="per image (see the license column): many CC BY-NC-SA or unspecified; research and teaching use",
    size="under 1,000 images in the repository; only the images asked for are downloaded", homepage=HOMEPAGE,
    prepare=prepare_ieee8023,
))
register(Source(
    "ieee8023-ct", "ct", "The CT slices (axial and coronal images) of the COVID-19 image data collection",
    license="per image (see the license column)", size="a few dozen CT images", homepage=HOMEPAGE,
    prepare=partial(prepare_ieee8023, modality="ct"),
))
