"""Kaggle sources through ``kagglehub``: the COVID-19 Radiography Database and chest-xray-pneumonia.

:func:`kaggle_dataset` is the adapter: a folder given as ``path=`` is read in
place; otherwise ``kagglehub`` downloads the pinned version once into
``<data_dir>/<source>/v<N>`` and the course writes ``v<N>.complete`` beside it.
A folder without that marker is an interrupted download: ``kagglehub`` is asked
again, and where it refuses the half folder (``FileExistsError``) it is told to
replace it. Inside Colab and Kaggle notebooks ``kagglehub`` ignores
``output_dir`` and returns a read-only mount (``/kaggle/input/...``): the course
reads it in place and writes nothing there (manifests and caches live in the
course's own folders).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pandas as pd

from helpers.constants import PNEUMONIA, SPLITS
from helpers.data.registry import (
    Prepared,
    Source,
    SourceUnavailable,
    header_key,
    image_files,
    image_key,
    manifest,
    n_images,
    register,
)
from helpers.data.tasks import DEFAULT_TASK, KERMANY_FOLDERS, get_task, label_map
from helpers.files import write_text

RADIOGRAPHY_HANDLE = "tawsifurrahman/covid19-radiography-database/versions/5"
PNEUMONIA_HANDLE = "paultimothymooney/chest-xray-pneumonia/versions/2"
KAGGLEHUB_FLOOR = "0.4.3"  # the first kagglehub with output_dir
# How the *.metadata.xlsx sheets name the pediatric source (Kermany et al., on Kaggle and Mendeley).
PEDIATRIC_MARKERS = ("chest-xray-pneumonia", "kermany", "rscbjbr9sj")
PEDIATRIC_SHARE = 1341 / 10192  # pediatric normals in version 5, per its README
# URL fragment -> the collection's name in the manifest's ``source`` column (first match wins).
COLLECTIONS = (
    ("bimcv", "bimcv"), ("padchest", "padchest"), ("ml-workgroup", "german-medical-school"),
    ("covid-19-image-repository", "german-medical-school"), ("sirm", "sirm"), ("eurorad", "eurorad"),
    ("radiopaedia", "radiopaedia"), ("ieee8023", "ieee8023"), ("covid-chestxray-dataset", "ieee8023"),
    ("armiro", "covid-cxnet"), ("cxnet", "covid-cxnet"), ("twitter", "twitter"), ("rsna", "rsna"),
    *((marker, "chest-xray-pneumonia") for marker in PEDIATRIC_MARKERS),
)
SHEET_COLUMNS = ("FILE NAME", "URL")


def kaggle_page(handle: str) -> str:
    """The dataset's page on kaggle.com."""
    owner, name = handle.split("/")[:2]
    return f"https://www.kaggle.com/datasets/{owner}/{name}"


def completion_marker(folder: Path) -> Path:
    """``v5`` -> ``v5.complete``: written beside a download once ``kagglehub`` has finished it."""
    return folder.with_name(folder.name + ".complete")


def kaggle_dataset(source: str, handle: str, *, data_dir: Path, path: Path | str | None) -> tuple[Path, list[str]]:
    """The dataset's folder and notes: ``path`` when given, else ``kagglehub``'s (downloaded once)."""
    manual = f"download {kaggle_page(handle)} manually, unzip it and pass its folder as path=..."
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise SourceUnavailable(f"{source}: {folder} is not a folder. Remedy: {manual}, or use "
                                    "DATASET='synthetic'.")
        return folder, []
    version = handle.rsplit("/", 1)[-1] if "/versions/" in handle else "latest"
    output = Path(data_dir) / source / f"v{version}"
    if completion_marker(output).is_file() and output.is_dir():
        return output, []
    try:
        import kagglehub
    except ImportError as error:
        raise SourceUnavailable(
            f"{source}: the kagglehub package is not installed. Remedy: pip install 'kagglehub>={KAGGLEHUB_FLOOR}', "
            f"or {manual}, or use DATASET='synthetic'."
        ) from error
    folder = _download(kagglehub, source, handle, output, manual)
    if folder.resolve() == output.resolve():
        write_text(completion_marker(output), f"{handle}\n")
        return folder, []
    return folder, [
        f"{source}: read in place from {folder} (inside Colab and Kaggle notebooks kagglehub returns a read-only "
        "mount and ignores output_dir); nothing is written there"
    ]


