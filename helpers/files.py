"""Writing files safely: under a temporary name beside the target, then one rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_args) -> Iterator:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block succeeds.

    A crash or an exception never leaves a half-written file under the real name, and the
    temporary file is removed. The file gets the usual permissions (``0o644``), not mkstemp's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, mode, **open_args) as file:
            yield file
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.write(text)
