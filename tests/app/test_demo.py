"""helpers.app.demo: the upload app driven through its callbacks with real and broken uploads, in both ipywidgets formats."""

from __future__ import annotations

import builtins
import io
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
from bad_inputs import BYTES
from image_files import encode as png
from image_files import make_dicom
from tiny_models import save_tiny_cnn, save_tiny_hybrid

from helpers import DISCLAIMER
from helpers.app import cards, demo
from helpers.app.calls import Prediction
from helpers.images import read_image

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
    return save_tiny_cnn(dataset, synthetic=synthetic, name=name)


@pytest.fixture
def app(course_dirs):
    save_tiny_model("synthetic")
    return demo.UploadDemo(max_bytes=20 * MB)


def test_no_model_names_the_notebooks_to_run(course_dirs):
    app = demo.UploadDemo()
    assert app.picker.disabled and "02_cnn_from_scratch" in app.model_note.value
    [card] = app.process([("chest.png", b"123")])
    assert "03_transfer_learning" in card


def test_picker_lists_every_model_kind_and_preselects(course_dirs, monkeypatch):
    out = Path(os.environ["COURSE_OUTPUT_DIR"])
    save_tiny_model("synthetic")
    save_tiny_model("ieee8023", synthetic=False, name="vgg16")
    save_tiny_hybrid("synthetic")
    (out / "synthetic" / "empty").mkdir()  # no model: not listed
    app = demo.UploadDemo(model=out / "synthetic" / "cnn")
    assert [label for label, _ in app.picker.options] == [
        "ieee8023 / vgg16", "synthetic / cnn (SYNTHETIC)", "synthetic / vgg16-xgboost (VGG16 features hybrid) (SYNTHETIC)"]
    assert app.picker.value.endswith("synthetic/cnn") and cards.SYNTHETIC_WARNING in app.model_note.value
    app.picker.value = app.picker.options[0][1]
    assert cards.SYNTHETIC_WARNING not in app.model_note.value and "Threshold" in app.model_note.value
    assert demo.UploadDemo().picker.value.endswith("ieee8023/vgg16")  # models of real data first
    assert demo.choose_model("synthetic", "vgg16-xgboost") == (out / "synthetic" / "vgg16-xgboost").resolve()
    monkeypatch.setenv(demo.MODEL_VARIABLE, str(out / "synthetic" / "cnn"))  # `make demo MODEL=...`
    assert demo.choose_model("synthetic", "vgg16-xgboost") == (out / "synthetic" / "cnn").resolve()
    monkeypatch.delenv(demo.MODEL_VARIABLE)
    assert demo.choose_model("covid19-radiography", "cnn") == demo.best_model(demo.run_folders())


def test_the_default_model_is_the_best_of_the_requested_task_before_any_other(course_dirs, capsys):
    binary, three = save_tiny_cnn("synthetic"), save_tiny_cnn("synthetic", task="three-class")
    metrics = json.loads((binary / "metrics.json").read_text())
    metrics["val"]["auc"] = json.loads((three / "metrics.json").read_text())["val"]["auc"] - 0.3
    (binary / "metrics.json").write_text(json.dumps(metrics))  # the three-class run has the higher val AUC
    assert demo.choose_model() == binary and demo.choose_model(task="three-class") == three
    assert demo.UploadDemo().picker.value == str(binary) and capsys.readouterr().out == ""
    assert "No covid-vs-normal model" not in demo.UploadDemo().model_note.value
    (binary / "model.keras").unlink()  # no covid-vs-normal model left: another task's, said so
    assert demo.choose_model() == three
    assert "No covid-vs-normal model found: preselected the three-class model" in capsys.readouterr().out
    app = demo.UploadDemo()
    assert app.picker.value == str(three) and "No covid-vs-normal model found" in app.model_note.value
    assert demo.UploadDemo(model=three).fallback is None  # chosen, not fallen back to


def test_a_run_with_broken_metrics_is_left_out_of_the_picker(course_dirs):
    save_tiny_model("synthetic")
    broken = save_tiny_model("synthetic", name="broken")
    (broken / "metrics.json").write_text('{"threshold": "high"}')
    app = demo.UploadDemo(model=broken)
    assert [label for label, _ in app.picker.options] == ["synthetic / cnn (SYNTHETIC)"]


