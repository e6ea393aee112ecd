"""Reading chest X-rays and CT slices robustly, and caching them decoded and resized.

The canonical form of an image in this course is a 2-D ``uint8`` grayscale array.
:func:`read_image` turns any file we meet into that form (JPEG, PNG 8/16 bit,
TIFF, BMP, GIF, palette, RGBA, CMYK, EXIF-rotated, DICOM) or raises
:class:`ImageError` with a message that names the file, says what is wrong and
what to do; nothing else escapes it, whatever the file holds. Decisions, in one place:

- Colour becomes luma (ITU-R 601: ``L = 0.299 R + 0.587 G + 0.114 B``).
- Transparency is composited on black (``L * alpha / 255``): the air around a
  radiograph is black, so transparent borders stay dark.
- Images with more than 8 bits (16-bit PNG/TIFF, 32-bit, float) are stretched
  linearly from their own minimum..maximum to 0..255 (a 12-bit image stored in
  16 bits uses the whole 0..255 range); a constant image becomes 0. NaN and
  infinite pixels are left out of that range (NaN is shown black).
- The EXIF orientation tag is applied (phones store portrait photos sideways).
- DICOM is recognised by ``DICM`` at byte 128, whatever the file's name; any
  format Pillow knows is read as such, whatever its name (a PNG named ``.dcm``
  is a PNG). A file Pillow does not know counts as DICOM (an old one, without
  the preamble) only when named ``.dcm``/``.dicom``. pydicom applies its
  modality LUT (rescale slope/intercept) and then its first VOI LUT or window,
  mapped from the VOI's output range; without one, the file's own min..max is
  used. ``MONOCHROME1`` is inverted so that bone is always bright. Multi-frame
  files give their middle frame (only it is decoded).
- Multi-page GIF/TIFF give their first page.
- A truncated file is an error, not a partial image: a half-grey X-ray would
  silently teach the model nonsense. (This relies on Pillow's default
  ``ImageFile.LOAD_TRUNCATED_IMAGES = False``.)
- Before anything is decoded, the reader refuses what is not a regular file
  (a FIFO would block forever), files above :data:`MAX_FILE_BYTES` and images
  (or DICOM frames) above :data:`MAX_PIXELS`: decoding stays under about 1 GB.

Warnings: an image can be readable and still not worth a prediction. Pass a list
as ``read_image(path, warnings=found)`` and it receives one message per doubt,
each starting with the file's name: blank (constant), nearly blank (98% of the
pixels within a few grey levels), several pages or frames (which one was read),
NaN or infinite pixels. Nothing is appended for a normal image.

:func:`load_images` decodes a whole dataset in parallel (threads: Pillow
releases the GIL while decoding), resizes it to a square and caches the result
as one ``.npz`` under ``cache_dir("images")``. :func:`near_duplicate_groups`
finds near-identical images by a 256-bit perceptual hash.

Modules: ``reading`` (files, formats, warnings), ``raster`` (Pillow formats),
``dicom``, ``pixels`` (stretch, resize, to_rgb), ``limits`` (ImageError, sizes),
``cache`` (:func:`load_images`), ``duplicates``.
"""

from helpers.images.cache import ImageSet, cache_path, load_images
from helpers.images.duplicates import HASH_SIZE, near_duplicate_groups, perceptual_hash
from helpers.images.limits import MAX_FILE_BYTES, MAX_PIXELS, ImageError
from helpers.images.pixels import resize, to_rgb
from helpers.images.reading import READER_VERSION, Source, describe_non_image, read_image

__all__ = [
    "HASH_SIZE",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "READER_VERSION",
    "ImageError",
    "ImageSet",
    "Source",
    "cache_path",
    "describe_non_image",
    "load_images",
    "near_duplicate_groups",
    "perceptual_hash",
    "read_image",
    "resize",
    "to_rgb",
]
