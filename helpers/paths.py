"""Where the course keeps data and outputs.

Both folders can be moved with environment variables: ``COURSE_DATA_DIR``
(default ``data/cache``) and ``COURSE_OUTPUT_DIR`` (default ``outputs``), both
relative to the project root: the nearest folder above the current one that
holds this course's ``pyproject.toml``, else the current folder (Colab).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PROJECT_NAME = "covid-course"


def project_root(start: Path | None = None) -> Path:
    """The course checkout that contains ``start`` (default: the current folder)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        toml = folder / "pyproject.toml"
        if toml.is_file() and f'name = "{PROJECT_NAME}"' in toml.read_text():
            return folder
    return here


def _folder(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    path = Path(value) if value else project_root() / default
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def data_dir() -> Path:
    """Downloaded datasets, decoded-image and feature caches, Keras weights."""
    return _folder("COURSE_DATA_DIR", "data/cache")


def output_dir() -> Path:
    """Executed notebooks, trained models, metrics and the report."""
    return _folder("COURSE_OUTPUT_DIR", "outputs")


def cache_dir(kind: str) -> Path:
    """A sub-folder of the data cache for one kind of cached thing (``images``, ``features``)."""
    path = data_dir() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_file(kind: str, *parts, suffix: str = ".npz") -> Path:
    """The cache file of ``kind`` named from ``parts`` (dataset name and key, size, versions...).

    Every input that changes the cached content must be one of the parts, so that a changed
    input never reuses a stale cache.
    """
    stem = "-".join(str(part) for part in parts)
    return cache_dir(kind) / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + suffix)


def run_dir(dataset: str, model: str) -> Path:
    """``outputs/<dataset>/<model>/``: one trained model's artifacts."""
    path = output_dir() / dataset / model
    path.mkdir(parents=True, exist_ok=True)
    return path
