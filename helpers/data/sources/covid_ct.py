"""``covid-ct``: UCSD-AI4H COVID-CT, CT slices from papers with an official split, GitHub at a pinned commit.

COVID slices take their patient from ``COVID-CT-MetaInfo.xlsx`` (``File name`` ->
``Patient ID``); a slice the sheet lacks, and every non-COVID slice (the pinned
commit publishes no patient ids for them), gets the file-name rule of
:func:`covid_ct_patient`. ``data/covid-ct.md`` documents both.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pandas as pd

from helpers.constants import SPLITS
from helpers.data.archive import unzip_images
from helpers.data.registry import Prepared, Source, header_key, image_key, is_image, manifest, n_images, register
from helpers.data.sources.github import GitHubCheckout

COVID_CT_REPO = "UCSD-AI4H/COVID-CT"
COVID_CT_COMMIT = "0c83254a43230de176489a9b4e3ac12e23b0df53"
COVID_CT_FOLDERS = {"COVID": "CT_COVID", "NORMAL": "CT_NonCOVID"}  # label -> zip name and folder
COVID_CT_SPLIT_NAMES = {"COVID": "COVID", "NORMAL": "NonCOVID"}
COVID_CT_METAINFO = "COVID-CT-MetaInfo.xlsx"  # the COVID slices' patients, at the repository's top
METAINFO_COLUMNS = ("File name", "Patient ID")
HELD_OUT_ORDER = ("test", "val", "train")  # a patient in several official splits goes to the first of these


def covid_ct_split_file(label: str, split: str) -> str:
    """``Data-split/COVID/trainCT_COVID.txt`` and the like, relative to the repository."""
    name = COVID_CT_SPLIT_NAMES[label]
    return f"Data-split/{name}/{split}CT_{name}.txt"


def covid_ct_patient(name: str, label: str) -> str:
    """The patient id derived from a COVID-CT file name, for slices the MetaInfo sheet does not name.

    COVID slices cut from one paper page share a patient: ``2020.02.10.20021584-p6-52%1.png``
    -> ``covid-ct:COVID/2020.02.10.20021584-p6`` (this merges different patients shown on one
    page and cannot join one patient shown on two). Otherwise the ``%N`` slice suffix is
    dropped: ``35%0.jpg`` -> ``covid-ct:NonCOVID/35.jpg`` (the extension stays: the
    ``.png`` and ``.jpg`` numbers come from different collections).
    """
    path = PurePosixPath(name)
    stem = re.sub(r"%\d+$", "", path.stem)
    if label == "COVID":
        page = re.match(r"(.+?-p\d+)-", stem)
        return f"covid-ct:COVID/{page.group(1) if page else stem}"
    return f"covid-ct:NonCOVID/{stem}{path.suffix.lower()}"


def read_covid_ct_patients(path: Path) -> tuple[dict[str, str], list[str]]:
    """``{file name (as :func:`image_key`): "covid-ct:<Patient ID>"}`` from the MetaInfo sheet, and notes.

    A sheet that cannot be read, or lacks a column of :data:`METAINFO_COLUMNS`, gives no
    ids and a note naming the problem: the file-name rule is then used for every slice.
    """
    fallback = "patient ids of the COVID slices fall back to the file-name rule (paper and page)"
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=str)
    except ImportError:
        return {}, [f"covid-ct: reading {path.name} needs openpyxl (pip install openpyxl); {fallback}"]
    except Exception as error:  # a damaged or unexpected file: openpyxl and zipfile raise many kinds
        return {}, [f"covid-ct: {path.name} could not be read ({type(error).__name__}: {error}); {fallback}"]
    wanted = {header_key(column): column for column in METAINFO_COLUMNS}
    for sheet in sheets.values():
        found = {header_key(column): column for column in sheet.columns}
        if set(wanted) <= set(found):
            table = sheet[[found[key] for key in wanted]].dropna()
            names, patients = (table[found[key]].str.strip() for key in wanted)
            keep = (names != "") & (patients != "")
            return dict(zip(names[keep].map(image_key), "covid-ct:" + patients[keep])), []
    first = next(iter(sheets.values()), pd.DataFrame())
    headers = {header_key(column) for column in first.columns}
    missing = " or ".join(repr(column) for key, column in wanted.items() if key not in headers)
    listed = ", ".join(map(repr, map(str, first.columns))) or "none"
    return {}, [f"covid-ct: {path.name} has no column {missing} (its columns: {listed}); {fallback}"]


def prepare_covid_ct(
    data_dir: Path, *, official_split: bool = True, commit: str = COVID_CT_COMMIT, **fetch,
) -> Prepared:
    """Download and unpack the two zips and the MetaInfo sheet; with ``official_split`` the split files decide.

    ``fetch`` (``base_url``, ``retries``, ``progress``) goes to :meth:`GitHubCheckout.open`.
    """
    checkout = GitHubCheckout.open(data_dir, source="covid-ct", repo=COVID_CT_REPO, commit=commit, **fetch)
    root = checkout.root
    for folder in COVID_CT_FOLDERS.values():
        if not (root / folder).is_dir():
            archive = f"Images-processed/{folder}.zip"
            checkout.fetch([archive])
            unzip_images(root / archive, root / folder, source="covid-ct")
    files = {
        label: sorted(p.name for p in (root / folder).iterdir() if is_image(p))
        for label, folder in COVID_CT_FOLDERS.items()
    }
    checkout.fetch([COVID_CT_METAINFO])
    patients, notes = read_covid_ct_patients(root / COVID_CT_METAINFO)
    split_of: dict[tuple[str, str], str] = {}
    if official_split:
        checkout.fetch([covid_ct_split_file(label, split) for label in COVID_CT_FOLDERS for split in SPLITS])
        split_of, split_notes = read_covid_ct_splits(root, files)
        notes += split_notes
    records = [
        (f"{COVID_CT_FOLDERS[label]}/{name}", label, _patient(name, label, patients), split_of.get((label, name), ""))
        for label, names in files.items()
        for name in names
        if not official_split or (label, name) in split_of
    ]
    path, label, patient_id, split = zip(*records) if records else ((), (), (), ())
    rows = manifest(path=path, label=label, patient_id=patient_id, source="covid-ct", modality="ct", split=split)
    notes += _patient_notes(rows, patients)
    rows["split"], moved = _one_split_per_patient(rows)
    if moved:
        notes.append(
            f"covid-ct: {moved} patients appear in more than one official split file; each was moved whole "
            f"into the most held-out of its splits ({', '.join(HELD_OUT_ORDER)}), so no patient is in two splits"
        )
    return Prepared(root, rows, notes)


def _patient(name: str, label: str, patients: dict[str, str]) -> str:
    return (patients.get(image_key(name)) if label == "COVID" else None) or covid_ct_patient(name, label)


def _patient_notes(rows: pd.DataFrame, patients: dict[str, str]) -> list[str]:
    covid = rows[rows["label"] == "COVID"]
    from_sheet = covid["patient_id"].isin(set(patients.values()))
    notes = [
        f"covid-ct: COVID slices: {n_images(int(from_sheet.sum()))} take their patient from {COVID_CT_METAINFO} "
        f"({covid.loc[from_sheet, 'patient_id'].nunique()} patients)"
    ]
    if (~from_sheet).any():
        notes.append(
            f"covid-ct: {n_images(int((~from_sheet).sum()))} of COVID slices not in {COVID_CT_METAINFO} are "
            "grouped by the file-name rule (paper and page)"
        )
    notes.append("covid-ct: non-COVID slices have no published patient ids: grouped by the file-name rule")
    return notes


def _one_split_per_patient(rows: pd.DataFrame) -> tuple[pd.Series, int]:
    """The split with every patient moved whole into the most held-out split it appears in."""
    split = rows["split"].copy()
    listed = split != ""
    rank = split[listed].map({name: i for i, name in enumerate(HELD_OUT_ORDER)})
    first = rank.groupby(rows.loc[listed, "patient_id"]).transform("min")
    spread = rows.loc[listed].groupby("patient_id")["split"].nunique()
    split[listed] = first.map(dict(enumerate(HELD_OUT_ORDER)))
    return split, int((spread > 1).sum())


def read_covid_ct_splits(root: Path, files: dict[str, list[str]]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """``{(label, file name): split}`` from the official split files, and notes on what does not match."""
    split_of: dict[tuple[str, str], str] = {}
    conflicts = 0
    for label in COVID_CT_FOLDERS:
        for split in SPLITS:
            text = (root / covid_ct_split_file(label, split)).read_text(encoding="utf-8-sig")
            for line in text.splitlines():
                name = PurePosixPath(line.strip().replace("\\", "/")).name
                if not name:
                    continue
                if split_of.setdefault((label, name), split) != split:
                    conflicts += 1
    notes = []
    listed = set(split_of)
    present = {(label, name) for label, names in files.items() for name in names}
    if present - listed:
        notes.append(
            f"covid-ct: {n_images(len(present - listed))} not listed in any official split file excluded "
            "(official_split=True)"
        )
    if listed - present:
        notes.append(f"covid-ct: {n_images(len(listed - present))} named in the split files but missing from the zips")
    if conflicts:
        notes.append(
            f"covid-ct: {n_images(conflicts)} listed in two split files kept in the first (train, val, test order)"
        )
    return split_of, notes


register(Source(
    "covid-ct", "ct", "UCSD-AI4H COVID-CT: 349 COVID-19 and 397 non-COVID CT slices with an official split",
    license="research use (images from medRxiv/bioRxiv papers and public collections)",
    size="746 images (349 COVID, 397 non-COVID) in two zips", homepage="https://github.com/UCSD-AI4H/COVID-CT",
    prepare=prepare_covid_ct, official_split=True,
))
