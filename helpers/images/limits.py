"""What the reader refuses before decoding, and the error it raises: :class:`ImageError` and the size limits.

The limits keep the reader's peak memory under about 1 GB whatever the file claims:
a 1 MB PNG can say it is 20000 x 20000 pixels and would take gigabytes to decode.
"""

from __future__ import annotations

MAX_PIXELS = 50_000_000  # about 7000 x 7000; the largest chest X-rays are about 4300 x 4300 (18 Mpx)
MAX_FILE_BYTES = 256 * 2**20  # an uncompressed 50 Mpx float TIFF is 200 MB


class ImageError(ValueError):
    """A file that cannot be read as an image; the message names it and says what to do."""


def check_pixels(name: str, width: int, height: int, *, what: str = "image") -> None:
    """Refuse a header that claims no pixels, or more than :data:`MAX_PIXELS` (before anything is decoded)."""
    if width < 1 or height < 1:
        raise ImageError(f"{name}: the header says {width}x{height} pixels; the file is damaged")
    pixels = width * height
    if pixels > MAX_PIXELS:
        raise ImageError(
            f"{name}: {what} is {width}x{height} ({pixels / 1e6:.0f} Mpx), above the reader's limit of "
            f"{MAX_PIXELS / 1e6:.0f} Mpx (which keeps its memory under about 1 GB); downscale it first"
        )
