"""Image files made in memory for the reader's tests: encoded images, header-only PNGs, DICOM."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **options) -> bytes:
    """The bytes of an image file: a PIL image or an array (8/16-bit gray, RGB, RGBA) saved as ``fmt``."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def ramp(height: int = 32, width: int = 48) -> np.ndarray:
    """A smooth uint8 gradient: survives JPEG almost unchanged and has an obvious orientation."""
    return (np.add.outer(np.arange(height) * 2, np.arange(width) * 3) % 256).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels (no pixel data): enough for the size check."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def make_dicom(pixels: np.ndarray, *, photometric="MONOCHROME2", preamble=True, **elements) -> bytes:
    pytest.importorskip("pydicom", minversion="3.0", reason="these tests write DICOM with the pydicom 3 API")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=preamble, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


DICOM_PIXELS = np.array([[0, 1000], [2000, 4000]], np.uint16)
