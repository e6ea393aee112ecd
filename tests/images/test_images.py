"""helpers.images: the robust reader, resize, the dataset cache and near-duplicates."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from image_files import encode, png_header_only, ramp
from PIL import Image, ImageFilter

from helpers import images, paths
from helpers.images import (
    ImageError,
    cache_path,
    load_images,
    near_duplicate_groups,
    read_image,
    resize,
    to_rgb,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
ORIENTATION = 0x0112  # the EXIF tag











# ---------------------------------------------------------------- real files


def real_files(shared_data: Path) -> list[Path]:
    return sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def test_every_real_file_decodes_to_2d_uint8_of_its_upright_size(shared_data):
    files = real_files(shared_data)
    assert len(files) > 200
    for path in files:
        gray = read_image(path)
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):  # stored sideways
                width, height = height, width
        assert gray.dtype == np.uint8 and gray.shape == (height, width), path


def test_real_files_give_no_warnings(shared_data):
    """The near-blank check leaves real X-rays alone: their 1st..99th percentiles span 111+ grey levels, not 16."""
    found: list[str] = []
    for path in real_files(shared_data):
        read_image(path, warnings=found)
    assert found == []


def test_real_rgba_png_and_grayscale_jpeg(shared_data):
    modes = {}
    for path in real_files(shared_data):
        with Image.open(path) as image:
            modes.setdefault(image.mode, path)
    assert {"RGBA", "RGB", "L"} <= set(modes)
    for path in modes.values():
        gray = read_image(path)
        assert gray.ndim == 2 and 0 < gray.mean() < 255


def test_bytes_and_path_give_the_same_pixels(shared_data):
    path = real_files(shared_data)[0]
    gray = read_image(path)
    assert np.array_equal(read_image(path.read_bytes()), gray)
    assert gray.flags.writeable and resize(gray, 8).flags.writeable


def test_reduce_to_keeps_both_sides_at_least_the_target(shared_data):
    path = shared_data / "kermany-mini" / "NORMAL" / "b-IM9.jpeg"  # 1024 x 912
    gray = read_image(path, reduce_to=224)
    assert 224 <= min(gray.shape) < 456
    assert gray.shape[0] * 1024 == pytest.approx(gray.shape[1] * 912, rel=0.02)


# ---------------------------------------------------------------- generated files: modes


def test_grayscale_png_round_trips_exactly():
    pixels = ramp()
    assert np.array_equal(read_image(encode(Image.fromarray(pixels), "PNG")), pixels)


def test_rgb_becomes_luma():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: L = 0.299 * 255
    assert read_image(encode(Image.fromarray(rgb), "PNG")).max() == 76


def test_rgba_is_composited_on_black():
    rgba = np.full((4, 4, 4), 200, np.uint8)
    rgba[:, :, 3] = 255
    rgba[:, :2, 3] = 0  # left half transparent
    gray = read_image(encode(Image.fromarray(rgba), "PNG"))
    assert (gray[:, :2] == 0).all() and (gray[:, 2:] == 200).all()


def test_la_is_composited_on_black():
    image = Image.merge("LA", [Image.new("L", (4, 4), 180), Image.new("L", (4, 4), 128)])
    assert (read_image(encode(image, "PNG")) == 90).all()


def test_palette_image_uses_its_palette():
    image = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), mode="P")
    image.putpalette([0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255])
    assert read_image(encode(image, "PNG")).tolist() == [[0, 100], [200, 255]]


def test_palette_with_transparency_is_composited_on_black():
    image = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    image.putpalette([255, 255, 255, 100, 100, 100])
    assert read_image(encode(image, "PNG", transparency=0)).tolist() == [[0, 100]]


def test_cmyk_jpeg():
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, 8:, 3] = 255  # right half: full black ink
    gray = read_image(encode(Image.fromarray(cmyk, mode="CMYK"), "JPEG", quality=95))
    assert gray.shape == (16, 16)
    assert gray[:, :6].min() > 240 and gray[:, 10:].max() < 15


def test_16_bit_png_is_stretched_from_its_own_range():
    pixels = np.linspace(1000, 5000, 64 * 64).reshape(64, 64).astype(np.uint16)  # 12-bit data in 16 bits
    gray = read_image(encode(Image.fromarray(pixels), "PNG"))
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    assert (np.diff(gray.ravel().astype(int)) >= 0).all()  # monotonic: no clipping, no wrap-around


def test_16_bit_tiff():
    pixels = np.array([[0, 30000], [60000, 65535]], np.uint16)
    assert read_image(encode(Image.fromarray(pixels), "TIFF")).tolist() == [[0, 117], [233, 255]]


def test_constant_16_bit_image_becomes_zero():
    assert (read_image(encode(Image.fromarray(np.full((3, 3), 700, np.uint16)), "PNG")) == 0).all()


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(Image.fromarray(ramp(32, 48)), "JPEG", exif=exif, quality=95)
    gray = read_image(data)
    assert gray.shape == (48, 32)
    assert abs(int(gray[0, -1]) - int(ramp()[0, 0])) < 8  # the stored top-left corner is now top-right


def test_one_pixel_image_is_returned_as_is():
    assert read_image(encode(Image.new("L", (1, 1), 77), "PNG")).tolist() == [[77]]


def test_large_png_is_box_reduced_when_asked():
    data = encode(Image.new("L", (3000, 2000), 50), "PNG")
    assert read_image(data, reduce_to=224).shape == (250, 375)
    assert read_image(data).shape == (2000, 3000)


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    pixels = np.zeros((10000, 10000), np.uint8)
    pixels[:, 5000:] = 200
    return encode(Image.fromarray(pixels), "JPEG", quality=50)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_10000_px_jpeg_is_read_at_reduced_scale(huge_jpeg):
    gray = read_image(huge_jpeg, reduce_to=224)
    assert gray.shape == (250, 250)  # decoded at 1/8 scale by libjpeg
    assert gray[:, :100].max() < 10 and gray[:, 150:].min() > 190


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_10000_px_jpeg_is_refused_in_full_before_decoding(huge_jpeg):
    with pytest.raises(ImageError, match=r"image is 10000x10000 \(100 Mpx\), above the reader's limit of 50 Mpx"):
        read_image(huge_jpeg)


def test_images_above_the_pixel_limit_are_refused_clearly():
    with pytest.raises(
        ImageError, match=r"^huge\.png: image is 8000x8000 \(64 Mpx\), above the reader's limit of 50 Mpx .*downscale"
    ):
        read_image(png_header_only(8000, 8000), name="huge.png")
    with pytest.raises(ImageError, match=r"^huge\.png: image too large .*the reader's limit is 50 Mpx: downscale it first"):
        read_image(png_header_only(30000, 30000), name="huge.png")


# ---------------------------------------------------------------- generated files: errors


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"empty file \(0 bytes\).*fetch it again"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", r"not an image: looks like a PDF"),
        (b"patient,label\n1,COVID\n", r"not an image: looks like text \('patient,label"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", r"looks like an HTML page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", r"Git LFS pointer"),
        (bytes(range(256)) * 4, r"unsupported or unrecognised image format"),
    ],
    ids=["zero-byte", "pdf", "text", "html", "git-lfs", "binary"],
)
def test_not_an_image_named_png(tmp_path, content, message):
    path = tmp_path / "scan.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_truncated_jpeg_is_an_error_not_a_partial_image(tmp_path):
    data = encode(Image.fromarray(ramp(256, 256)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated or corrupt JPEG data.*fetch it again"):
        read_image(path)


def test_truncated_png_is_an_error(tmp_path):
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)), "PNG")
    with pytest.raises(ImageError, match=r"x\.png: truncated or corrupt PNG data"):
        read_image(data[: len(data) // 2], name="x.png")


def test_corrupt_header_is_an_error():
    data = bytearray(encode(Image.fromarray(ramp()), "PNG"))
    data[16:24] = b"\xff" * 8  # width and height in IHDR
    with pytest.raises(ImageError, match=r"bad\.png: "):
        read_image(bytes(data), name="bad.png")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF it skips
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "BMP", "GIF"])
def test_damaged_bytes_give_an_image_or_an_image_error_never_another_exception(fmt):
    data = encode(Image.fromarray(ramp(64, 64)), fmt)
    rng = np.random.default_rng(0)
    for _ in range(40):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), 4):
            damaged[position] = rng.integers(0, 256)
        cut = int(rng.integers(1, len(damaged) + 1))
        try:
            gray = read_image(bytes(damaged[:cut]), name=f"damaged.{fmt.lower()}")
        except ImageError as error:
            assert str(error).startswith(f"damaged.{fmt.lower()}: ")
        else:
            assert gray.dtype == np.uint8 and gray.ndim == 2


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match=r"not a regular file but a folder"):
        read_image(tmp_path)


def test_bytes_without_a_name_say_so():
    with pytest.raises(ImageError, match=r"^<bytes>: empty file"):
        read_image(b"")


# ---------------------------------------------------------------- channels and size


def test_to_rgb_repeats_the_channel():
    gray = ramp()
    rgb = to_rgb(gray)
    assert rgb.shape == (*gray.shape, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], gray) for c in range(3))
    with pytest.raises(ValueError, match="2-D"):
        to_rgb(rgb)


@pytest.mark.parametrize("shape", [(1, 1), (30, 70), (1000, 600)])
def test_resize_gives_a_uint8_square(shape):
    out = resize(np.full(shape, 90, np.uint8), 64)
    assert out.shape == (64, 64) and out.dtype == np.uint8 and (out == 90).all()


# ---------------------------------------------------------------- load_images and its cache


@pytest.fixture
def fake_dataset(tmp_path, course_dirs):
    root = tmp_path / "fake"
    (root / "COVID").mkdir(parents=True)
    (root / "NORMAL").mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        rel = f"{'COVID' if i % 2 else 'NORMAL'}/img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50), np.uint8)).save(root / rel)
        paths.append(rel)
    (root / "COVID/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths.insert(2, "COVID/broken.jpg")
    manifest = pd.DataFrame({"path": paths, "label": ["COVID" if "COVID" in p else "NORMAL" for p in paths]})
    return SimpleNamespace(name="fake", root=root, key="key1", manifest=manifest)


def test_load_images_skips_and_reports_a_corrupt_file(fake_dataset, capsys):
    result = load_images(fake_dataset, 32, workers=2)
    assert result.images.shape == (5, 32, 32) and result.images.dtype == np.uint8
    assert "COVID/broken.jpg" not in result.manifest["path"].tolist()
    assert list(result.manifest.index) == list(range(5))
    assert [p for p, _ in result.errors] == ["COVID/broken.jpg"]
    assert "COVID/broken.jpg:" in result.errors[0][1]
    expected = resize(read_image(fake_dataset.root / result.manifest["path"][3], reduce_to=32), 32)
    assert np.array_equal(result.images[3], expected)
    assert not result.from_cache
    assert "skipped 1 unreadable" in capsys.readouterr().out


def test_load_images_second_call_uses_the_cache(fake_dataset, monkeypatch, capsys):
    first = load_images(fake_dataset, 32, progress=False)
    path = cache_path(fake_dataset, 32)
    assert path.is_file() and path.parent.is_relative_to(paths.cache_dir("images"))
    assert not list(path.parent.glob("*.part"))
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's default

    def fail(*args, **kwargs):
        raise AssertionError("read_image must not be called on a cache hit")

    monkeypatch.setattr(images.cache, "read_image", fail)
    capsys.readouterr()
    second = load_images(fake_dataset, 32)
    assert second.from_cache
    assert "images: loaded 5 cached 32px images (cache hit; skipped 1 unreadable" in capsys.readouterr().out
    assert np.array_equal(second.images, first.images)
    pd.testing.assert_frame_equal(second.manifest, first.manifest)
    assert second.errors == first.errors


def test_a_changed_key_or_size_never_reuses_the_cache(fake_dataset):
    load_images(fake_dataset, 32, progress=False)
    changed = SimpleNamespace(**{**vars(fake_dataset), "key": "key2"})
    assert cache_path(changed, 32) != cache_path(fake_dataset, 32)
    assert cache_path(fake_dataset, 48) != cache_path(fake_dataset, 32)
    assert not load_images(changed, 32, progress=False).from_cache
    bigger = load_images(fake_dataset, 48, progress=False)
    assert not bigger.from_cache and bigger.images.shape == (5, 48, 48)
    assert len(list(cache_path(fake_dataset, 32).parent.glob("*.npz"))) == 3


def test_a_damaged_or_mismatched_cache_is_rebuilt(fake_dataset):
    load_images(fake_dataset, 32, progress=False)
    cache_path(fake_dataset, 32).write_bytes(b"garbage")
    assert not load_images(fake_dataset, 32, progress=False).from_cache
    fake_dataset.manifest = fake_dataset.manifest.iloc[::-1]  # same key, other rows: never trust the file blindly
    reordered = load_images(fake_dataset, 32, progress=False)
    assert not reordered.from_cache and reordered.manifest["path"].tolist()[0] == "NORMAL/img4.png"


def test_refresh_decodes_again(fake_dataset):
    load_images(fake_dataset, 32, progress=False)
    assert not load_images(fake_dataset, 32, progress=False, refresh=True).from_cache


def test_load_images_on_an_empty_manifest(fake_dataset):
    fake_dataset.manifest = fake_dataset.manifest.iloc[:0]
    result = load_images(fake_dataset, 16, progress=False)
    assert result.images.shape == (0, 16, 16) and result.errors == []
    assert load_images(fake_dataset, 16, progress=False).from_cache


# ---------------------------------------------------------------- near-duplicates


def test_near_duplicates_finds_a_resized_recompressed_copy(tmp_path):
    rng = np.random.default_rng(1)
    base = Image.fromarray(ramp(200, 200)).filter(ImageFilter.GaussianBlur(2))
    base.save(tmp_path / "a.png")
    base.resize((120, 120)).save(tmp_path / "a-small.jpg", quality=70)
    Image.fromarray(rng.integers(0, 255, (200, 200), np.uint8)).save(tmp_path / "noise.png")
    Image.fromarray(ramp(200, 200).T.copy()).save(tmp_path / "other.png")
    (tmp_path / "broken.png").write_bytes(b"")
    paths = ["noise.png", "a.png", "broken.png", "other.png", "a-small.jpg"]
    assert near_duplicate_groups(tmp_path, paths) == [[1, 4]]
    assert near_duplicate_groups(tmp_path, ["broken.png"]) == []


def test_near_duplicates_in_kermany_mini(shared_data):
    root = shared_data / "kermany-mini"
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    groups = [[paths[i] for i in group] for group in near_duplicate_groups(root, paths)]
    assert ["NORMAL/a-IM-0017-0001.jpg", "NORMAL/b-IM-0017-0001.jpg"] in groups
    assert all(len(group) == 2 for group in groups)  # no chains of unrelated X-rays
