"""Hints that an uploaded image may not be what a model was trained on: far from square, small, coloured.

They are heuristics, never certain; :func:`helpers.app.predict.predict_image` adds them to the
reader's own doubts (blank, multi-page) as the prediction's warnings.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from helpers.images import Source

MAX_ASPECT = 1.5  # frontal chest X-rays and CT slices are roughly square
MIN_SIDE = 128  # pixels
COLOUR_FRACTION = 0.05  # share of clearly coloured pixels above which an image looks like a photo or figure
WHAT = {"xray": "a frontal chest X-ray", "ct": "an axial chest CT slice"}


def image_warnings(source: Source, gray: np.ndarray, *, modality: str = "xray") -> list[str]:
    """Hints that an image may not be what the model was trained on (never certain: they are heuristics)."""
    what = WHAT.get(modality, WHAT["xray"])
    found = []
    height, width = gray.shape
    if max(height, width) / min(height, width) > MAX_ASPECT:
        found.append(f"The image is {width}x{height} pixels, far from square; {what} is roughly square. It may be "
                     "cropped, a multi-panel figure or another kind of image, and it is squeezed to a square here.")
    if min(height, width) < MIN_SIDE:
        found.append(f"The image is small ({width}x{height} pixels): fine detail is missing.")
    coloured = colour_fraction(source)
    if coloured > COLOUR_FRACTION:
        found.append(f"{coloured:.0%} of the pixels are clearly coloured, but {what} is grayscale: this may be a "
                     "photo, a screenshot or an annotated figure. The model never saw such images.")
    return found


def colour_fraction(source: Source) -> float:
    """Share of clearly coloured pixels (HSV saturation > 0.3 and value > 0.15) in the file, before gray conversion.

    The file is opened a second time with Pillow (the course's reader returns
    grayscale only), reduced to about 256 px; anything Pillow cannot open
    (DICOM, which is grayscale here) counts as 0.
    """
    try:
        with Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source) as image:
            image.draft("RGB", (256, 256))
            if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "F"):
                return 0.0
            image.thumbnail((256, 256))
            hsv = np.asarray(image.convert("RGB").convert("HSV"))
    except Exception:  # noqa: BLE001 - not readable by Pillow: no colour to measure
        return 0.0
    return float(np.mean((hsv[..., 1] > 0.3 * 255) & (hsv[..., 2] > 0.15 * 255)))
