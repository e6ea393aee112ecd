"""Issue 19: ``read_image`` survives any input: it raises ImageError naming the file, or reads it with warnings."""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib

import numpy as np
import pytest
from image_files import DICOM_PIXELS, encode, make_dicom, png_header_only, ramp
from PIL import Image

from helpers.images import MAX_PIXELS, ImageError, raster, read_image
from helpers.images.limits import check_pixels


def read_with_warnings(source, **options) -> tuple[np.ndarray, list[str]]:
    found: list[str] = []
    return read_image(source, warnings=found, **options), found


# ---------------------------------------------------------------- not a regular file


@pytest.mark.timeout(30)  # the bug this guards against was a reader blocked forever
def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"scan\.png: not a regular file but a named pipe \(FIFO\)"):
        read_image(fifo)


def test_a_device_and_a_socket_are_refused(tmp_path):
    with pytest.raises(ImageError, match=r"^/dev/null: not a regular file but a character device"):
        read_image("/dev/null")
    path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(ImageError, match=r"not a regular file but a socket"):
            read_image(path)


def test_an_impossible_path_is_an_image_error():
    with pytest.raises(ImageError, match=r"cannot read the file \(.*null"):
        read_image("scan\x00.png")
    with pytest.raises(ImageError, match=r"cannot read the file \(File name too long\)"):
        read_image("x" * 5000 + ".png")


# ---------------------------------------------------------------- too large, refused before decoding


