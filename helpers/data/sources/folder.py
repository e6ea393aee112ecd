"""``folder``: any ``CLASS/image`` tree on disk, read in place."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from helpers.data.registry import (
    Prepared,
    Source,
    SourceUnavailable,
    check_label_map,
    image_files,
    manifest,
    n_images,
    register,
)
from helpers.data.tasks import DEFAULT_TASK, get_task, label_map

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
    task: str = DEFAULT_TASK,
) -> Prepared:
    """Rows for the images of a ``CLASS/image`` tree (also ``train|test/CLASS/image``), read in place.

    An image's class is its nearest folder named in ``class_map`` (default
    :data:`FOLDER_CLASSES`); other images are dropped with a note. An image under a
    ``test``/``testing`` folder keeps ``split='test'``; the rest is split by the course. Another
    ``task`` maps PNEUMONIA/ folders too and records each image's class folder as ``finding``.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SourceUnavailable(
            f"folder: {root} is not a folder. Remedy: pass path= a folder of CLASS/image files "
            "(for example train/COVID-19/x.png), or use DATASET='synthetic'."
        )
    classes = get_task(task).classes
    default = FOLDER_CLASSES if task == DEFAULT_TASK else label_map("folder", task)
    class_map = check_label_map(default if class_map is None else class_map, "class_map", classes)
    records, unmapped = [], Counter()
    for file in image_files(root):
        parts = file.relative_to(root).parts[:-1]
        folder = next((part for part in reversed(parts) if part in class_map), None)
        label = class_map.get(folder)
        if label is None:
            unmapped[parts[-1] if parts else "."] += 1
            continue
        split = "test" if any(part.lower() in TEST_FOLDERS for part in parts) else ""
        records.append((file.relative_to(root).as_posix(), label, split, folder))
    if not records:
        raise SourceUnavailable(
            f"folder: no image under {root} is in a class folder ({', '.join(class_map)}). "
            "Remedy: pass class_map= to name your class folders, or use DATASET='synthetic'."
        )
    notes = [
        f"folder: {n_images(n)} in folder {name!r} dropped (not mapped to {'/'.join(reversed(classes))}; "
        f"pass class_map={{{name!r}: {' or '.join(repr(c) for c in reversed(classes))}}} to keep them)"
        for name, n in sorted(unmapped.items())
    ]
    paths, labels, splits, folders = zip(*records)
    if "test" in splits:
        notes.append(
            f"folder: {n_images(splits.count('test'))} under a test folder keep split='test'; "
            "the rest is split by the course"
        )
    notes.append("folder: patient ids are unknown: one id per file")
    rows = manifest(
        path=paths,
        label=labels,
        patient_id=[f"folder:{p}" for p in paths],
        source="folder",
        modality=modality,
        split=splits,
        **({} if task == DEFAULT_TASK else {"finding": folders}),
    )
    return Prepared(root, rows, notes)


register(Source(
    "folder", "xray", "Your own CLASS/image folder tree (pass path=...)", license="yours", size="yours", homepage="",
    prepare=prepare_folder,
))
