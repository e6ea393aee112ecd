"""The dataset registry: where each dataset comes from and how its files become manifest rows.

Each :class:`Source` is declarative (name, modality, license, size, homepage)
plus a ``prepare(data_dir, **options)`` function that fetches what is missing
and returns a :class:`Prepared`: the dataset root and one row per image with the
manifest columns (``split`` only where the source publishes an official one).

Real sources registered here (``data/<name>.md`` documents each one):

- ``ieee8023`` / ``ieee8023-ct``: COVID-19 image data collection (GitHub, pinned commit);
- ``actualmed``: Actualmed COVID-19 chest X-rays (GitHub, pinned commit);
- ``covid-ct``: UCSD-AI4H COVID-CT with its official split (GitHub, pinned commit);
- ``covid19-radiography`` and ``chest-xray-pneumonia``: Kaggle, through ``kagglehub``;
- ``folder``: any ``CLASS/image`` tree on disk;
- ``xray-github``: ``ieee8023`` and ``actualmed`` together.

Rules every source follows: ``label`` is exactly ``COVID`` or ``NORMAL`` through
an explicit map; every row dropped for a reason is counted in ``Prepared.notes``;
``patient_id`` is prefixed with the source name; a network failure raises
:class:`SourceUnavailable` naming the source and the remedy; a second call with
all files present does no network I/O.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pandas as pd

from helpers.constants import LABELS, SPLITS
from helpers.data.download import DownloadError, fetch_files
from helpers.files import atomic_write

MANIFEST_COLUMNS = ["path", "label", "patient_id", "source", "modality", "view", "sex", "age", "split"]


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


# --- shared helpers ----------------------------------------------------------------------------

GITHUB_RAW = "https://raw.githubusercontent.com"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".dcm"})
MODALITIES = {"xray": "X-ray", "ct": "CT"}  # the course's name -> the name in ieee8023's metadata


def github_raw(repo: str, commit: str) -> str:
    """The address of ``repo``'s raw files at ``commit``."""
    return f"{GITHUB_RAW}/{repo}/{commit}"


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def _names(names: str | Iterable[str]) -> tuple[str, ...]:
    """A tuple of names; one name alone (``views="PA"``) is a tuple of one."""
    return (names,) if isinstance(names, str) else tuple(names)


def _check_label_map(mapping: dict[str, str], option: str) -> dict[str, str]:
    wrong = sorted({label for label in mapping.values() if label not in LABELS})
    if wrong:
        raise ValueError(f"{option} must map to {' or '.join(LABELS)}, not {wrong}")
    return dict(mapping)


def _manifest(**columns) -> pd.DataFrame:
    """A manifest frame: the manifest columns in order (missing ones empty), then the extra ones."""
    frame = pd.DataFrame(columns).reset_index(drop=True)
    for name in MANIFEST_COLUMNS:
        if name not in frame:
            frame[name] = ""
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    extra = [name for name in frame.columns if name not in MANIFEST_COLUMNS]
    return frame[MANIFEST_COLUMNS + extra]


def _finding_notes(source: str, findings: Iterable[str]) -> list[str]:
    """One note per finding that is neither COVID nor NORMAL."""
    counts = Counter(findings)
    return [
        f"{source}: {_images(n)} with finding {finding!r} excluded (not COVID/NORMAL)"
        for finding, n in sorted(counts.items())
    ]


def _mixed_patient_note(source: str, rows: pd.DataFrame) -> list[str]:
    labels = rows.groupby("patient_id")["label"].nunique()
    mixed = int((labels > 1).sum())
    if not mixed:
        return []
    return [
        (
            f"{source}: {mixed} patients have both COVID and NORMAL images (for example a negative "
            "follow-up); a patient-level split keeps each of them on one side"
        )
    ]


def _read_metadata(path: Path) -> pd.DataFrame:
    """A metadata CSV as stripped strings, headers lowercased (ieee8023's has ' url' and 'Patientid')."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [str(name).strip().lower() for name in table.columns]
    return table.apply(lambda column: column.str.strip())


def _is_image_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _is_image(path: Path) -> bool:
    return _is_image_name(path.name) and "__MACOSX" not in path.parts and path.is_file()


def _image_files(folder: Path, *, skip: Iterable[str] = ()) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, leaving out sub-folders named in ``skip``."""
    skip = set(skip)
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.rglob("*")
        if _is_image(path) and not skip.intersection(path.relative_to(folder).parts[:-1])
    )


