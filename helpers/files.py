"""Writing files safely: under a temporary name beside the target, then one rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside ``path`` (ending in ``suffix``); it replaces ``path`` only if the block succeeds.

    For writers that take a file name (Keras' ``model.save`` wants one ending in ``.keras``:
    ``suffix=".part.keras"``). A crash or an exception never leaves a
    half-written file under the real name, and the temporary file is removed. The file gets
    the usual permissions (``0o644``), not mkstemp's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args) -> Iterator:
    """Open a temporary file beside ``path`` (see :func:`atomic_path`); it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_args) as file:
        yield file


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.write(text)