def huge_png(width: int, height: int) -> bytes:
    """A valid RGB PNG header and the start of its (zero) pixel data: a few kB that claim gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(bytes((3 * width + 1) * 16))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_huge_png_small_on_disk_is_refused_by_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png(20000, 20000))
    assert path.stat().st_size < 10_000
    with pytest.raises(ImageError, match=r"bomb\.png: image too large .*the reader's limit is 50 Mpx: downscale it first"):
        read_image(path)  # 400 Mpx: Pillow's own bomb check fires when the header is opened
    path.write_bytes(huge_png(9000, 9000))  # 81 Mpx: below Pillow's check, above ours
    with pytest.raises(ImageError, match=r"image is 9000x9000 \(81 Mpx\), above the reader's limit of 50 Mpx"):
        read_image(path)


def test_the_pixel_limit_is_inclusive():
    check_pixels("x.png", MAX_PIXELS // 2, 2)
    with pytest.raises(ImageError, match=r"^x\.png: image is"):
        check_pixels("x.png", MAX_PIXELS // 2 + 1, 2)
    with pytest.raises(ImageError, match=r"^x\.png: the header says 0x5 pixels; the file is damaged"):
        check_pixels("x.png", 0, 5)


def test_a_huge_dicom_frame_is_refused_before_its_pixels_are_decoded():
    data = make_dicom(DICOM_PIXELS, Rows=8000, Columns=8000)
    with pytest.raises(ImageError, match=r"ct\.dcm: DICOM frame is 8000x8000 \(64 Mpx\), above the reader's limit"):
        read_image(data, name="ct.dcm")


def test_a_multi_frame_dicom_gives_its_middle_frame_and_says_so():
    frames = np.stack([np.full((2, 2), 1000 * k, np.uint16) for k in range(3)]) + np.array([[0, 1], [2, 3]], np.uint16)
    data = make_dicom(frames.reshape(6, 2), NumberOfFrames=3, Rows=2, Columns=2)
    gray, found = read_with_warnings(data, name="ct.dcm")
    assert gray.tolist() == [[0, 85], [170, 255]]  # frame 2 of 3: 1000..1003 stretched
    assert found == ["ct.dcm: DICOM with 3 frames: only frame 2 (the middle one) was read"]


# ---------------------------------------------------------------- any failure is an ImageError


@pytest.mark.parametrize("keyword, values", [
    ("RescaleSlope", [1, 2]), ("RescaleIntercept", [0, -1024]), ("Rows", [2, 2]), ("SamplesPerPixel", [1, 1]),
    ("BitsStored", [12, 16]), ("PhotometricInterpretation", ["MONOCHROME2", "MONOCHROME1"]),
])
def test_a_multi_valued_element_that_allows_one_value_is_an_image_error(keyword, values):
    data = make_dicom(DICOM_PIXELS, **{"RescaleSlope": 1, "RescaleIntercept": 0, keyword: values})
    with pytest.raises(ImageError, match=rf"^ct\.dcm: its {keyword} holds 2 values where DICOM allows one"):
        read_image(data, name="ct.dcm")


def test_multi_valued_windows_of_different_lengths_use_the_first():
    data = make_dicom(DICOM_PIXELS, WindowCenter=[1000, 0, 5], WindowWidth=[2000])
    assert read_image(data).tolist() == [[0, 128], [255, 255]]


def test_a_window_pydicom_rejects_is_an_image_error():
    data = make_dicom(DICOM_PIXELS, WindowCenter=100, WindowWidth=0)  # LINEAR needs a width of 1 or more
    with pytest.raises(ImageError, match=r"^ct\.dcm: cannot decode this DICOM file \(ValueError: .*Window Width"):
        read_image(data, name="ct.dcm")


@pytest.mark.parametrize("error", [TypeError("bad"), KeyError("x"), ZeroDivisionError(), MemoryError()])
def test_any_exception_inside_a_decoder_becomes_an_image_error_naming_the_file(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(raster, "decode", fail)
    with pytest.raises(ImageError, match=r"^x\.png: (cannot decode it|not enough memory)"):
        read_image(encode(Image.fromarray(ramp()), "PNG"), name="x.png")


# ---------------------------------------------------------------- the format comes from the bytes


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_an_image_named_dcm_is_read_as_what_it_is(tmp_path, fmt):
    path = tmp_path / "scan.dcm"
    path.write_bytes(encode(Image.fromarray(ramp()), fmt, quality=95))
    assert np.abs(read_image(path).astype(int) - ramp()).max() < 8


def test_a_dicom_named_png_is_read_as_dicom(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(make_dicom(DICOM_PIXELS))
    assert read_image(path).tolist() == [[0, 64], [128, 255]]


def test_a_damaged_png_header_is_called_so():
    data = bytearray(encode(Image.fromarray(ramp()), "PNG"))
    data[12:16] = b"IHDX"  # the first chunk is no longer IHDR
    with pytest.raises(ImageError, match=r"^x\.png: damaged PNG \(the header is broken"):
        read_image(bytes(data), name="x.png")


def test_a_damaged_jpeg_header_is_called_so():
    with pytest.raises(ImageError, match=r"^x\.jpg: damaged JPEG \(the header is broken"):
        read_image(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, name="x.jpg")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow: "Corrupt EXIF data" in the cut TIFF
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF"])
def test_an_image_cut_inside_its_header_is_called_damaged(fmt):
    data = encode(Image.fromarray(ramp()), fmt)
    with pytest.raises(ImageError, match=rf"^x: damaged {fmt} \(the header is broken"):
        read_image(data[:20], name="x")


@pytest.mark.parametrize("kind", ["truncated", "zeros", "noise"])
def test_a_dcm_without_an_image_says_so(kind):
    contents = {"zeros": lambda: bytes(5000), "noise": lambda: np.random.default_rng(0).bytes(5000),
                "truncated": lambda: make_dicom(DICOM_PIXELS)[:200]}
    data = contents[kind]()
    with pytest.raises(ImageError, match=r"^ct\.dcm: a DICOM file without an image \(no Rows, Columns or Pixel Data"):
        read_image(data, name="ct.dcm")


# ---------------------------------------------------------------- readable, with warnings


def test_a_normal_image_has_no_warnings():
    assert read_with_warnings(encode(Image.fromarray(ramp()), "PNG"))[1] == []


@pytest.mark.parametrize("value, dtype", [(0, np.uint8), (255, np.uint8), (700, np.uint16)])
def test_a_constant_image_is_read_and_called_blank(value, dtype):
    gray, found = read_with_warnings(encode(Image.fromarray(np.full((64, 64), value, dtype)), "PNG"), name="x.png")
    assert gray.shape == (64, 64)
    assert len(found) == 1 and found[0].startswith("x.png: blank image: every pixel is")


def test_warnings_are_only_collected_when_asked():
    assert read_image(encode(Image.new("L", (8, 8)), "PNG")).shape == (8, 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_nearly_black_image_is_called_nearly_blank(seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 6, (100, 100), np.uint8)
    pixels[:3, :10] = 255  # a small white label: under 1% of the pixels
    found = read_with_warnings(encode(Image.fromarray(pixels), "PNG"))[1]
    assert len(found) == 1 and "nearly blank image: 98% of its pixels lie between grey levels 0 and 5" in found[0]


def test_a_multi_page_tiff_with_a_blank_first_page_says_both():
    pages = [Image.new("L", (32, 32), 0), Image.fromarray(ramp(32, 32)), Image.fromarray(ramp(32, 32))]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    gray, found = read_with_warnings(buffer.getvalue(), name="x.tif")
    assert (gray == 0).all()
    assert found[0] == "x.tif: TIFF with 3 pages or frames: only page 1 was read"
    assert "blank image" in found[1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_pixel_no_longer_flattens_a_float_tiff(bad):
    pixels = np.linspace(0.0, 1.0, 32 * 48, dtype=np.float32).reshape(32, 48)
    expected = np.rint(pixels * 255).astype(np.uint8)
    pixels[5, 5] = bad
    gray, found = read_with_warnings(encode(Image.fromarray(pixels), "TIFF"), name="x.tif")
    assert gray[5, 5] == (255 if bad == np.inf else 0)
    gray[5, 5] = expected[5, 5]
    assert np.abs(gray.astype(int) - expected).max() <= 1
    assert found == ["x.tif: 1 pixel(s) are NaN or infinite: left out of the contrast stretch and shown black "
                     "(NaN) or clipped (infinity); check how the file was exported"]


def test_an_all_nan_image_is_blank_not_an_error():
    gray, found = read_with_warnings(encode(Image.fromarray(np.full((4, 4), np.nan, np.float32)), "TIFF"))
    assert (gray == 0).all() and "16 pixel(s) are NaN" in found[0] and "blank image" in found[1]


def test_the_header_only_png_helper_still_claims_its_size():
    with Image.open(io.BytesIO(png_header_only(123, 45))) as image:
        assert image.size == (123, 45)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage it tolerates
@pytest.mark.parametrize("seed", range(3))
def test_damaged_dicom_bytes_give_an_image_or_an_image_error_never_another_exception(seed):
    data = make_dicom(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), RescaleSlope=1, RescaleIntercept=-1024,
                      WindowCenter=40, WindowWidth=400)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        damaged = bytearray(data)
        for position in rng.integers(128, 400, 4):  # the preamble stays, the elements after it are hit
            damaged[position] = rng.integers(0, 256)
        try:
            gray = read_image(bytes(damaged[: int(rng.integers(132, len(damaged) + 1))]), name="ct.dcm")
        except ImageError as error:
            assert str(error).startswith("ct.dcm: ")
        else:
            assert gray.dtype == np.uint8 and gray.ndim == 2
