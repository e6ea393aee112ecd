"""Reading one image file: refuse what is not a regular file or too large, tell DICOM from the rest by its
bytes, decode, and collect warnings about what was read. See the package docstring for the rules."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import UnidentifiedImageError

from helpers.images import dicom, raster
from helpers.images.limits import MAX_FILE_BYTES, ImageError
from helpers.images.pixels import content_warnings, reduce

READER_VERSION = 2  # bump whenever read_image/resize change their output: old caches are then ignored
DICOM_SUFFIXES = (".dcm", ".dicom")
MAGIC = {  # the first bytes of each raster format the reader meets
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF8": "GIF",
}
HEAD_BYTES = 512

Source = str | os.PathLike | bytes | bytearray | memoryview


def read_image(
    source: Source, *, name: str | None = None, reduce_to: int | None = None, warnings: list[str] | None = None
) -> np.ndarray:
    """Decode ``source`` (a path or the file's bytes) to a 2-D ``uint8`` grayscale array.

    ``name`` is used in messages (default: the path, or ``"<bytes>"``). ``reduce_to`` lets
    large images come back smaller (JPEG decodes at 1/2, 1/4 or 1/8 scale, others are
    box-reduced) while both sides stay at least ``reduce_to`` pixels: pass the size you will
    resize to. Default: full size. Pass a list as ``warnings`` to get the reasons to doubt an
    image that was read (blank, nearly blank, several pages, NaN pixels), one message each,
    starting with ``name``. Anything unreadable raises :class:`ImageError`.
    """
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    found: list[str] = []
    with _open(source, name) as file:
        head = file.read(HEAD_BYTES)
        file.seek(0)
        gray = reduce(_decode(file, head, name, reduce_to, found), reduce_to)
    if warnings is not None:
        warnings.extend(f"{name}: {message}" for message in found + content_warnings(gray))
    return gray


@contextlib.contextmanager
def _open(source: Source, name: str) -> Iterator[BinaryIO]:
    """The file to decode, once it is known to be a non-empty regular file below the size limit."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
    else:
        try:
            info = os.stat(source)
        except FileNotFoundError:
            raise ImageError(f"{name}: file not found; check the dataset folder or fetch it again") from None
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            raise ImageError(f"{name}: cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
        if not stat.S_ISREG(info.st_mode):  # reading a FIFO or a device would never end
            raise ImageError(f"{name}: not a regular file but {_file_kind(info.st_mode)}; pass an image file")
        size = info.st_size
    if not size:
        raise ImageError(
            f"{name}: empty file (0 bytes), probably an interrupted download; delete it and fetch it again"
        )
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"{name}: the file is {size / 2**20:.0f} MB, above the reader's limit of {MAX_FILE_BYTES / 2**20:.0f} MB "
            "(no chest X-ray needs that much); downscale or compress it first"
        )
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source)
        return
    try:
        file = open(source, "rb")
    except OSError as exc:
        raise ImageError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    with file:
        yield file


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((kind for test, kind in kinds.items() if test(mode)), "a special file")


def _decode(file: BinaryIO, head: bytes, name: str, reduce_to: int | None, found: list[str]) -> np.ndarray:
    """DICOM when the file says ``DICM`` at byte 128, else Pillow; a file Pillow does not know is DICOM
    (an old one, without the preamble) only when its name says so.

    Whatever goes wrong inside a decoder becomes an :class:`ImageError` naming the file.
    """
    kind = next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)
    try:
        if head[128:132] == b"DICM":
            return dicom.decode(file, name, found=found)
        try:
            return raster.decode(file, name, kind=kind, reduce_to=reduce_to, found=found)
        except UnidentifiedImageError:
            if not name.lower().endswith(DICOM_SUFFIXES):
                raise ImageError(f"{name}: {describe_non_image(head)}") from None
        file.seek(0)
        return dicom.decode(file, name, found=found)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode it; downscale it or free memory") from None
    except Exception as exc:
        raise ImageError(
            f"{name}: cannot decode it ({type(exc).__name__}: {exc}); the file is damaged or uses a variant "
            "the reader does not support: fetch it again, or convert it to PNG"
        ) from exc


def describe_non_image(data: bytes) -> str:
    """Say what a file that is not a readable image looks like (PDF, HTML, text, ...)."""
    head = data[:HEAD_BYTES]
    stripped = head.lstrip().lower()
    signatures = {
        b"%pdf": "not an image: looks like a PDF; export the page as PNG or JPEG",
        b"<!doctype html": "not an image: looks like an HTML page (a failed download or a login page?)",
        b"<html": "not an image: looks like an HTML page (a failed download or a login page?)",
        b"version https://git-lfs": "not an image: a Git LFS pointer; run `git lfs pull` to get the file",
        b"pk\x03\x04": "not an image: looks like a ZIP archive; unpack it first",
        b"\x1f\x8b": "not an image: looks like a gzip archive; unpack it first",
    }
    for signature, message in signatures.items():
        if stripped.startswith(signature):
            return message
    if _looks_like_text(head):
        text = head[:40].decode("utf-8", "replace").strip()
        return f"not an image: looks like text ({text!r}...)"
    return f"unsupported or unrecognised image format (first bytes {data[:8].hex(' ')}); convert it to PNG or JPEG"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)
