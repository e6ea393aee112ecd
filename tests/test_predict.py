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
from image_files import encode as png

from helpers.app.predict import ModelError, load_model, main, predict_image
from helpers.images import ImageError, read_image, resize
from helpers.models import build_cnn
from helpers.models.train import predict as train_predict

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"model": "cnn", "dataset": "synthetic", "synthetic": True, "modality": "xray", "threshold": 0.37,
           "threshold_rule": "youden (validation split)", "img_size": 32, "gradcam_layer": "last_conv"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """outputs/synthetic/cnn as training writes it: model.keras (a tiny untrained CNN) and metrics.json."""
    folder = tmp_path_factory.mktemp("outputs") / "synthetic" / "cnn"
    folder.mkdir(parents=True)
    build_cnn(32, filters=(8, 16)).save(folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps(METRICS))
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


def test_load_keras_file_alone_uses_threshold_half(model_dir, tmp_path):
    alone = tmp_path / "mine.keras"
    shutil.copy(model_dir / "model.keras", alone)
    info = load_model(alone)
    assert info.threshold == 0.5 and "default 0.5" in info.threshold_note and not info.synthetic
    assert load_model(model_dir / "model.keras").threshold == 0.37  # a run folder's model.keras keeps its metrics


@pytest.mark.parametrize("name, content, message", [
    ("missing", None, "no such file or folder"),
    ("", None, "no model.keras in this folder"),
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
    assert set(from_path.to_json()) == {"file", "probability", "label", "threshold", "warnings"}


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