def _download(kagglehub, source: str, handle: str, output: Path, manual: str) -> Path:
    """``kagglehub.dataset_download`` into ``output``; a half folder it refuses is replaced."""
    try:
        try:
            return Path(kagglehub.dataset_download(handle, output_dir=str(output)))
        except FileExistsError:  # an interrupted download: kagglehub wants force_download=True
            print(f"{source}: {output} holds an unfinished download; kagglehub replaces it (force_download=True).")
            return Path(kagglehub.dataset_download(handle, output_dir=str(output), force_download=True))
    except TypeError as error:
        installed = getattr(kagglehub, "__version__", "unknown")
        if not _older_than_floor(installed):
            raise SourceUnavailable(f"{source}: kagglehub {installed} failed ({error}). Remedy: {manual}.") from error
        raise SourceUnavailable(
            f"{source}: kagglehub {installed} is too old ({error}). Remedy: upgrade kagglehub: "
            f"pip install -U 'kagglehub>={KAGGLEHUB_FLOOR}' (then restart the runtime), or {manual}."
        ) from error
    except Exception as error:  # kagglehub raises many kinds: HTTP, connection, its own
        raise SourceUnavailable(
            f"{source}: kagglehub could not download {handle} ({type(error).__name__}: {error}). "
            f"Remedy: check your connection, or {manual}, or use DATASET='synthetic'."
        ) from error


def _older_than_floor(version: str) -> bool:
    """Whether kagglehub ``version`` predates :data:`KAGGLEHUB_FLOOR` (an unknown version counts as older)."""
    numbers = [int(part) for part in re.findall(r"\d+", version)[:3]]
    return not numbers or numbers < [int(part) for part in KAGGLEHUB_FLOOR.split(".")]


def find_folder(root: Path, names: set[str], *, depth: int = 4) -> Path | None:
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


def _open(
    source: str, handle: str, data_dir: Path, path: Path | str | None, folders: set[str], layout: str,
) -> tuple[Path, Path, list[str]]:
    """The dataset's root, the folder under it that holds ``folders`` (the Kaggle layout ``layout``...), notes."""
    root, notes = kaggle_dataset(source, handle, data_dir=data_dir, path=path)
    base = find_folder(root, folders)
    if base is None:
        names = " and ".join(f"{name}/" for name in sorted(folders))
        raise SourceUnavailable(
            f"{source}: no {names} folders under {root} (expected the Kaggle layout {layout}...). Remedy: delete "
            f"that folder and run again, or pass path=... to a complete copy of {kaggle_page(handle)}, "
            "or use DATASET='synthetic'."
        )
    return root, base, notes


def collection(url: str) -> str:
    """The collection an image came from, by its metadata URL: ``https://sirm.org/...`` -> ``sirm``."""
    text = str(url).strip().lower()
    name = next((name for fragment, name in COLLECTIONS if fragment in text), None)
    if name:
        return name
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    return host.removeprefix("www.") or "unknown"


def read_sheet(path: Path) -> tuple[dict[str, str], list[str]]:
    """``{file name: URL}`` from a ``<Class>.metadata.xlsx`` sheet (names as :func:`image_key`), and notes.

    A missing sheet, or a missing or renamed column, gives no URLs and a note naming
    what is missing. Needs openpyxl.
    """
    if not path.is_file():
        return {}, [f"covid19-radiography: {path.name} is missing: the sources of its images are unknown"]
    try:
        table = pd.read_excel(path, dtype=str)
    except ImportError as error:
        raise SourceUnavailable(
            f"covid19-radiography: reading {path.name} needs the openpyxl package. Remedy: pip install "
            "openpyxl, or pass include_pediatric=True to keep the pediatric normals (a known shortcut)."
        ) from error
    columns = {header_key(column): column for column in table.columns}
    missing = [column for column in SHEET_COLUMNS if header_key(column) not in columns]
    if missing:
        listed = ", ".join(map(repr, map(str, table.columns)))
        return {}, [
            f"covid19-radiography: {path.name} has no column {' or '.join(map(repr, missing))} (its columns: "
            f"{listed}); the sources of its images are unknown"
        ]
    names, urls = (table[columns[header_key(column)]].fillna("").str.strip() for column in SHEET_COLUMNS)
    return dict(zip(names.map(image_key), urls)), []