def test_widget_layout(app):
    assert isinstance(app.widget, widgets.VBox) and app.upload in app.widget.children
    assert app.upload.multiple and app.upload.accept == demo.ACCEPT
    assert DISCLAIMER in app.header.value.replace("&quot;", '"')


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def no_disk_writes_outputs(tmp_path, monkeypatch):
    """Call it to fail any write through open() from then on, with temporary files sent to an empty folder;
    at the end nothing under the test's folder (data, outputs) may have appeared or gone."""
    real_open, state = builtins.open, {}

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"the demo tried to write {file}")
        return real_open(file, mode, *args, **kwargs)

    def arm():
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        monkeypatch.chdir(scratch)
        state["before"] = listing(tmp_path)
        monkeypatch.setattr(builtins, "open", read_only_open)
        monkeypatch.setattr(io, "open", read_only_open)

    yield arm
    monkeypatch.undo()
    if state:
        assert listing(tmp_path) == state["before"]


@pytest.fixture
def no_disk_writes(no_disk_writes_outputs):
    no_disk_writes_outputs()


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
    shown = dict(zip(uploads, (child.value for child in app.results.children), strict=True))
    for name in GOOD:
        assert " says " in shown[name] and "data:image/jpeg;base64," in shown[name], name
        assert cards.THRESHOLD_MEANING in shown[name] and cards.SYNTHETIC_WARNING in shown[name]
        assert "threshold 0.60" in shown[name] and "could not use" not in shown[name]
    for name, message in EXPECTED_MESSAGES.items():
        assert "could not use this file" in shown[name] and message in shown[name], shown[name]
        assert "Traceback" not in shown[name]
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


def test_show_gives_the_cards_as_static_html_and_leaves_the_app_empty(app, uploads):
    html = app.show([("chest.jpg", uploads["chest.jpg"]), ("notes.txt", b"not an image")]).data
    assert "chest.jpg" in html and "could not use this file" in html
    assert app.results.children == () and app.status.value == ""  # no card left over from an earlier cell


def test_samples_are_found_read_only_or_generated(course_dirs, no_disk_writes_outputs):
    data, out = course_dirs
    rows = pd.DataFrame({"path": [f"images/{i}.png" for i in range(6)], "split": ["test"] * 5 + ["val"],
                         "patient_id": ["a", "a", "b", "c", "d", "e"], "y_true": 0, "probability": 0.5,
                         "label": ["COVID", "COVID", "NORMAL", "COVID", "NORMAL", "NORMAL"]})
    root = data / "mini" / "abc1234"
    (root / "images").mkdir(parents=True)
    for rel in rows["path"]:
        (root / rel).write_bytes(rel.encode())
    run = out / "mini" / "cnn"
    run.mkdir(parents=True)
    rows.to_csv(run / "predictions.csv", index=False)
    (run / "metrics.json").write_text('{"model": "cnn", "dataset": "mini", "threshold": 0.5}')
    no_disk_writes_outputs()
    assert [p.name for p in demo.sample_files(run, n=4)] == ["0.png", "2.png", "3.png", "4.png"]
    name, content = demo.sample_uploads(run, n=4)[0]
    assert name == "0.png (true label: COVID)" and content == b"images/0.png"
    generated = demo.sample_uploads(out / "nowhere", n=2)
    assert [n.split(" ")[0] for n, _ in generated] == ["generated-0.png", "generated-1.png"]
    assert read_image(generated[0][1]).shape == (256, 256)


# ---------------------------------------------------------------- state, kinds and readable numbers


def native(name: str, content: bytes):
    """One file as the installed ipywidgets' ``FileUpload.value``, to set through the real trait."""
    make = value_v7 if int(widgets.__version__.split(".")[0]) < 8 else value_v8
    return make({name: content})


def test_changing_the_model_predicts_the_files_on_display_again(course_dirs, uploads):
    save_tiny_model("synthetic")
    save_tiny_hybrid("synthetic")
    app = demo.UploadDemo()
    app.upload.set_trait("value", native("chest.jpg", uploads["chest.jpg"]))
    [first] = [child.value for child in app.results.children]
    assert "synthetic / cnn" in first and "Grad-CAM" in first
    assert not app.upload.value  # emptied: the same file chosen again is a new value
    app.picker.value = [v for label, v in app.picker.options if "xgboost" in label][0]
    [second] = [child.value for child in app.results.children]
    assert "vgg16-xgboost" in second and "occlusion sensitivity" in second.lower() and "data:image/jpeg" in second
    assert "Round 2" in app.status.value


