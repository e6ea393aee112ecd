"""A whole dataset decoded, resized to a square and cached as one ``.npz`` (:func:`load_images`)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.files import atomic_write
from helpers.images.limits import ImageError
from helpers.images.pixels import resize
from helpers.images.reading import READER_VERSION, read_image
from helpers.paths import cache_file


@dataclass
class ImageSet:
    """Decoded images of a dataset: ``images[i]`` belongs to ``manifest.iloc[i]``."""

    images: np.ndarray  # uint8, N x size x size
    manifest: pd.DataFrame  # the rows kept, in order, index reset
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message) of skipped files
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.images)


def cache_path(dataset, size: int) -> Path:
    """The cache file of ``dataset`` at ``size``: named from its name, key, the size and READER_VERSION."""
    return cache_file("images", dataset.name, dataset.key, f"{size}px", f"r{READER_VERSION}")


def load_images(
    dataset, size: int, *, workers: int | None = None, progress: bool = True, refresh: bool = False
) -> ImageSet:
    """Decode every image of ``dataset`` resized to ``size x size``, from the cache when possible.

    ``dataset`` needs ``name``, ``root``, ``key`` and ``manifest`` (column
    ``path`` relative to ``root``). Unreadable files are skipped and listed in
    ``errors``; they never stop the dataset. The result is cached; the cache is
    reused only for the same name, key, size and reader version (``refresh=True``
    decodes again, e.g. after you replaced a broken file without changing the
    manifest). ``workers`` threads decode in parallel (default: Python's, CPUs + 4 up to 32).
    """
    path = cache_path(dataset, size)
    manifest = dataset.manifest.reset_index(drop=True)
    if path.exists() and not refresh:
        cached = _read_cache(path, manifest)
        if cached is not None:
            skipped = f"; skipped {len(cached.errors)} unreadable (see .errors)" if cached.errors else ""
            print(f"images: loaded {len(cached)} cached {size}px images (cache hit{skipped}) from {path.name}")
            return cached
    started = time.perf_counter()
    images, kept, errors = _decode_all(
        Path(dataset.root), list(manifest["path"]), size, workers=workers, progress=progress
    )
    image_set = ImageSet(images, manifest.iloc[kept].reset_index(drop=True), errors)
    _write_cache(path, image_set, kept)
    skipped = f", skipped {len(errors)} unreadable (see .errors)" if errors else ""
    print(
        f"images: decoded {len(images)} images at {size}px in {time.perf_counter() - started:.1f} s"
        f"{skipped}; cached to {path.name}"
    )
    return image_set


def _decode_all(
    root: Path, paths: list[str], size: int, *, workers: int | None, progress: bool
) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    from tqdm.auto import tqdm

    images = np.zeros((len(paths), size, size), np.uint8)
    kept, errors = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda rel: _load_one(root / rel, rel, size), paths)
        bar = tqdm(zip(paths, results, strict=True), total=len(paths), desc="images", unit="img", disable=not progress)
        for index, (rel, (image, error)) in enumerate(bar):
            if error is None:
                images[len(kept)] = image
                kept.append(index)
            else:
                errors.append((rel, error))
    return images[: len(kept)], kept, errors


def _load_one(path: Path, rel: str, size: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return resize(read_image(path, name=rel, reduce_to=size), size), None
    except ImageError as exc:
        return None, str(exc)


def _write_cache(path: Path, image_set: ImageSet, kept: list[int]) -> None:
    """Write the cache under a temporary name, then rename: a crash never leaves a half file."""
    errors = image_set.errors
    with atomic_write(path) as file:
        np.savez(
            file,
            images=image_set.images,
            kept=np.asarray(kept, np.int64),
            rows=len(image_set.manifest) + len(errors),
            paths=np.asarray(image_set.manifest["path"], dtype=str),
            error_paths=np.asarray([p for p, _ in errors], dtype=str),
            error_messages=np.asarray([m for _, m in errors], dtype=str),
        )


def _read_cache(path: Path, manifest: pd.DataFrame) -> ImageSet | None:
    """The cached ImageSet, or None when the file is unreadable or does not match the manifest."""
    try:
        with np.load(path) as npz:
            images, kept, paths, rows = npz["images"], npz["kept"], npz["paths"], int(npz["rows"])
            errors = list(zip(npz["error_paths"].tolist(), npz["error_messages"].tolist(), strict=True))
    except Exception:
        return None
    if rows != len(manifest):
        return None
    rows = manifest.iloc[kept].reset_index(drop=True)
    if len(images) != len(rows) or paths.tolist() != rows["path"].tolist():
        return None
    return ImageSet(images, rows, errors, from_cache=True)
