"""Grayscale pixel arrays: the contrast stretch, what looks wrong in an image, channels and size."""

from __future__ import annotations

import numpy as np
from PIL import Image

NEAR_BLANK_LEVELS = 16  # 98% of a real radiograph's pixels span far more than 16 of the 256 grey levels


def stretch(values: np.ndarray, found: list[str], low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map ``low..high`` (default: the finite pixels' own min..max) linearly to 0..255, clipping outside.

    NaN becomes 0 and infinities clip to 0 or 255; they are counted in ``found``, and left out of the
    range so that one NaN no longer turns the whole image flat grey. A constant image becomes 0.
    """
    values = np.asarray(values, np.float32)
    finite = np.isfinite(values)
    bad = values.size - int(np.count_nonzero(finite))
    if bad:
        found.append(f"{bad} pixel(s) are NaN or infinite: left out of the contrast stretch and shown black "
                     "(NaN) or clipped (infinity); check how the file was exported")
        values = np.where(finite | np.isinf(values), values, np.float32("-inf"))
    if low is None or high is None:
        kept = values[finite] if bad else values
        low = float(kept.min()) if kept.size else 0.0
        high = float(kept.max()) if kept.size else 0.0
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    values = values - np.float32(low)
    values *= np.float32(255.0 / (high - low))
    return np.clip(np.rint(values, out=values), 0, 255, out=values).astype(np.uint8)


def content_warnings(gray: np.ndarray) -> list[str]:
    """Why a decoded image may not be a usable radiograph: blank (constant) or nearly blank."""
    counts = np.bincount(gray.ravel(), minlength=256)
    levels = np.flatnonzero(counts)
    if len(levels) == 1:
        return [f"blank image: every pixel is {levels[0]} (a failed export or an empty scan?); "
                "a prediction on it means nothing"]
    share = np.cumsum(counts) / gray.size
    low, high = (int(level) for level in np.searchsorted(share, [0.01, 0.99]))
    if high - low < NEAR_BLANK_LEVELS:
        return [f"nearly blank image: 98% of its pixels lie between grey levels {low} and {high} of 255 "
                "(too dark, too bright or flat); check the file before trusting a prediction"]
    return []


def reduce(gray: np.ndarray, reduce_to: int | None) -> np.ndarray:
    """Box-reduce by an integer factor so that both sides stay >= ``reduce_to``."""
    factor = min(gray.shape) // reduce_to if reduce_to else 1
    if factor < 2:
        return gray
    return np.array(Image.fromarray(gray).reduce(factor))


def to_rgb(gray: np.ndarray) -> np.ndarray:
    """Repeat a 2-D grayscale image into ``H x W x 3`` (what the models take)."""
    if gray.ndim != 2:
        raise ValueError(f"to_rgb expects a 2-D grayscale array, got shape {gray.shape}")
    return np.repeat(gray[:, :, None], 3, axis=2)


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size x size`` (``uint8``), ignoring the aspect ratio.

    A plain resize to a square, as in most published work: a chest X-ray fills
    its frame, so padding would only waste pixels. Pillow's bilinear filter
    widens with the reduction factor (it is antialiased, unlike OpenCV's), and
    ``reducing_gap`` first box-reduces very large images, which is much faster.
    """
    image = Image.fromarray(np.asarray(gray, np.uint8))
    return np.array(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
