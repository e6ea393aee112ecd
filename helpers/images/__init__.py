"""Reading chest X-rays and CT slices robustly, and caching them decoded and resized.

The canonical form of an image in this course is a 2-D ``uint8`` grayscale array.
:func:`read_image` turns any file we meet into that form (JPEG, PNG 8/16 bit,
TIFF, BMP, GIF, palette, RGBA, CMYK, EXIF-rotated, DICOM) or raises
:class:`ImageError` with a message that names the file, says what is wrong and
what to do. Decisions, in one place:

- Colour becomes luma (ITU-R 601: ``L = 0.299 R + 0.587 G + 0.114 B``).
- Transparency is composited on black (``L * alpha / 255``): the air around a
  radiograph is black, so transparent borders stay dark.
- Images with more than 8 bits (16-bit PNG/TIFF, 32-bit, float) are stretched
  linearly from their own minimum..maximum to 0..255 (a 12-bit image stored in
  16 bits uses the whole 0..255 range); a constant image becomes 0.
- The EXIF orientation tag is applied (phones store portrait photos sideways).
- DICOM: rescale slope/intercept, then the first window (centre/width) when the
  file has one, else its own min..max; ``MONOCHROME1`` is inverted so that bone
  is always bright. Multi-frame files give their middle frame.
- Multi-frame GIF/TIFF give their first frame.
- A truncated file is an error, not a partial image: a half-grey X-ray would
  silently teach the model nonsense. (This relies on Pillow's default
  ``ImageFile.LOAD_TRUNCATED_IMAGES = False``.)
- Images up to :data:`MAX_PIXELS` (400 Mpx, e.g. 20000 x 20000) are read;
  importing this module raises Pillow's decompression-bomb limit to that value
  (it never lowers it). Larger ones raise :class:`ImageError`.

:func:`load_images` decodes a whole dataset in parallel (threads: Pillow
releases the GIL while decoding), resizes it to a square and caches the result
as one ``.npz`` under ``cache_dir("images")``. :func:`near_duplicate_groups`
finds near-identical images by a 256-bit perceptual hash.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from helpers.files import atomic_write
from helpers.paths import cache_file

READER_VERSION = 1  # bump whenever read_image/resize change their output: old caches are then ignored
MAX_PIXELS = 400_000_000  # 20000 x 20000
DICOM_SUFFIXES = (".dcm", ".dicom")

if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

Source = str | os.PathLike | bytes | bytearray | memoryview


class ImageError(ValueError):
    """A file that cannot be read as an image; the message names it and says what to do."""


# ---------------------------------------------------------------- reading one image


def read_image(source: Source, *, name: str | None = None, reduce_to: int | None = None) -> np.ndarray:
    """Decode ``source`` (a path or the file's bytes) to a 2-D ``uint8`` grayscale array.

    ``name`` is used in error messages (default: the path, or ``"<bytes>"``).
    ``reduce_to`` lets large images come back smaller (JPEG decodes at 1/2, 1/4
    or 1/8 scale, others are box-reduced) while both sides stay at least
    ``reduce_to`` pixels: pass the size you will resize to. Default: full size.
    """
    data, name = _read_bytes(source, name)
    if _is_dicom(data, name):
        gray = _decode_dicom(data, name)
    else:
        gray = _decode_pillow(data, name, reduce_to=reduce_to)
    return _reduce(gray, reduce_to)


def _read_bytes(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "<bytes>"
    else:
        name = name or str(source)
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{name}: file not found; check the dataset folder or fetch it again") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(
            f"{name}: empty file (0 bytes), probably an interrupted download; delete it and fetch it again"
        )
    return data, name


def _is_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def _decode_pillow(data: bytes, name: str, *, reduce_to: int | None) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{name}: {describe_non_image(data)}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{name}: image too large ({exc}); downscale it below {MAX_PIXELS // 10**6} Mpx first"
        ) from None
    except Exception as exc:  # Pillow raises many types on a damaged header or an unsupported variant
        raise ImageError(
            f"{name}: cannot open it ({type(exc).__name__}: {exc}); the file is damaged or uses an encoding "
            "Pillow does not support: fetch it again, or convert it to PNG"
        ) from exc
    with image:
        _check_size(image, name)
        if image.format == "JPEG":
            image.draft("L", (reduce_to, reduce_to) if reduce_to else None)
        try:
            image.load()
        except MemoryError:
            raise ImageError(f"{name}: not enough memory to decode a {image.width}x{image.height} image") from None
        except Exception as exc:
            raise ImageError(
                f"{name}: truncated or corrupt {image.format or 'image'} data ({exc}); the file is incomplete "
                "or damaged, fetch it again"
            ) from exc
        try:
            return _to_gray(_upright(image))
        except ValueError as exc:
            raise ImageError(f"{name}: unsupported colour mode {image.mode} ({exc}); convert it to PNG") from exc


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a damaged EXIF block is ignored rather than losing the image."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: the header says {width}x{height} pixels; the file is damaged")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: image is {width}x{height} ({width * height / 1e6:.0f} Mpx), above the limit of "
            f"{MAX_PIXELS / 1e6:.0f} Mpx; downscale it first"
        )


def _to_gray(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> 2-D uint8 (see the module docstring for the rules), writable."""
    if image.mode in ("1", "L"):
        return np.array(image.convert("L"))
    if image.mode.startswith(("I", "F")):
        return _stretch(np.asarray(image))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return np.array(ImageChops.multiply(rgba.convert("L"), rgba.getchannel("A")))
    if image.mode == "RGB":
        return np.array(image.convert("L"))
    return np.array(image.convert("RGB").convert("L"))  # P, CMYK, YCbCr, LAB, HSV, ...


def _stretch(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map ``low..high`` (default: the array's own min..max) linearly to 0..255, clipping outside."""
    values = np.nan_to_num(values.astype(np.float32), copy=False)
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _reduce(gray: np.ndarray, reduce_to: int | None) -> np.ndarray:
    """Box-reduce by an integer factor so that both sides stay >= ``reduce_to``."""
    factor = min(gray.shape) // reduce_to if reduce_to else 1
    if factor < 2:
        return gray
    return np.array(Image.fromarray(gray).reduce(factor))


def describe_non_image(data: bytes) -> str:
    """Say what a file that is not a readable image looks like (PDF, HTML, text, ...)."""
    head = data[:512]
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


def _decode_dicom(data: bytes, name: str) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise ImageError(f"{name}: DICOM files need pydicom; pip install pydicom") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        pixels = ds.pixel_array
    except Exception as exc:
        raise ImageError(
            f"{name}: cannot decode this DICOM file ({exc}); if it is compressed, "
            "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
        ) from exc
    return _dicom_to_gray(ds, pixels)


def _dicom_to_gray(ds, pixels: np.ndarray) -> np.ndarray:
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        pixels = pixels @ np.array([0.299, 0.587, 0.114])
    if pixels.ndim == 3:
        pixels = pixels[len(pixels) // 2]
    values = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        gray = _stretch(values, center - width / 2, center + width / 2)
    else:
        gray = _stretch(values)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        gray = 255 - gray
    return gray


def _first(value) -> float | None:
    """The first value of a DICOM element that may hold one or several numbers, or None."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    return None if value in (None, "") else float(value)


# ---------------------------------------------------------------- channels and size


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


# ---------------------------------------------------------------- a whole dataset, cached


@dataclass
class ImageSet:
    """Decoded images of a dataset: ``images[i]`` belongs to ``manifest.iloc[i]``."""

    images: np.ndarray  # uint8, N x size x size
    manifest: pd.DataFrame  # the rows kept, in order, index reset
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message) of skipped files
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.images)


def cache_path(dataset, size: int) -> Path:
    """The cache file of ``dataset`` at ``size``: named from its name, key, the size and READER_VERSION."""
    return cache_file("images", dataset.name, dataset.key, f"{size}px", f"r{READER_VERSION}")


def load_images(
    dataset, size: int, *, workers: int | None = None, progress: bool = True, refresh: bool = False
) -> ImageSet:
    """Decode every image of ``dataset`` resized to ``size x size``, from the cache when possible.

    ``dataset`` needs ``name``, ``root``, ``key`` and ``manifest`` (column
    ``path`` relative to ``root``). Unreadable files are skipped and listed in
    ``errors``; they never stop the dataset. The result is cached; the cache is
    reused only for the same name, key, size and reader version (``refresh=True``
    decodes again, e.g. after you replaced a broken file without changing the
    manifest). ``workers`` threads decode in parallel (default: Python's, CPUs + 4 up to 32).
    """
    path = cache_path(dataset, size)
    manifest = dataset.manifest.reset_index(drop=True)
    if path.exists() and not refresh:
        cached = _read_cache(path, manifest)
        if cached is not None:
            skipped = f"; skipped {len(cached.errors)} unreadable (see .errors)" if cached.errors else ""
            print(f"images: loaded {len(cached)} cached {size}px images (cache hit{skipped}) from {path.name}")
            return cached
    started = time.perf_counter()
    images, kept, errors = _decode_all(
        Path(dataset.root), list(manifest["path"]), size, workers=workers, progress=progress
    )
    image_set = ImageSet(images, manifest.iloc[kept].reset_index(drop=True), errors)
    _write_cache(path, image_set, kept)
    skipped = f", skipped {len(errors)} unreadable (see .errors)" if errors else ""
    print(
        f"images: decoded {len(images)} images at {size}px in {time.perf_counter() - started:.1f} s"
        f"{skipped}; cached to {path.name}"
    )
    return image_set


def _decode_all(
    root: Path, paths: list[str], size: int, *, workers: int | None, progress: bool
) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    from tqdm.auto import tqdm

    images = np.zeros((len(paths), size, size), np.uint8)
    kept, errors = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda rel: _load_one(root / rel, rel, size), paths)
        bar = tqdm(zip(paths, results, strict=True), total=len(paths), desc="images", unit="img", disable=not progress)
        for index, (rel, (image, error)) in enumerate(bar):
            if error is None:
                images[len(kept)] = image
                kept.append(index)
            else:
                errors.append((rel, error))
    return images[: len(kept)], kept, errors


def _load_one(path: Path, rel: str, size: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return resize(read_image(path, name=rel, reduce_to=size), size), None
    except ImageError as exc:
        return None, str(exc)


def _write_cache(path: Path, image_set: ImageSet, kept: list[int]) -> None:
    """Write the cache under a temporary name, then rename: a crash never leaves a half file."""
    errors = image_set.errors
    with atomic_write(path) as file:
        np.savez(
            file,
            images=image_set.images,
            kept=np.asarray(kept, np.int64),
            rows=len(image_set.manifest) + len(errors),
            paths=np.asarray(image_set.manifest["path"], dtype=str),
            error_paths=np.asarray([p for p, _ in errors], dtype=str),
            error_messages=np.asarray([m for _, m in errors], dtype=str),
        )


def _read_cache(path: Path, manifest: pd.DataFrame) -> ImageSet | None:
    """The cached ImageSet, or None when the file is unreadable or does not match the manifest."""
    try:
        with np.load(path) as npz:
            images, kept, paths, rows = npz["images"], npz["kept"], npz["paths"], int(npz["rows"])
            errors = list(zip(npz["error_paths"].tolist(), npz["error_messages"].tolist(), strict=True))
    except Exception:
        return None
    if rows != len(manifest):
        return None
    rows = manifest.iloc[kept].reset_index(drop=True)
    if len(images) != len(rows) or paths.tolist() != rows["path"].tolist():
        return None
    return ImageSet(images, rows, errors, from_cache=True)


# ---------------------------------------------------------------- near-duplicates


HASH_SIZE = 16  # phash of 16 x 16 = 256 bits: chest X-rays all look alike, 64 bits cannot tell them apart


def perceptual_hash(gray: np.ndarray) -> np.ndarray:
    """The 256-bit perceptual hash (``imagehash.phash``, 16 x 16) of a grayscale image, as 256 booleans."""
    import imagehash

    return imagehash.phash(Image.fromarray(gray), hash_size=HASH_SIZE).hash.ravel()


def near_duplicate_groups(
    root: Path, paths: Iterable[str], *, max_distance: int = 32, workers: int | None = None
) -> list[list[int]]:
    """Groups (2+ members) of indices into ``paths`` whose images look alike.

    Two images are linked when their perceptual hashes differ in at most
    ``max_distance`` of 256 bits; groups are the connected sets of links.
    The default (12 %) finds copies that were resized, recompressed or
    contrast-adjusted (0..22 bits apart in ``kermany-mini``), while unrelated
    chest X-rays lie 60+ bits apart; the same study cropped differently
    (40..90 bits) is often missed. Unreadable files belong to no group.
    Groups and their members are sorted.
    """
    paths = list(paths)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(pool.map(lambda rel: _hash_file(Path(root) / rel, rel), paths))
    readable = [i for i, h in enumerate(hashes) if h is not None]
    if not readable:
        return []
    groups = _connected(np.stack([hashes[i] for i in readable]), max_distance)
    return sorted(sorted(readable[i] for i in group) for group in groups if len(group) > 1)


def _connected(bits: np.ndarray, max_distance: int, *, block: int = 512) -> list[list[int]]:
    """Connected components of "Hamming distance <= max_distance" between the rows of ``bits`` (N x B bool).

    With bits as +-1, a dot product is ``B - 2 * distance``: a block of rows at a
    time against all rows is one matrix product (20,000 hashes take seconds).
    """
    signs = np.where(bits, 1.0, -1.0).astype(np.float32)
    parent = list(range(len(bits)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(bits), block):
        agreement = signs[start : start + block] @ signs.T
        for i, j in zip(*np.nonzero(agreement >= bits.shape[1] - 2 * max_distance), strict=True):
            if j > i + start:
                parent[find(int(j))] = find(int(i) + start)
    components: dict[int, list[int]] = {}
    for i in range(len(bits)):
        components.setdefault(find(i), []).append(i)
    return list(components.values())


def _hash_file(path: Path, rel: str) -> np.ndarray | None:
    try:
        return perceptual_hash(read_image(path, name=rel, reduce_to=4 * HASH_SIZE))
    except ImageError:
        return None
