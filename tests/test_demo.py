"""helpers.app.demo: the upload app driven through its callbacks with real and broken uploads, in both ipywidgets formats."""

from __future__ import annotations

import builtins
import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
from image_files import encode as png
from image_files import make_dicom

from helpers import DISCLAIMER
from helpers.app import demo
from helpers.images import read_image
from helpers.models import build_cnn
from helpers.runs import save_run

MB = 1_000_000


# ---------------------------------------------------------------- uploads


@pytest.fixture(scope="module")
def uploads(shared_data) -> dict[str, bytes]:
    """What learners upload: a real X-ray, the same as 16-bit PNG, RGBA PNG and DICOM, and broken files."""
    real = shared_data / "kermany-mini" / "NORMAL" / "a-IM-0001-0001.jpg"
    gray = read_image(real)
    rgba = np.dstack([np.repeat(gray[..., None], 3, axis=2), np.full(gray.shape, 255, np.uint8)])
    return {
        "chest.jpg": real.read_bytes(),
        "chest16.png": png(gray.astype(np.uint16) * 16),
        "chest_rgba.png": png(rgba),
        "chest.dcm": make_dicom(gray.astype(np.uint16) * 16, Modality="DX"),
        "report.png": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n",
        "empty.png": b"",
        "huge.png": b"\x89PNG\r\n\x1a\n" + bytes(50 * MB),
    }


GOOD = ("chest.jpg", "chest16.png", "chest_rgba.png", "chest.dcm")
EXPECTED_MESSAGES = {"report.png": "looks like a PDF", "empty.png": "empty (0 bytes)", "huge.png": "above the limit of 20 MB"}


def value_v7(files: dict[str, bytes]) -> dict:
    """``FileUpload.value`` as ipywidgets 7 (Colab) gives it."""
    return {name: {"metadata": {"name": name, "type": "image/png", "size": len(data), "lastModified": 0},
                   "content": data} for name, data in files.items()}


def value_v8(files: dict[str, bytes]) -> tuple:
    """``FileUpload.value`` as ipywidgets 8 gives it (content is a memoryview)."""
    return tuple({"name": name, "type": "image/png", "size": len(data), "last_modified": datetime.now(UTC),
                  "content": memoryview(data)} for name, data in files.items())


@pytest.mark.parametrize("make", [value_v7, value_v8])
def test_uploaded_files_reads_both_formats(make):
    files = {"a.png": b"abc", "b.dcm": b""}
    assert demo.uploaded_files(make(files)) == [("a.png", b"abc"), ("b.dcm", b"")]
    assert demo.uploaded_files(make({})) == []


# ---------------------------------------------------------------- models


def save_tiny_model(dataset: str, *, synthetic: bool = True, name: str = "cnn") -> Path:
    """A tiny untrained CNN saved through helpers.runs.save_run, as notebook 02 would."""
    model = build_cnn(32, filters=(8, 16))
    manifest = pd.DataFrame({"split": ["train", "val", "val", "test", "test"]})
    ds = SimpleNamespace(name=dataset, synthetic=synthetic, modality="xray", manifest=manifest)
    predictions = pd.DataFrame({"split": ["val", "val", "test", "test"], "y_true": [0, 1, 0, 1],
                                "probability": [0.2, 0.6, 0.3, 0.7]})
    save_run(name, dataset=ds, predictions=predictions, model=model, img_size=32, gradcam_layer="last_conv")
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset / name


@pytest.fixture
def app(course_dirs):
    save_tiny_model("synthetic")
    return demo.UploadDemo(max_bytes=20 * MB)


def test_no_model_names_the_notebooks_to_run(course_dirs):
    app = demo.UploadDemo()
    assert app.picker.disabled and "02_cnn_from_scratch" in app.model_note.value
    [card] = app.process([("chest.png", b"123")])
    assert "03_transfer_learning" in card


