"""Decoding JPEG, PNG, TIFF, BMP, GIF and the other formats Pillow reads into 2-D ``uint8`` grayscale."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from helpers.images.limits import MAX_PIXELS, ImageError, check_pixels
from helpers.images.pixels import stretch


def decode(file: BinaryIO, name: str, *, kind: str | None, reduce_to: int | None, found: list[str]) -> np.ndarray:
    """Decode ``file`` with Pillow; ``kind`` is the format its magic bytes announce (``"PNG"``, ...) or None.

    Raises Pillow's ``UnidentifiedImageError`` when ``file`` is no format Pillow knows, else ImageError.
    """
    try:
        image = Image.open(file)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{name}: image too large ({exc}); the reader's limit is {MAX_PIXELS / 1e6:.0f} Mpx: downscale it first"
        ) from None
    except Exception as exc:  # Pillow raises many types on a damaged header or an unsupported variant
        unidentified = isinstance(exc, UnidentifiedImageError)  # its text only names the file object
        if kind is not None:
            detail = "" if unidentified else f": {exc}"
            raise ImageError(
                f"{name}: damaged {kind} (the header is broken{detail}); fetch the file again or re-export it"
            ) from None
        if unidentified:
            raise
        raise ImageError(
            f"{name}: cannot open it ({type(exc).__name__}: {exc}); the file is damaged or uses an encoding "
            "Pillow does not support: fetch it again, or convert it to PNG"
        ) from exc
    with image:
        if image.format == "JPEG":
            image.draft("L", (reduce_to, reduce_to) if reduce_to else None)  # libjpeg decodes at 1/2..1/8 scale
        check_pixels(name, image.width, image.height)
        try:
            image.load()
        except MemoryError:
            raise
        except Exception as exc:
            raise ImageError(
                f"{name}: truncated or corrupt {image.format or 'image'} data ({exc}); the file is incomplete "
                "or damaged, fetch it again"
            ) from exc
        pages = getattr(image, "n_frames", 1)
        if pages > 1:
            found.append(f"{image.format} with {pages} pages or frames: only page 1 was read")
        try:
            return _to_gray(_upright(image), found)
        except ValueError as exc:
            raise ImageError(f"{name}: unsupported colour mode {image.mode} ({exc}); convert it to PNG") from exc


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a damaged EXIF block is ignored rather than losing the image."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _to_gray(image: Image.Image, found: list[str]) -> np.ndarray:
    """Pillow image of any mode -> 2-D uint8 (see the package docstring for the rules), writable."""
    if image.mode in ("1", "L"):
        return np.array(image.convert("L"))
    if image.mode.startswith(("I", "F")):
        return stretch(np.asarray(image), found)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return np.array(ImageChops.multiply(rgba.convert("L"), rgba.getchannel("A")))
    if image.mode == "RGB":
        return np.array(image.convert("L"))
    return np.array(image.convert("RGB").convert("L"))  # P, CMYK, YCbCr, LAB, HSV, ...