def _fetch_github(
    jobs: list[tuple[str, Path]], *, source: str, repo: str, commit: str, root: Path, retries: int, progress: bool
) -> None:
    """Fetch the ``(url, dest)`` pairs of a GitHub source; a failure becomes :class:`SourceUnavailable`."""
    try:
        fetch_files(jobs, retries=retries, progress=progress, desc=source)
    except DownloadError as error:
        raise SourceUnavailable(
            f"{source} is unavailable: {error} Remedy: check your connection, or download "
            f"https://github.com/{repo} at commit {commit} manually into {root}, or use DATASET='synthetic'."
        ) from error


# --- ieee8023: COVID-19 image data collection ------------------------------------------------------

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
    commit: str = IEEE8023_COMMIT,
    base_url: str | None = None,
    retries: int = 4,
    progress: bool = True,
) -> Prepared:
    """Download ``metadata.csv``, then only the images of the rows asked for.

    ``views`` defaults to PA, AP and AP Supine for X-ray and Axial and Coronal for CT;
    ``findings`` maps the metadata's findings to labels (default :data:`IEEE8023_FINDINGS`).
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {sorted(MODALITIES)}, not {modality!r}")
    findings = _check_label_map(IEEE8023_FINDINGS if findings is None else findings, "findings")
    views = IEEE8023_VIEWS[modality] if views is None else _names(views)
    root = Path(data_dir) / "ieee8023" / commit[:7]
    base_url = (base_url or github_raw(IEEE8023_REPO, commit)).rstrip("/")
    fetch = partial(
        _fetch_github,
        source="ieee8023",
        repo=IEEE8023_REPO,
        commit=commit,
        root=root,
        retries=retries,
        progress=progress,
    )
    fetch([(f"{base_url}/metadata.csv", root / "metadata.csv")])
    table, notes = select_ieee8023(
        _read_metadata(root / "metadata.csv"), modality=modality, views=views, findings=findings
    )
    paths = (table["folder"] + "/" + table["filename"]).tolist()
    fetch([(f"{base_url}/{quote(path)}", root / path) for path in paths])
    rows = _manifest(
        path=paths,
        label=table["finding"].map(findings).tolist(),
        patient_id=("ieee8023:" + table["patientid"]).tolist(),
        source="ieee8023",
        modality=modality,
        view=table["view"].tolist(),
        sex=table["sex"].where(table["sex"].isin(["M", "F"]), "").tolist(),
        age=table["age"].tolist(),
        finding=table["finding"].tolist(),
        license=table.get("license", pd.Series("", index=table.index)).tolist(),
    )
    return Prepared(root, rows, notes + _mixed_patient_note("ieee8023", rows))


def select_ieee8023(
    table: pd.DataFrame, *, modality: str, views: str | Iterable[str], findings: dict[str, str]
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
            f"ieee8023: {_images(int((~wanted).sum()))} of other modalities ({others}) not used (modality={modality!r})"
        )
    table = table[wanted]
    flat = table["folder"] == "images"
    if (~flat).any():
        notes.append(f"ieee8023: {int((~flat).sum())} volumes outside images/ not used (only 2-D images are)")
    table = table[flat]
    views = _names(views)
    in_view = table["view"].isin(views)
    if (~in_view).any():
        counts = table.loc[~in_view, "view"].replace("", "none").value_counts()
        listed = ", ".join(f"{view}: {n}" for view, n in counts.items())
        notes.append(
            f"ieee8023: {_images(int(counts.sum()))} excluded by view ({listed}); views kept: {', '.join(views)}"
        )
    table = table[in_view]
    known = table["finding"].isin(findings)
    notes += _finding_notes("ieee8023", table.loc[~known, "finding"])
    table = table[known]
    twice = table.duplicated(["folder", "filename"])
    if twice.any():
        notes.append(f"ieee8023: {_images(int(twice.sum()))} listed twice in metadata.csv kept once")
    return table[~twice], notes


# --- actualmed: Actualmed COVID-19 chest X-rays ------------------------------------------------------

ACTUALMED_REPO = "agchung/Actualmed-COVID-chestxray-dataset"
ACTUALMED_COMMIT = "2635e4b05d2b59628edb10a6e16a506951c84c59"
ACTUALMED_FINDINGS = {"COVID-19": "COVID", "No finding": "NORMAL"}


def prepare_actualmed(
    data_dir: Path,
    *,
    findings: dict[str, str] | None = None,
    views: str | Iterable[str] | None = None,
    commit: str = ACTUALMED_COMMIT,
    base_url: str | None = None,
    retries: int = 4,
    progress: bool = True,
) -> Prepared:
    """Download ``metadata.csv`` and the images of the COVID-19 and no-finding rows (all views by default)."""
    findings = _check_label_map(ACTUALMED_FINDINGS if findings is None else findings, "findings")
    root = Path(data_dir) / "actualmed" / commit[:7]
    base_url = (base_url or github_raw(ACTUALMED_REPO, commit)).rstrip("/")
    fetch = partial(
        _fetch_github,
        source="actualmed",
        repo=ACTUALMED_REPO,
        commit=commit,
        root=root,
        retries=retries,
        progress=progress,
    )
    fetch([(f"{base_url}/metadata.csv", root / "metadata.csv")])
    table, notes = select_actualmed(_read_metadata(root / "metadata.csv"), findings=findings, views=views)
    paths = ("images/" + table["imagename"]).tolist()
    fetch([(f"{base_url}/{quote(path)}", root / path) for path in paths])
    rows = _manifest(
        path=paths,
        label=table["finding"].map(findings).tolist(),
        patient_id=("actualmed:" + table["patientid"]).tolist(),
        source="actualmed",
        modality="xray",
        view=table["view"].tolist(),
        sex=table["sex"].where(table["sex"].isin(["M", "F"]), "").tolist(),
        age=table["age"].tolist(),
        finding=table["finding"].tolist(),
    )
    return Prepared(root, rows, notes + _mixed_patient_note("actualmed", rows))


def select_actualmed(
    table: pd.DataFrame, *, findings: dict[str, str], views: str | Iterable[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The rows with a mapped finding (and a view in ``views`` when given), and notes on the others."""
    notes = []
    empty = table["finding"] == ""
    if empty.any():
        notes.append(f"actualmed: {_images(int(empty.sum()))} without a finding (inconclusive) excluded")
    table = table[~empty]
    if views is not None:
        views = _names(views)
        in_view = table["view"].isin(views)
        if (~in_view).any():
            notes.append(
                f"actualmed: {_images(int((~in_view).sum()))} excluded by view; views kept: {', '.join(views)}"
            )
        table = table[in_view]
    known = table["finding"].isin(findings)
    notes += _finding_notes("actualmed", table.loc[~known, "finding"])
    return table[known], notes