def test_picker_lists_every_model_folder(course_dirs):
    save_tiny_model("synthetic")
    save_tiny_model("ieee8023", synthetic=False, name="vgg16")
    (Path(os.environ["COURSE_OUTPUT_DIR"]) / "synthetic" / "hybrid").mkdir()  # no model.keras: not listed
    app = demo.UploadDemo(model=Path(os.environ["COURSE_OUTPUT_DIR"]) / "synthetic" / "cnn")
    assert [label for label, _ in app.picker.options] == ["ieee8023 / vgg16", "synthetic / cnn (SYNTHETIC)"]
    assert app.picker.value.endswith("synthetic/cnn") and demo.SYNTHETIC_WARNING in app.model_note.value
    app.picker.value = app.picker.options[0][1]
    assert demo.SYNTHETIC_WARNING not in app.model_note.value and "Threshold" in app.model_note.value
    assert demo.model_folder("ieee8023", "vgg16") and demo.model_folder("synthetic", "hybrid") is None


def test_widget_layout(app):
    assert isinstance(app.widget, widgets.VBox) and app.upload in app.widget.children
    assert app.upload.multiple and app.upload.accept == demo.ACCEPT
    assert DISCLAIMER in app.header.value.replace("&quot;", '"')


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def no_disk_writes(tmp_path, monkeypatch):
    """Fail any write through open(), send temporary files to an empty folder and check it stays empty."""
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"the demo tried to write {file}")
        return real_open(file, mode, *args, **kwargs)

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(scratch)
    before = listing(tmp_path)
    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(io, "open", read_only_open)
    yield
    monkeypatch.undo()
    assert listing(tmp_path) == before


def upload(app, value) -> None:
    """Through the real observer when the installed ipywidgets makes this format, else call the callback."""
    native = dict if int(widgets.__version__.split(".")[0]) < 8 else tuple
    if isinstance(value, native):
        app.upload.set_trait("value", value)  # how FileUpload sets it (the trait is read-only in ipywidgets 7)
    else:
        app.on_upload({"new": value})


@pytest.mark.parametrize("make", [value_v7, value_v8])
def test_uploads_give_results_or_friendly_messages(app, uploads, make, monkeypatch, no_disk_writes):
    decoded, predict = [], demo.predict_image

    def spy(info, data, **kwargs):
        decoded.append(kwargs["name"])
        return predict(info, data, **kwargs)

    monkeypatch.setattr(demo, "predict_image", spy)
    upload(app, make(uploads))
    cards = dict(zip(uploads, (child.value for child in app.results.children), strict=True))
    for name in GOOD:
        assert "the model says" in cards[name] and "data:image/jpeg;base64," in cards[name], name
        assert demo.THRESHOLD_MEANING in cards[name] and demo.SYNTHETIC_WARNING in cards[name]
        assert "Threshold 0.60" in cards[name] and "could not use" not in cards[name]
    for name, message in EXPECTED_MESSAGES.items():
        assert "could not use this file" in cards[name] and message in cards[name], cards[name]
        assert "Traceback" not in cards[name]
    assert "huge.png" not in decoded and "empty.png" not in decoded  # refused before decoding


def test_unexpected_errors_become_messages(app, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(demo, "predict_image", boom)
    [card] = app.process([("x.png", b"data")])
    assert "unexpected problem (RuntimeError: out of cheese)" in card


def test_text_file_and_colour_photo(app):
    rng = np.random.default_rng(0)
    text, photo = app.process([("notes.txt", b"Patient notes: cough, fever"),
                               ("holiday.png", png(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)))])
    assert "looks like text" in text
    assert "Is this the right kind of image?" in photo and "coloured" in photo


def test_show_gives_the_cards_as_static_html(app, uploads):
    html = app.show([("chest.jpg", uploads["chest.jpg"])]).data
    assert html == app.results.children[0].value and "chest.jpg" in html


def test_samples_take_both_labels_and_distinct_patients(tmp_path):
    rows = pd.DataFrame({"path": [f"images/{i}.png" for i in range(6)], "split": ["test"] * 6,
                         "patient_id": ["a", "a", "b", "c", "d", "e"],
                         "label": ["COVID", "COVID", "NORMAL", "COVID", "NORMAL", "NORMAL"]})
    (tmp_path / "images").mkdir()
    for rel in rows["path"]:
        (tmp_path / rel).write_bytes(rel.encode())
    dataset = SimpleNamespace(root=tmp_path, split=lambda s: rows[rows["split"] == s])
    assert [p.name for p in demo.sample_files(dataset, n=4)] == ["0.png", "2.png", "3.png", "4.png"]
    name, data = demo.sample_uploads(dataset, n=4)[0]
    assert name == "0.png (true label: COVID)" and data == b"images/0.png"
