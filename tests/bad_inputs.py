"""Every kind of bad input a user can hand the CLI or the demo, made in memory, with what must come back.

``BYTES`` are uploads (the demo gets bytes); ``write_batch`` also makes what only a path can be: a missing file,
a folder, a FIFO, a dangling link. Each entry maps a file name to ``(content, expected)`` where ``expected`` is
``("error", text)`` or ``("warning", text)`` or ``("ok", "")``: text is a piece of the message, lower case.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

RNG = np.random.default_rng(0)
BODY = RNG.integers(0, 255, (160, 160), dtype=np.uint8)  # a normal-looking texture: no content warning


def encode(array_or_image, fmt: str, **options) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height`` RGB, with a tiny (wrong) body: 1 KB that claims gigabytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")


def dicom(pixels: np.ndarray, **elements) -> bytes:
    """A 16-bit MONOCHROME2 DICOM file, written in memory; ``elements`` set or override data elements."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "DX", "MONOCHROME2", 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _multipage_tiff() -> bytes:
    pages = [Image.fromarray(np.zeros((160, 160), np.uint8)), Image.fromarray(BODY)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def _nan_tiff() -> bytes:
    values = BODY.astype(np.float32)
    values[5, 5], values[6, 6] = np.nan, np.inf
    return encode(Image.fromarray(values, mode="F"), "TIFF")


def _nearly_black() -> np.ndarray:
    pixels = np.zeros((160, 160), np.uint8)
    pixels[:2, :2] = 255
    return pixels


GOOD_PNG = encode(BODY, "PNG")
GOOD_JPEG = encode(BODY, "JPEG")

BYTES: dict[str, tuple[bytes, tuple[str, str]]] = {
    "good.png": (GOOD_PNG, ("ok", "")),
    "png-named.dcm": (GOOD_PNG, ("ok", "")),  # the DICOM decision is made by the DICM marker, not the name
    "empty.png": (b"", ("error", "empty")),
    "notes.png": (b"Patient 12: cough and fever for three days.\n", ("error", "looks like text")),
    "report.pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", ("error", "pdf")),
    "page.html": (b"<!DOCTYPE html><html><body>login</body></html>", ("error", "html")),
    "archive.png": (b"PK\x03\x04" + bytes(100), ("error", "zip")),
    "noise.png": (bytes(RNG.integers(0, 256, 4000, dtype=np.uint8)), ("error", "")),
    "damaged-header.png": (GOOD_PNG[:16] + b"\xff" * 17 + GOOD_PNG[33:], ("error", "damaged")),
    "damaged-header.jpg": (GOOD_JPEG[:2] + b"\xff\xc0\x00\x02" + GOOD_JPEG[6:40], ("error", "damaged")),
    "truncated.png": (GOOD_PNG[: len(GOOD_PNG) // 2], ("error", "")),
    "slope.dcm": (dicom(BODY.astype(np.uint16) * 16, RescaleSlope=[1, 2]), ("error", "rescaleslope")),
    "broken.dcm": (b"\x00" * 128 + b"DICM" + b"\x02\x00" * 40, ("error", "dicom")),
    "20000px.png": (png_claiming(20000, 20000), ("error", "too large")),
    "black.png": (encode(np.zeros((160, 160), np.uint8), "PNG"), ("warning", "blank")),
    "constant.png": (encode(np.full((160, 160), 128, np.uint8), "PNG"), ("warning", "blank")),
    "nearly-black.png": (encode(_nearly_black(), "PNG"), ("warning", "nearly blank")),
    "pages.tif": (_multipage_tiff(), ("warning", "page")),
    "nan.tif": (_nan_tiff(), ("warning", "nan")),
}


def write_batch(folder: Path) -> dict[str, tuple[str, str]]:
    """Write every kind under ``folder``, plus a missing file, a folder, a FIFO and a dangling link; name -> expected."""
    expected = {}
    for name, (content, outcome) in BYTES.items():
        (folder / name).write_bytes(content)
        expected[name] = outcome
    (folder / "a-folder.png").mkdir()
    os.mkfifo(folder / "fifo.png")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    expected.update({"missing.png": ("error", "not found"), "a-folder.png": ("error", "regular file"),
                     "fifo.png": ("error", "regular file"), "dangling.png": ("error", "not found")})
    return expected