# --- covid-ct: UCSD-AI4H COVID-CT --------------------------------------------------------------------

COVID_CT_REPO = "UCSD-AI4H/COVID-CT"
COVID_CT_COMMIT = "0c83254a43230de176489a9b4e3ac12e23b0df53"
COVID_CT_FOLDERS = {"COVID": "CT_COVID", "NORMAL": "CT_NonCOVID"}  # label -> zip name and folder
COVID_CT_SPLIT_NAMES = {"COVID": "COVID", "NORMAL": "NonCOVID"}


def covid_ct_split_file(label: str, split: str) -> str:
    """``Data-split/COVID/trainCT_COVID.txt`` and the like, relative to the repository."""
    name = COVID_CT_SPLIT_NAMES[label]
    return f"Data-split/{name}/{split}CT_{name}.txt"


def covid_ct_patient(name: str, label: str) -> str:
    """The patient id derived from a COVID-CT file name (the rule is in ``data/covid-ct.md``).

    COVID slices cut from one paper page share a patient: ``2020.02.10.20021584-p6-52%1.png``
    -> ``covid-ct:COVID/2020.02.10.20021584-p6``. Otherwise the ``%N`` slice suffix is
    dropped: ``35%0.jpg`` -> ``covid-ct:NonCOVID/35.jpg`` (the extension stays: the
    ``.png`` and ``.jpg`` numbers come from different collections).
    """
    path = PurePosixPath(name)
    stem = re.sub(r"%\d+$", "", path.stem)
    if label == "COVID":
        page = re.match(r"(.+?-p\d+)-", stem)
        return f"covid-ct:COVID/{page.group(1) if page else stem}"
    return f"covid-ct:NonCOVID/{stem}{path.suffix.lower()}"