def test_the_same_file_again_is_predicted_again(app, uploads, monkeypatch):
    calls, predict = [], demo.predict_image
    monkeypatch.setattr(demo, "predict_image", lambda *a, **k: calls.append(k["name"]) or predict(*a, **k))
    for _ in range(2):
        app.upload.set_trait("value", native("chest.jpg", uploads["chest.jpg"]))
    assert calls == ["chest.jpg", "chest.jpg"] and "Round 2" in app.status.value


def test_numbers_on_a_card_never_look_equal_when_the_call_differs(app):
    info = demo.load_model(app.picker.value)
    gray = np.full((64, 64), 90, np.uint8)
    prediction = Prediction("x.png", 0.9874, "NORMAL", 0.99, gray)
    card = cards.result_card(prediction, info)
    assert "probability of COVID 0.987 &lt; threshold 0.990, margin -0.003" in card
    assert "bar: 0.987; dashed line: threshold 0.990" in card


def test_every_bad_upload_kind_gets_a_message_or_a_warning(app):
    shown = dict(zip(BYTES, app.process([(name, content) for name, (content, _) in BYTES.items()]), strict=True))
    for name, (_, (outcome, text)) in BYTES.items():
        card = shown[name].lower()
        assert "traceback" not in card and "unexpected problem" not in card, card
        if outcome == "error":
            assert "could not use this file" in card and text in card, card
        else:
            assert " says " in card, card
            assert (text in card and "is this the right kind of image?" in card) if outcome == "warning" else True


def test_opening_the_demo_writes_nothing(course_dirs, no_disk_writes_outputs):
    save_tiny_model("synthetic")
    no_disk_writes_outputs()
    folder = demo.choose_model("covid19-radiography", "cnn")
    app = demo.UploadDemo(model=folder)
    app.show(demo.sample_uploads(folder, n=2))
    assert app.picker.value == str(folder)


def test_with_no_model_a_quick_one_goes_to_its_own_folder(course_dirs, monkeypatch):
    data, out = course_dirs
    seen = {}

    def fake_course_dataset(name, **kwargs):
        seen["dataset_output_dir"] = str(demo.paths.output_dir())
        return SimpleNamespace(name="synthetic")

    def fake_quick_cnn(dataset, images, *, output_dir, name, **kwargs):
        assert output_dir == out / "demo"
        return SimpleNamespace(path=save_tiny_model("synthetic", name=name))

    monkeypatch.setattr("helpers.data.course_dataset", fake_course_dataset)
    monkeypatch.setattr("helpers.images.load_images", lambda *a, **k: None)
    monkeypatch.setattr("helpers.runs.quick_cnn", fake_quick_cnn)
    assert demo.choose_model("synthetic", "cnn") is None
    folder = demo.quick_model("synthetic")
    assert folder == out / "demo" / "synthetic" / "cnn-quick" and (folder / "model.keras").is_file()
    assert seen["dataset_output_dir"] == str(out / "demo") and os.environ["COURSE_OUTPUT_DIR"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["demo"]  # the course's own outputs were not touched
    assert demo.UploadDemo(model=folder).picker.value == str(folder)


def test_the_demo_server_carries_uploads_above_the_app_limit_and_culls_idle_kernels():
    from helpers.app import serve

    command = serve.voila_command(8866)
    settings = next(arg for arg in command if arg.startswith("--Voila.tornado_settings="))
    limit = int(settings.split(":")[1].strip(" }"))
    assert limit == serve.WEBSOCKET_LIMIT > 2 * demo.MAX_BYTES > 10 * 2**20  # above Jupyter's default 10 MiB
    assert f"--MappingKernelManager.cull_idle_timeout={serve.CULL_IDLE_SECONDS}" in command
    assert "--Voila.ip=127.0.0.1" in command and command[3].endswith("06_upload_demo.ipynb")
    assert f"--ServerApp.tornado_settings={serve.SERVER_SETTINGS}" in serve.lab_command(8888, Path("."))
