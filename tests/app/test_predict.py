"""helpers.app.predict: loading (folder, .keras file, cache, bad paths), one-image prediction, warnings, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import write_batch
from image_files import encode as png
from tiny_models import save_tiny_hybrid

from helpers.app.calls import describe_call, readable
from helpers.app.predict import ModelError, load_model, main, model_notes, predict_image
from helpers.evaluation.recalibration import Calibration
from helpers.images import ImageError, read_image, resize
from helpers.models import build_cnn
from helpers.models.train import predict as train_predict

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"model": "cnn", "dataset": "synthetic", "synthetic": True, "modality": "xray", "threshold": 0.37,
           "threshold_rule": "youden (validation split)", "img_size": 32, "gradcam_layer": "last_conv"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """outputs/synthetic/cnn as training writes it: model.keras (a tiny untrained CNN) and metrics.json."""
    folder = tmp_path_factory.mktemp("outputs") / "synthetic" / "cnn"
    folder.mkdir(parents=True)
    build_cnn(32, filters=(8, 16)).save(folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    (folder / "predictions.csv").write_text("path,patient_id,split,label,y_true,probability\n"
                                            "a.png,a,val,NORMAL,0,0.2\nb.png,b,val,COVID,1,0.6\n")
    return folder


@pytest.fixture(scope="module")
def xray(shared_data) -> Path:
    return shared_data / "kermany-mini" / "NORMAL" / "a-IM-0001-0001.jpg"


# ---------------------------------------------------------------- loading


def test_load_model_folder_reads_metrics(model_dir):
    info = load_model(model_dir)
    assert (info.threshold, info.img_size, info.gradcam_layer, info.synthetic) == (0.37, 32, "last_conv", True)
    assert info.label == "synthetic / cnn (SYNTHETIC data)"
    assert "validation" in info.threshold_note


def test_load_model_is_cached_until_the_files_change(model_dir):
    first = load_model(model_dir)
    assert load_model(str(model_dir) + "/") is first
    stat = (model_dir / "metrics.json").stat()
    os.utime(model_dir / "metrics.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_model(model_dir) is not first


def test_load_keras_file_alone_uses_threshold_half_and_says_so(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(model_dir.parents[1]))
    copy, other = tmp_path / "mine.keras", tmp_path / "other.keras"
    shutil.copy(model_dir / "model.keras", copy)
    build_cnn(32, filters=(4, 8)).save(other)
    info = load_model(copy)
    assert info.threshold == 0.5 and "default 0.5" in info.threshold_note
    assert info.synthetic is True  # a byte copy of the synthetic run's model: known
    assert any("SYNTHETIC" in note for note in model_notes(info)) and any("0.5" in n for n in model_notes(info))
    unknown = load_model(other)
    assert unknown.synthetic is None and any("unknown" in note for note in model_notes(unknown))
    assert load_model(model_dir / "model.keras").threshold == 0.37  # a run folder's model.keras keeps its metrics


@pytest.mark.parametrize("name, content, message", [
    ("missing", None, "no such file or folder"),
    ("", None, "no model in this folder"),
    ("model.h5", b"x", "not a .keras file"),
    ("broken.keras", b"not a zip", "cannot load"),
])
def test_bad_model_paths_say_what_to_do(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(path)


# ---------------------------------------------------------------- predicting


def test_predict_real_xray_from_path_and_bytes(model_dir, xray):
    info = load_model(model_dir)
    from_path = predict_image(info, xray)
    from_bytes = predict_image(info, xray.read_bytes(), name="upload.jpg")
    assert from_path.file == str(xray) and from_bytes.file == "upload.jpg"
    assert from_path.probability == pytest.approx(from_bytes.probability)
    assert 0 <= from_path.probability <= 1
    assert from_path.label == ("COVID" if from_path.probability >= 0.37 else "NORMAL")
    assert from_path.heatmap.shape == from_path.image.shape == read_image(xray).shape
    assert from_path.warnings == []
    assert set(from_path.to_json()) == {"file", "probability", "label", "threshold", "margin", "calibrated", "warnings"}
    assert from_path.to_json()["calibrated"] is False  # METRICS store no temperature: the model's own score
    assert from_path.explanation == "Grad-CAM"


def test_prediction_matches_the_training_pipeline(model_dir, xray):
    """Same resize, same channels, same preprocessing (inside the model) as helpers.models.train.predict."""
    info = load_model(model_dir)
    expected = train_predict(info.model, resize(read_image(xray), 32)[None])[0]
    assert predict_image(info, xray, with_gradcam=False).probability == pytest.approx(float(expected), abs=1e-5)


def test_unreadable_image_raises_image_error(model_dir):
    with pytest.raises(ImageError, match="notes.png: not an image: looks like text"):
        predict_image(load_model(model_dir), b"patient notes, not an image", name="notes.png")


def test_warnings_for_wide_small_and_colour_images(model_dir):
    info = load_model(model_dir)
    rng = np.random.default_rng(0)
    wide = predict_image(info, png(rng.integers(0, 255, (100, 300), dtype=np.uint8)), with_gradcam=False)
    assert any("far from square" in w for w in wide.warnings) and any("small" in w for w in wide.warnings)
    photo = predict_image(info, png(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)), with_gradcam=False)
    assert any("coloured" in w for w in photo.warnings)
    gray_as_rgb = png(np.repeat(rng.integers(0, 255, (200, 200, 1), dtype=np.uint8), 3, axis=2))
    assert predict_image(info, gray_as_rgb, with_gradcam=False).warnings == []


# ---------------------------------------------------------------- command line


def test_cli_good_missing_and_corrupt_files(model_dir, xray, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(png(np.zeros((64, 64), np.uint8))[:60])
    status = main(["--model", str(model_dir), str(xray), str(tmp_path / "missing.png"), str(corrupt)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert [line["file"] for line in lines] == [str(xray), str(tmp_path / "missing.png"), str(corrupt)]
    assert lines[0]["label"] in ("COVID", "NORMAL") and lines[0]["threshold"] == 0.37
    assert "file not found" in lines[1]["error"] and "truncated or corrupt" in lines[2]["error"]


def test_cli_all_good_exits_zero_and_notes_synthetic(model_dir, xray, capsys):
    assert main(["--model", str(model_dir), str(xray)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "SYNTHETIC" in err


def test_cli_bad_model_path(tmp_path, xray, capsys):
    assert main(["--model", str(tmp_path / "nowhere"), str(xray)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no such file or folder" in err and "02_cnn_from_scratch" in err


def test_cli_as_a_module(model_dir, xray):
    result = subprocess.run([sys.executable, "-m", "helpers.app.predict", "--model", str(model_dir), str(xray)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["file"] == str(xray)


def test_cli_bare_keras_file_says_threshold_and_synthetic(model_dir, xray, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(model_dir.parents[1]))
    shutil.copy(model_dir / "model.keras", tmp_path / "mine.keras")
    assert main(["--model", str(tmp_path / "mine.keras"), str(xray)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["threshold"] == 0.5
    assert "SYNTHETIC" in err and "the default 0.5, not a threshold chosen on validation data" in err


@pytest.mark.parametrize("content, message", [
    ("{not json", "metrics.json"),
    ("[0.5]", "not an object"),
    ('{"threshold": "high"}', "threshold 'high' is not a number"),
    ('{"threshold": NaN}', "threshold nan is not a number"),
])
def test_cli_broken_metrics_exits_2_with_a_clear_message(model_dir, xray, tmp_path, capsys, content, message):
    folder = tmp_path / "synthetic" / "cnn"
    shutil.copytree(model_dir, folder)
    (folder / "metrics.json").write_text(content)
    assert main(["--model", str(folder), str(xray)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "metrics.json" in err and "Traceback" not in err


def test_readable_numbers_never_look_equal_when_the_call_differs():
    assert readable(0.9874, 0.99) == ("0.987", "0.990")
    for probability, threshold in [(0.123449, 0.12345), (0.99001, 0.99), (0.5, 0.500001), (0.2, 0.8)]:
        shown = readable(probability, threshold)
        assert shown[0] != shown[1] and (float(shown[0]) < float(shown[1])) == (probability < threshold)
    assert readable(0.4, 0.6) == ("0.40", "0.60")
    assert describe_call(0.9874, 0.99) == "probability of COVID 0.987 < threshold 0.990, margin -0.003"
    assert describe_call(0.5, 0.5).startswith("probability of COVID 0.50000000 >= threshold 0.50000000")


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit status 0: every file predicted; 1: some files failed" in out and "2: no usable model" in out


# ---------------------------------------------------------------- hybrids


@pytest.fixture(scope="module")
def hybrids(module_course_dirs) -> dict[str, Path]:
    return {kind: save_tiny_hybrid(classifier=kind) for kind in ("xgboost", "logistic")}


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_hybrid_folders_predict_real_xrays_with_occlusion(hybrids, kind, shared_data):
    info = load_model(hybrids[kind])
    assert info.kind == "hybrid" and info.synthetic is True and info.explanation == "occlusion sensitivity"
    xray = shared_data / "ieee8023-mini" / "images"
    path = sorted(xray.iterdir())[0]
    prediction = predict_image(info, path)
    stored = Calibration.from_dict(info.metrics["calibration"])  # save_run fitted it on val: both on its scale
    assert 0 <= prediction.probability <= 1 and prediction.threshold == float(stored.apply(info.metrics["threshold"]))
    assert prediction.calibrated
    assert prediction.heatmap.shape == prediction.image.shape and 0 <= prediction.heatmap.min() <= 1
    assert prediction.explanation == "occlusion sensitivity"
    again = predict_image(info, path, with_gradcam=False)
    assert again.probability == pytest.approx(prediction.probability) and again.heatmap is None


def test_cli_on_a_hybrid_folder(hybrids, shared_data, capsys):
    images = sorted((shared_data / "ieee8023-mini" / "images").iterdir())[:2]
    assert main(["--model", str(hybrids["xgboost"]), *map(str, images)]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, images))
    assert all(0 <= line["probability"] <= 1 and line["label"] in ("COVID", "NORMAL") for line in lines)
    assert "summary: 2 of 2 file(s) predicted" in err and "margin" in err


def test_hybrid_without_classifier_is_a_model_error(hybrids, tmp_path):
    broken = tmp_path / "vgg16-xgboost"
    shutil.copytree(hybrids["xgboost"], broken)
    (broken / "model.ubj").unlink()
    with pytest.raises(ModelError, match="features.json but no model.ubj"):
        load_model(broken)
    shutil.copy(hybrids["xgboost"] / "model.ubj", broken / "model.ubj")
    (broken / "model.ubj").write_bytes(b"damaged")
    with pytest.raises(ModelError, match="cannot load this hybrid"):
        load_model(broken)


# ---------------------------------------------------------------- one batch of every bad input


def test_cli_one_batch_of_every_bad_input_kind(model_dir, xray, tmp_path):
    """One call, every kind: one JSON line per file in order, no traceback, no hang, the good files predicted."""
    expected = write_batch(tmp_path)
    names = [*expected, str(xray)]
    result = subprocess.run([sys.executable, "-m", "helpers", "predict", "--model", str(model_dir), *names],
                            capture_output=True, text=True, cwd=tmp_path, timeout=240,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == names
    for line, (outcome, text) in zip(lines, [*expected.values(), ("ok", "")]):
        if outcome == "error":
            assert "error" in line and text in line["error"].lower(), line
        else:
            assert "probability" in line, line
            assert (text in " ".join(line["warnings"]).lower()) if outcome == "warning" else not line["warnings"], line
    assert f"summary: {sum(o != 'error' for o, _ in expected.values()) + 1} of {len(names)} file(s)" in result.stderr


def test_a_stored_temperature_calibrates_probability_and_threshold_but_not_the_call(model_dir, xray, tmp_path):
    from helpers.evaluation.recalibration import apply_temperature

    folder = tmp_path / "synthetic" / "cnn"
    shutil.copytree(model_dir, folder)
    metrics = {**METRICS, "calibration": {"method": "temperature", "T": 3.0, "n_val": 2, "note": None}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    raw = predict_image(load_model(model_dir), xray, with_gradcam=False)
    calibrated = predict_image(load_model(folder), xray, with_gradcam=False)
    assert calibrated.calibrated and not raw.calibrated
    assert calibrated.probability == pytest.approx(float(apply_temperature(raw.probability, 3.0)))
    assert calibrated.threshold == pytest.approx(float(apply_temperature(0.37, 3.0)))
    assert calibrated.label == raw.label and np.sign(calibrated.margin) == np.sign(raw.margin)
    assert not any("not calibrated" in note for note in model_notes(load_model(folder)))
    assert any("not calibrated" in note for note in model_notes(load_model(model_dir)))
    from helpers.app.cards import result_card

    assert "calibrated on the validation split" in result_card(calibrated, load_model(folder))
    assert "not calibrated" in result_card(raw, load_model(model_dir))