def prepare_covid19_radiography(
    data_dir: Path, *, include_pediatric: bool = False, path: Path | str | None = None,
    handle: str = RADIOGRAPHY_HANDLE, task: str = DEFAULT_TASK,
) -> Prepared:
    """COVID vs Normal from the COVID-19 Radiography Database (Kaggle), adult normals only by default.

    ``source`` is each image's collection, read from the URL columns of ``<Class>.metadata.xlsx``;
    ``mask`` is the lung mask shipped beside the image. Another ``task`` takes the folders of
    its classes (``Viral Pneumonia`` is PNEUMONIA) and records each image's folder as ``finding``.
    """
    source = "covid19-radiography"
    layout = "COVID-19_Radiography_Dataset/COVID/images/"
    root, base, notes = _open(source, handle, data_dir, path, {"COVID", "Normal"}, layout)
    folders = {"COVID": "COVID", "Normal": "NORMAL"} if task == DEFAULT_TASK else label_map(source, task)
    classes = "/".join(reversed(get_task(task).classes))
    others = {
        folder.name: len(image_files(folder, skip={"masks"}))
        for folder in sorted(base.iterdir())
        if folder.is_dir() and folder.name not in folders
    }
    notes += [f"{source}: {n_images(n)} in {name!r} excluded (not {classes})" for name, n in others.items() if n]
    if "Normal" in folders and not (include_pediatric or (base / "Normal.metadata.xlsx").is_file()):
        raise SourceUnavailable(
            f"{source}: {base / 'Normal.metadata.xlsx'} is missing; it tells which normals are pediatric. Remedy: "
            "download the dataset again, or pass include_pediatric=True to keep them all (a known shortcut)."
        )
    files, labels, sources, readable, found_in = [], [], [], {}, []
    for folder, label in folders.items():
        found = image_files(base / folder, skip={"masks"})
        urls, sheet_notes = read_sheet(base / f"{folder}.metadata.xlsx")
        keys = [image_key(file.name) for file in found]
        unlisted = sum(key not in urls for key in keys)
        if urls and unlisted:
            sheet_notes.append(f"{source}: {n_images(unlisted)} of {folder}/ not in its metadata sheet: source unknown")
        files += found
        labels += [label] * len(found)
        found_in += [folder] * len(found)
        sources += [collection(urls[key]) if key in urls else "unknown" for key in keys]
        notes += sheet_notes
        readable[label] = bool(urls)
    rows = manifest(
        path=[file.relative_to(root).as_posix() for file in files],
        label=labels,
        patient_id=[f"{source}:{file.stem}" for file in files],
        source=sources,
        modality="xray",
        mask=[_mask(file, root) for file in files],
        **({} if task == DEFAULT_TASK else {"finding": found_in}),
    )
    rows, pediatric_notes = _pediatric(rows, include_pediatric=include_pediatric, sheet_read=readable.get("NORMAL", True),
                                       pneumonia_sheet_read=readable.get(PNEUMONIA, True))
    notes += pediatric_notes
    notes.append(
        f"{source}: patient ids are not published: one id per image, so one patient's images may fall "
        "into different splits"
    )
    return Prepared(root, rows.reset_index(drop=True), notes)


def _mask(image: Path, root: Path) -> str:
    """The lung mask shipped for ``image`` (``<Class>/masks/<name>``), relative to ``root``; empty if none."""
    mask = image.parent.parent / "masks" / image.name
    return mask.relative_to(root).as_posix() if image.parent.name == "images" and mask.is_file() else ""


