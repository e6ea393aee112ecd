"""Decoding DICOM (X-ray and CT) into 2-D ``uint8`` grayscale, with pydicom's modality and VOI transforms."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from helpers.images.limits import ImageError, check_pixels
from helpers.images.pixels import stretch

LUMA = np.array([0.299, 0.587, 0.114])
SINGLE_VALUED = (  # elements whose second value would otherwise surface as a TypeError or a silent broadcast
    "RescaleSlope", "RescaleIntercept", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated",
    "BitsStored", "PixelRepresentation", "PhotometricInterpretation",
)


def decode(file: BinaryIO, name: str, *, found: list[str]) -> np.ndarray:
    """The middle frame of ``file``: modality LUT (e.g. Hounsfield units), then the first VOI LUT or window.

    Only that frame is decoded, after its size was checked against the pixel limit.
    """
    try:
        import pydicom
        from pydicom.pixels import pixel_array
    except ImportError:
        raise ImageError(f"{name}: DICOM files need pydicom 3 or newer; pip install -U pydicom") from None
    ds = None
    try:
        ds = pydicom.dcmread(file, force=True)
        if not all(keyword in ds for keyword in ("Rows", "Columns", "PixelData")):
            raise ImageError(f"{name}: a DICOM file without an image (no Rows, Columns or Pixel Data: a report, "
                             "or a truncated file); fetch it again or export the image itself")
        _assume_transfer_syntax(ds)
        for keyword in SINGLE_VALUED:
            if keyword in ds and ds[keyword].VM > 1:
                raise ImageError(f"{name}: its {keyword} holds {ds[keyword].VM} values where DICOM allows one "
                                 f"({ds[keyword].value}); the file is damaged, export it again")
        frames = int(ds.get("NumberOfFrames") or 1)
        check_pixels(name, int(ds.Columns), int(ds.Rows) * int(ds.get("SamplesPerPixel") or 1), what="DICOM frame")
        pixels = pixel_array(ds, index=frames // 2 if frames > 1 else None)
        gray = _to_gray(ds, pixels, found)
    except ImageError:
        raise
    except Exception as exc:
        advice = ("it is JPEG-compressed: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
                  if _is_jpeg(ds) else "the file is damaged or unusual: export it again, or as PNG")
        raise ImageError(f"{name}: cannot decode this DICOM file ({type(exc).__name__}: {exc}); {advice}") from exc
    if frames > 1:
        found.append(f"DICOM with {frames} frames: only frame {frames // 2 + 1} (the middle one) was read")
    return gray


def _is_jpeg(ds) -> bool:
    """Whether ``ds`` (None when reading failed) declares a JPEG transfer syntax, which pylibjpeg decodes."""
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID") if ds is not None else None
    return syntax in JPEGTransferSyntaxes + JPEGLSTransferSyntaxes + JPEG2000TransferSyntaxes


def _assume_transfer_syntax(ds) -> None:
    """Give a data set without file meta (an old raw ``.dcm``) the uncompressed syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = syntax


def _to_gray(ds, pixels: np.ndarray, found: list[str]) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if int(ds.get("SamplesPerPixel") or 1) == 3:  # colour (pydicom gives RGB): no modality or VOI transform
        return stretch(pixels @ LUMA, found, 0, 2 ** int(ds.get("BitsStored") or 8) - 1)
    values = apply_modality_lut(pixels, ds)
    if ds.get("VOILUTSequence") and values.dtype.kind == "f":  # a LUT is indexed by whole numbers
        values = np.rint(values).astype(np.int64)
    windowed = apply_voi_lut(values, ds)
    if windowed is values:  # neither a VOI LUT nor a window: the file's own range
        gray = stretch(values, found)
    else:  # the range the VOI maps into: what the lowest and highest possible inputs become
        low, high = apply_voi_lut(_extremes(ds), ds)
        gray = stretch(windowed, found, float(low), float(high))
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":  # pydicom leaves the inversion to us
        gray = 255 - gray
    return gray


def _extremes(ds) -> np.ndarray:
    """Inputs below and above anything the VOI maps: the LUT's first and last entry, or minus/plus infinity."""
    if ds.get("VOILUTSequence"):
        entries, first = ds.VOILUTSequence[0].LUTDescriptor[:2]
        return np.array([first, first + (entries or 2**16) - 1])
    return np.array([-np.inf, np.inf])