def prepare_covid_ct(
    data_dir: Path,
    *,
    official_split: bool = True,
    commit: str = COVID_CT_COMMIT,
    base_url: str | None = None,
    retries: int = 4,
    progress: bool = True,
) -> Prepared:
    """Download and unpack the two zips; with ``official_split`` the split files decide ``split``."""
    root = Path(data_dir) / "covid-ct" / commit[:7]
    base_url = (base_url or github_raw(COVID_CT_REPO, commit)).rstrip("/")
    fetch = partial(
        _fetch_github,
        source="covid-ct",
        repo=COVID_CT_REPO,
        commit=commit,
        root=root,
        retries=retries,
        progress=progress,
    )
    for folder in COVID_CT_FOLDERS.values():
        if not (root / folder).is_dir():
            archive = f"Images-processed/{folder}.zip"
            fetch([(f"{base_url}/{archive}", root / archive)])
            _unzip_images(root / archive, root / folder, source="covid-ct")
    files = {
        label: sorted(p.name for p in (root / folder).iterdir() if _is_image(p))
        for label, folder in COVID_CT_FOLDERS.items()
    }
    notes = []
    split_of: dict[tuple[str, str], str] = {}
    if official_split:
        split_files = [covid_ct_split_file(label, split) for label in COVID_CT_FOLDERS for split in SPLITS]
        fetch([(f"{base_url}/{quote(name)}", root / name) for name in split_files])
        split_of, notes = read_covid_ct_splits(root, files)
    records = [
        (f"{COVID_CT_FOLDERS[label]}/{name}", label, covid_ct_patient(name, label), split_of.get((label, name), ""))
        for label, names in files.items()
        for name in names
        if not official_split or (label, name) in split_of
    ]
    path, label, patient_id, split = zip(*records) if records else ((), (), (), ())
    rows = _manifest(path=path, label=label, patient_id=patient_id, source="covid-ct", modality="ct", split=split)
    notes += _split_overlap_note(rows)
    notes.append(
        "covid-ct: patient ids are derived from file names (paper and page for COVID slices), "
        "so they group slices only as well as the names allow"
    )
    return Prepared(root, rows, notes)


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
            f"covid-ct: {_images(len(present - listed))} not listed in any official split file excluded "
            "(official_split=True)"
        )
    if listed - present:
        notes.append(f"covid-ct: {_images(len(listed - present))} named in the split files but missing from the zips")
    if conflicts:
        notes.append(
            f"covid-ct: {_images(conflicts)} listed in two split files kept in the first (train, val, test order)"
        )
    return split_of, notes


def _split_overlap_note(rows: pd.DataFrame) -> list[str]:
    splits = rows[rows["split"] != ""].groupby("patient_id")["split"].nunique()
    spread = int((splits > 1).sum())
    if not spread:
        return []
    return [
        (
            f"covid-ct: {spread} patient ids (derived from file names) appear in more than one official "
            "split; the official split files decide"
        )
    ]