def _pediatric(
    rows: pd.DataFrame, *, include_pediatric: bool, sheet_read: bool, pneumonia_sheet_read: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """The rows without the pediatric normals (unless included), and the notes saying what happened."""
    source = "covid19-radiography"
    if include_pediatric:
        return rows, [
            f"{source}: pediatric normals from the chest-xray-pneumonia set are included "
            "(include_pediatric=True): children vs adults is a shortcut a model can learn"
        ]
    if not sheet_read:
        message = (f"{source}: Normal.metadata.xlsx cannot tell the pediatric normals (see above), so all normals "
                   "are kept: children vs adults is a shortcut a model can learn")
        warnings.warn(message, UserWarning, stacklevel=2)
        return rows, [message]
    pediatric = (rows["label"] == "NORMAL") & (rows["source"] == "chest-xray-pneumonia")
    normals = int((rows["label"] == "NORMAL").sum())
    notes = [
        f"{source}: {n_images(int(pediatric.sum()))} of pediatric normals (chest-xray-pneumonia, "
        "Kermany et al.) excluded (include_pediatric=False): children vs adults is a shortcut"
    ] if normals else []
    children = (rows["label"] == PNEUMONIA) & (rows["source"] == "chest-xray-pneumonia")
    if children.any():
        notes.append(f"{source}: {n_images(int(children.sum()))} of pediatric viral pneumonias (chest-xray-pneumonia) "
                     "excluded (include_pediatric=False): children vs adults is a shortcut")
        pediatric |= children
    if not pneumonia_sheet_read and (rows["label"] == PNEUMONIA).any():
        notes.append(f"{source}: 'Viral Pneumonia.metadata.xlsx' cannot tell the pediatric viral pneumonias (see above), "
                     "so all are kept: children vs adults is a shortcut a model can learn")
    expected = PEDIATRIC_SHARE * normals
    if normals and pediatric.sum() < expected / 2:
        message = (f"{source}: the pediatric filter removed {int(pediatric.sum())} of {normals} normals where about "
                   f"{expected:.0f} were expected (1,341 of 10,192 in version 5): the URLs of Normal.metadata.xlsx "
                   f"may have changed (markers looked for: {', '.join(PEDIATRIC_MARKERS)})")
        warnings.warn(message, UserWarning, stacklevel=2)
        notes.append(message)
    return rows[~pediatric], notes


def kermany_patient(name: str) -> str:
    """The patient in a Kermany file name: ``IM-0115-0001.jpeg`` -> ``IM-0115``.

    ``person1_bacteria_1.jpeg`` -> ``person1``; names that match neither pattern are their own patient.
    """
    stem = PurePosixPath(name).stem
    match = re.match(r"(.*?IM-\d+)-\d", stem) or re.match(r"(.*?person\d+)_", stem)
    return match.group(1) if match else stem


def prepare_chest_xray_pneumonia(
    data_dir: Path, *, path: Path | str | None = None, handle: str = PNEUMONIA_HANDLE, task: str = DEFAULT_TASK,
) -> Prepared:
    """The pediatric NORMAL images of Kermany et al. (Kaggle), for the age-shortcut lesson.

    Another ``task`` takes the folders of its classes (PNEUMONIA/ too) and records them as ``finding``.
    """
    source = "chest-xray-pneumonia"
    root, base, notes = _open(source, handle, data_dir, path, {"train", "test"}, "chest_xray/train/NORMAL/")
    folders = {"NORMAL": "NORMAL"} if task == DEFAULT_TASK else label_map(source, task)
    found = {name: [file for split in SPLITS for file in image_files(base / split / name)] for name in KERMANY_FOLDERS}
    classes = "/".join(reversed(get_task(task).classes))
    notes += [f"{source}: {n_images(len(files))} in {name!r} excluded (not {classes})"
              for name, files in found.items() if files and name not in folders]
    normal = [file for name in folders for file in found[name]]
    notes += [
        (
            f"{source}: pediatric patients (one to five years old, one hospital in Guangzhou): use them to "
            "show the age shortcut, never as the negatives of a COVID model"
        ),
        (
            f"{source}: the Kaggle train/val/test folders are not kept as the split (its val folder holds "
            "16 images); patient ids come from the file names (IM-0115-0001 -> IM-0115)"
        ),
    ]
    rows = manifest(
        path=[file.relative_to(root).as_posix() for file in normal],
        label=[folders[file.parent.name] for file in normal],
        patient_id=[f"{source}:{kermany_patient(file.name)}" for file in normal],
        source=source,
        modality="xray",
        **({} if task == DEFAULT_TASK else {"finding": [file.parent.name for file in normal]}),
    )
    return Prepared(root, rows, notes)


register(Source(
    "covid19-radiography", "xray",
    "COVID-19 Radiography Database (Kaggle): COVID vs adult Normal; pediatric normals left out",
    license="see the Kaggle page (mixed sources; research use)",
    size="3,616 COVID and 10,192 Normal images (1,341 of them pediatric); the download is about 800 MB",
    homepage=kaggle_page(RADIOGRAPHY_HANDLE), prepare=prepare_covid19_radiography,
))
register(Source(
    "chest-xray-pneumonia", "xray",
    "Pediatric chest X-rays (Kermany et al.), NORMAL only: for the age-shortcut lesson", license="CC BY 4.0",
    size="1,583 NORMAL and 4,273 PNEUMONIA images; the download is about 1.2 GB",
    homepage=kaggle_page(PNEUMONIA_HANDLE), prepare=prepare_chest_xray_pneumonia,
))
