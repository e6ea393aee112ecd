"""helpers.images on DICOM: pydicom's modality and VOI transforms, MONOCHROME1, frames, files without meta."""

from __future__ import annotations

import numpy as np
import pytest
from image_files import DICOM_PIXELS, make_dicom

from helpers.images import ImageError, read_image


def test_dicom_monochrome2_is_stretched():
    data = make_dicom(DICOM_PIXELS)
    assert data[128:132] == b"DICM"
    assert read_image(data).tolist() == [[0, 64], [128, 255]]


def test_dicom_monochrome1_is_inverted():
    assert read_image(make_dicom(DICOM_PIXELS, photometric="MONOCHROME1")).tolist() == [[255, 191], [127, 0]]


def test_dicom_rescale_and_window():
    # Hounsfield units = 1 * raw - 1024: -1024, -24, 976, 2976; a window of 0 +- 500 HU, with the
    # DICOM "LINEAR" function: ((-24 + 0.5) / 999 + 0.5) * 255 = 122
    data = make_dicom(DICOM_PIXELS, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=1000)
    assert read_image(data).tolist() == [[0, 122], [255, 255]]


def test_dicom_multi_valued_window_uses_the_first():
    data = make_dicom(DICOM_PIXELS, WindowCenter=[1000, 0], WindowWidth=[2000, 10])
    assert read_image(data).tolist() == [[0, 128], [255, 255]]


def test_dicom_rgb_becomes_luma_like_any_rgb_image():
    rgb = np.array([[[255, 0, 0], [200, 200, 200]]], np.uint8)
    data = make_dicom(rgb[..., 0], photometric="RGB", SamplesPerPixel=3, PlanarConfiguration=0, BitsAllocated=8,
                      BitsStored=8, HighBit=7, PixelData=rgb.tobytes())
    assert read_image(data).tolist() == [[76, 200]]


def voi_lut(*values: int) -> list:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(values), 0, 8])  # entries, first input mapped, bits per entry
    item.add_new("LUTData", "US", list(values))
    return [item]


@pytest.mark.filterwarnings("error")  # pydicom warns when a LUT gets float input: it must get whole numbers
@pytest.mark.parametrize("rescale", [{}, {"RescaleSlope": 1, "RescaleIntercept": 0}])
def test_dicom_voi_lut_is_applied_and_its_output_range_stretched(rescale):
    pixels = np.array([[0, 1], [2, 9]], np.uint16)  # 9 lies past the LUT: it gets the last entry
    assert read_image(make_dicom(pixels, VOILUTSequence=voi_lut(0, 50, 100, 200), **rescale)).tolist() == [
        [0, 64], [128, 255]]
    inverted = make_dicom(pixels, photometric="MONOCHROME1", VOILUTSequence=voi_lut(0, 50, 100, 200))
    assert read_image(inverted).tolist() == [[255, 191], [127, 0]]


def test_dicom_without_preamble_is_found_by_extension(tmp_path):
    data = make_dicom(DICOM_PIXELS, preamble=False)
    assert data[128:132] != b"DICM"
    path = tmp_path / "slice.dcm"
    path.write_bytes(data)
    assert read_image(path).tolist() == [[0, 64], [128, 255]]


@pytest.mark.parametrize("implicit, little", [(True, True), (False, True), (False, False)])
def test_raw_dicom_without_file_meta_is_read_with_the_encoding_it_was_written_in(tmp_path, implicit, little):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Rows, ds.Columns = DICOM_PIXELS.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = DICOM_PIXELS.astype("<u2" if little else ">u2").tobytes()
    path = tmp_path / "old.dcm"
    ds.save_as(path, implicit_vr=implicit, little_endian=little)
    assert read_image(path).tolist() == [[0, 64], [128, 255]]


def test_broken_dicom_is_an_error():
    data = make_dicom(DICOM_PIXELS)
    with pytest.raises(ImageError, match=r"ct\.dcm: cannot decode this DICOM file"):
        read_image(data[:-4], name="ct.dcm")