def _unzip_images(archive: Path, target: Path, *, source: str) -> None:
    """Extract the images of ``archive`` flat into ``target``; a half extraction is never taken as done."""
    staging = target.with_name(target.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = re.split(r"[\\/]", member.filename)[-1]
                if member.is_dir() or "__MACOSX" in member.filename or not _is_image_name(name):
                    continue
                with bundle.open(member) as packed, open(staging / name, "wb") as unpacked:
                    shutil.copyfileobj(packed, unpacked)
    except zipfile.BadZipFile as error:
        shutil.rmtree(staging)
        archive.unlink()
        raise SourceUnavailable(
            f"{source}: {archive} is not a valid zip file ({error}); it was deleted: run again to download it "
            "anew, and if that repeats, download it by hand from the repository into the same place."
        ) from error
    os.replace(staging, target)


# --- Kaggle: COVID-19 Radiography Database, chest-xray-pneumonia ----------------------------------

RADIOGRAPHY_HANDLE = "tawsifurrahman/covid19-radiography-database/versions/5"
PNEUMONIA_HANDLE = "paultimothymooney/chest-xray-pneumonia/versions/2"
# How Normal.metadata.xlsx names the pediatric source (Kermany et al., on Kaggle and Mendeley).
PEDIATRIC_MARKERS = ("chest-xray-pneumonia", "kermany", "rscbjbr9sj")


def kaggle_page(handle: str) -> str:
    """The dataset's page on kaggle.com."""
    owner, name = handle.split("/")[:2]
    return f"https://www.kaggle.com/datasets/{owner}/{name}"


def _kaggle_dataset(source: str, handle: str, *, data_dir: Path, path: Path | str | None) -> Path:
    """``path`` when given, else the folder ``kagglehub`` downloads into (once) under ``data_dir``."""
    manual = f"download {kaggle_page(handle)} manually, unzip it and pass its folder as path=..."
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise SourceUnavailable(
                f"{source}: {folder} is not a folder. Remedy: {manual}, or use DATASET='synthetic'."
            )
        return folder
    try:
        import kagglehub
    except ImportError as error:
        raise SourceUnavailable(
            f"{source}: the kagglehub package is not installed. Remedy: pip install kagglehub, or {manual}, "
            "or use DATASET='synthetic'."
        ) from error
    version = handle.rsplit("/", 1)[-1] if "/versions/" in handle else "latest"
    output = Path(data_dir) / source / f"v{version}"
    try:
        return Path(kagglehub.dataset_download(handle, output_dir=str(output)))
    except Exception as error:  # kagglehub raises many kinds: HTTP, connection, its own
        raise SourceUnavailable(
            f"{source}: kagglehub could not download {handle} ({type(error).__name__}: {error}). "
            f"Remedy: check your connection, or {manual}, or use DATASET='synthetic'."
        ) from error


def _find_folder(root: Path, names: set[str], *, depth: int = 4) -> Path | None:
    """The shallowest folder under ``root`` (``root`` included) with sub-folders named ``names``."""
    level = [Path(root)]
    for _ in range(depth + 1):
        deeper = []
        for folder in level:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
            if names <= {child.name for child in children}:
                return folder
            deeper += children
        level = deeper
    return None


def read_pediatric_normals(metadata: Path) -> set[str]:
    """Lower-cased file stems of the normals that ``Normal.metadata.xlsx`` traces to the pediatric set."""
    if not metadata.is_file():
        raise SourceUnavailable(
            f"covid19-radiography: {metadata} is missing; it tells which normals are pediatric. Remedy: "
            "download the dataset again, or pass include_pediatric=True to keep them all (a known shortcut)."
        )
    try:
        table = pd.read_excel(metadata)
    except ImportError as error:
        raise SourceUnavailable(
            f"covid19-radiography: reading {metadata.name} needs the openpyxl package. Remedy: pip install "
            "openpyxl, or pass include_pediatric=True to keep the pediatric normals (a known shortcut)."
        ) from error
    table.columns = [str(name).strip().upper() for name in table.columns]
    urls = table["URL"].astype(str).str.lower()
    pediatric = urls.str.contains("|".join(map(re.escape, PEDIATRIC_MARKERS)))
    return set(table.loc[pediatric, "FILE NAME"].astype(str).str.strip().str.lower())


def prepare_covid19_radiography(
    data_dir: Path,
    *,
    include_pediatric: bool = False,
    path: Path | str | None = None,
    handle: str = RADIOGRAPHY_HANDLE,
) -> Prepared:
    """COVID vs Normal from the COVID-19 Radiography Database (Kaggle), adult normals only by default."""
    source = "covid19-radiography"
    root = _kaggle_dataset(source, handle, data_dir=data_dir, path=path)
    base = _find_folder(root, {"COVID", "Normal"})
    if base is None:
        raise SourceUnavailable(
            f"{source}: no COVID/ and Normal/ folders under {root} (expected the Kaggle layout "
            "COVID-19_Radiography_Dataset/COVID/images/...). Remedy: delete that folder and run again, "
            f"or pass path=... to a complete copy of {kaggle_page(handle)}, or use DATASET='synthetic'."
        )
    covid = _image_files(base / "COVID", skip={"masks"})
    normal = _image_files(base / "Normal", skip={"masks"})
    others = {
        folder.name: len(_image_files(folder, skip={"masks"}))
        for folder in sorted(base.iterdir())
        if folder.is_dir() and folder.name not in {"COVID", "Normal"}
    }
    notes = [f"{source}: {_images(n)} in {name!r} excluded (not COVID/NORMAL)" for name, n in others.items() if n]
    if include_pediatric:
        notes.append(
            f"{source}: pediatric normals from the chest-xray-pneumonia set are included "
            "(include_pediatric=True): children vs adults is a shortcut a model can learn"
        )
    else:
        pediatric = read_pediatric_normals(base / "Normal.metadata.xlsx")
        adult = [file for file in normal if file.stem.lower() not in pediatric]
        notes.append(
            f"{source}: {_images(len(normal) - len(adult))} of pediatric normals (chest-xray-pneumonia, "
            "Kermany et al.) excluded (include_pediatric=False): children vs adults is a shortcut"
        )
        normal = adult
    notes.append(
        f"{source}: patient ids are not published: one id per image, so one patient's images may fall "
        "into different splits"
    )
    files = covid + normal
    rows = _manifest(
        path=[file.relative_to(root).as_posix() for file in files],
        label=["COVID"] * len(covid) + ["NORMAL"] * len(normal),
        patient_id=[f"{source}:{file.stem}" for file in files],
        source=source,
        modality="xray",
    )
    return Prepared(root, rows, notes)


def kermany_patient(name: str) -> str:
    """The patient in a Kermany file name: ``IM-0115-0001.jpeg`` -> ``IM-0115``.

    ``person1_bacteria_1.jpeg`` -> ``person1``; names that match neither pattern are their own patient.
    """
    stem = PurePosixPath(name).stem
    match = re.match(r"(.*?IM-\d+)-\d", stem) or re.match(r"(.*?person\d+)_", stem)
    return match.group(1) if match else stem


def prepare_chest_xray_pneumonia(
    data_dir: Path,
    *,
    path: Path | str | None = None,
    handle: str = PNEUMONIA_HANDLE,
) -> Prepared:
    """The pediatric NORMAL images of Kermany et al. (Kaggle), for the age-shortcut lesson."""
    source = "chest-xray-pneumonia"
    root = _kaggle_dataset(source, handle, data_dir=data_dir, path=path)
    base = _find_folder(root, {"train", "test"})
    if base is None:
        raise SourceUnavailable(
            f"{source}: no train/ and test/ folders under {root} (expected chest_xray/train/NORMAL/...). "
            f"Remedy: delete that folder and run again, or pass path=... to a complete copy of "
            f"{kaggle_page(handle)}, or use DATASET='synthetic'."
        )
    normal = [file for split in SPLITS for file in _image_files(base / split / "NORMAL")]
    pneumonia = sum(len(_image_files(base / split / "PNEUMONIA")) for split in SPLITS)
    notes = [
        (
            f"{source}: pediatric patients (one to five years old, one hospital in Guangzhou): use them to "
            "show the age shortcut, never as the negatives of a COVID model"
        ),
        (
            f"{source}: the Kaggle train/val/test folders are not kept as the split (its val folder holds "
            "16 images); patient ids come from the file names (IM-0115-0001 -> IM-0115)"
        ),
    ]
    if pneumonia:
        notes.insert(0, f"{source}: {_images(pneumonia)} in 'PNEUMONIA' excluded (not COVID/NORMAL)")
    rows = _manifest(
        path=[file.relative_to(root).as_posix() for file in normal],
        label="NORMAL",
        patient_id=[f"{source}:{kermany_patient(file.name)}" for file in normal],
        source=source,
        modality="xray",
    )
    return Prepared(root, rows, notes)


# --- folder: any CLASS/image tree ---------------------------------------------------------------------

FOLDER_CLASSES = {
    "COVID": "COVID",
    "COVID-19": "COVID",
    "covid": "COVID",
    "NORMAL": "NORMAL",
    "Normal": "NORMAL",
    "normal": "NORMAL",
    "No Finding": "NORMAL",
}
TEST_FOLDERS = {"test", "testing"}


def prepare_folder(
    data_dir: Path,
    *,
    path: Path | str,
    class_map: dict[str, str] | None = None,
    modality: str = "xray",
) -> Prepared:
    """Rows for the images of a ``CLASS/image`` tree (also ``train|test/CLASS/image``), read in place.

    An image's class is its nearest folder named in ``class_map`` (default
    :data:`FOLDER_CLASSES`); other images are dropped with a note. An image under a
    ``test``/``testing`` folder keeps ``split='test'``; the rest is split by the course.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SourceUnavailable(
            f"folder: {root} is not a folder. Remedy: pass path= a folder of CLASS/image files "
            "(for example train/COVID-19/x.png), or use DATASET='synthetic'."
        )
    class_map = _check_label_map(FOLDER_CLASSES if class_map is None else class_map, "class_map")
    records, unmapped = [], Counter()
    for file in _image_files(root):
        parts = file.relative_to(root).parts[:-1]
        label = next((class_map[part] for part in reversed(parts) if part in class_map), None)
        if label is None:
            unmapped[parts[-1] if parts else "."] += 1
            continue
        split = "test" if any(part.lower() in TEST_FOLDERS for part in parts) else ""
        records.append((file.relative_to(root).as_posix(), label, split))
    if not records:
        raise SourceUnavailable(
            f"folder: no image under {root} is in a class folder ({', '.join(class_map)}). "
            "Remedy: pass class_map= to name your class folders, or use DATASET='synthetic'."
        )
    notes = [
        f"folder: {_images(n)} in folder {name!r} dropped (not mapped to COVID/NORMAL; "
        f"pass class_map={{{name!r}: 'COVID' or 'NORMAL'}} to keep them)"
        for name, n in sorted(unmapped.items())
    ]
    paths, labels, splits = zip(*records)
    if "test" in splits:
        notes.append(
            f"folder: {_images(splits.count('test'))} under a test folder keep split='test'; "
            "the rest is split by the course"
        )
    notes.append("folder: patient ids are unknown: one id per file")
    rows = _manifest(
        path=paths,
        label=labels,
        patient_id=[f"folder:{p}" for p in paths],
        source="folder",
        modality=modality,
        split=splits,
    )
    return Prepared(root, rows, notes)


# --- recipes: several sources as one -------------------------------------------------------------

RECIPES = {"xray-github": ("ieee8023", "actualmed")}


def combine(parts: Iterable[str]) -> Callable[..., Prepared]:
    """A ``prepare`` that prepares each source of ``parts`` and joins their rows under one root.

    Options go per part by name: ``prepare(data_dir, ieee8023={"views": ["PA"]})``.
    """
    parts = tuple(parts)

    def prepare(data_dir: Path, **options: dict) -> Prepared:
        unknown = set(options) - set(parts)
        if unknown:
            raise TypeError(f"options for unknown parts {sorted(unknown)}; the parts are {list(parts)}")
        prepared = [get_source(name).prepare(data_dir, **options.get(name, {})) for name in parts]
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


# --- the registry entries --------------------------------------------------------------------------

register(
    Source(
        name="ieee8023",
        modality="xray",
        description="COVID-19 image data collection (Cohen et al.): frontal X-rays from papers and websites, "
        "with patient ids, views, sex and age",
        license="per image (see the license column): many CC BY-NC-SA or unspecified; research and teaching use",
        size="under 1,000 images in the repository; only the images asked for are downloaded",
        homepage="https://github.com/ieee8023/covid-chestxray-dataset",
        prepare=prepare_ieee8023,
    )
)
register(
    Source(
        name="ieee8023-ct",
        modality="ct",
        description="The CT slices (axial and coronal images) of the COVID-19 image data collection",
        license="per image (see the license column)",
        size="a few dozen CT images",
        homepage="https://github.com/ieee8023/covid-chestxray-dataset",
        prepare=partial(prepare_ieee8023, modality="ct"),
    )
)
register(
    Source(
        name="actualmed",
        modality="xray",
        description="Actualmed COVID-19 chest X-rays (COVID-Net team): COVID-19 and no-finding images from "
        "one hospital network, the natural external test set",
        license="research use (see the repository)",
        size="238 full-resolution PNG images (COVID-19, no finding and inconclusive)",
        homepage="https://github.com/agchung/Actualmed-COVID-chestxray-dataset",
        prepare=prepare_actualmed,
    )
)
register(
    Source(
        name="covid-ct",
        modality="ct",
        description="UCSD-AI4H COVID-CT: 349 COVID-19 and 397 non-COVID CT slices with an official split",
        license="research use (images from medRxiv/bioRxiv papers and public collections)",
        size="746 images (349 COVID, 397 non-COVID) in two zips",
        homepage="https://github.com/UCSD-AI4H/COVID-CT",
        prepare=prepare_covid_ct,
        official_split=True,
    )
)
register(
    Source(
        name="covid19-radiography",
        modality="xray",
        description="COVID-19 Radiography Database (Kaggle): COVID vs adult Normal; pediatric normals left out",
        license="see the Kaggle page (mixed sources; research use)",
        size="3,616 COVID and 10,192 Normal images (1,341 of them pediatric); the download is about 800 MB",
        homepage=kaggle_page(RADIOGRAPHY_HANDLE),
        prepare=prepare_covid19_radiography,
    )
)
register(
    Source(
        name="chest-xray-pneumonia",
        modality="xray",
        description="Pediatric chest X-rays (Kermany et al.), NORMAL only: for the age-shortcut lesson",
        license="CC BY 4.0",
        size="1,583 NORMAL and 4,273 PNEUMONIA images; the download is about 1.2 GB",
        homepage=kaggle_page(PNEUMONIA_HANDLE),
        prepare=prepare_chest_xray_pneumonia,
    )
)
register(
    Source(
        name="folder",
        modality="xray",
        description="Your own CLASS/image folder tree (pass path=...)",
        license="yours",
        size="yours",
        homepage="",
        prepare=prepare_folder,
    )
)
for _name, _parts in RECIPES.items():
    register(
        Source(
            name=_name,
            modality="xray",
            description=f"{' + '.join(_parts)} together (two sources: mind the source shortcut)",
            license="per part",
            size="the sum of its parts",
            homepage="",
            prepare=combine(_parts),
        )
    )


def prepare_synthetic(
    data_dir: Path, *, modality: str = "xray", n_patients: int = 160, size: int = 192, marker: bool = False,
    seed: int = 0, **options,
) -> Prepared:
    """Generate (once) the synthetic dataset for these options; a finished folder is reused."""
    from helpers.data import synthetic

    settings = dict(modality=modality, n_patients=n_patients, size=size, marker=marker, seed=seed, **options)
    root = data_dir / "synthetic" / f"{modality}-{synthetic.options_key(**settings)}"
    manifest = root / "rows.csv"
    if not manifest.exists():
        rows = synthetic.generate(root, **settings)
        with atomic_write(manifest, "w", newline="") as file:
            rows.to_csv(file, index=False)
    rows = pd.read_csv(manifest, dtype={"patient_id": str})
    note = "SYNTHETIC data: generated cartoons of chest images, not real patients"
    if marker:
        note += f"; {int(rows['marker'].sum())} images carry the '{synthetic.MARKER_TEXT}' source marker"
    return Prepared(root, rows, [note])


for _name, _modality in (("synthetic", "xray"), ("synthetic-ct", "ct")):
    register(
        Source(
            name=_name,
            modality=_modality,
            description=f"Synthetic {MODALITIES[_modality]} images generated offline (helpers.data.synthetic)",
            license="public domain (generated)",
            size="generated on the fly; a few MB",
            homepage="",
            prepare=partial(prepare_synthetic, modality=_modality),
            synthetic=True,
        )
    )
