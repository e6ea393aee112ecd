"""The CLI and the demo on a three-class model (NORMAL, PNEUMONIA, COVID): every class's probability, the COVID call."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_models import save_tiny_cnn, save_tiny_hybrid

from helpers.app import cards, demo
from helpers.app.calls import decide, describe_classes
from helpers.app.explanations import covid_score_model, occlusion
from helpers.app.predict import ModelError, load_model, main, model_notes, predict_image
from helpers.images import read_image, resize
from helpers.models.train import predict as train_predict

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("NORMAL", "PNEUMONIA", "COVID")


@pytest.fixture(scope="module")
def three_class_run(module_course_dirs) -> Path:
    """A tiny CNN with a 3-unit softmax, trained 2 epochs on the SMOKE synthetic three-class set, saved by
    ``evaluate_and_save`` as notebook 02 does: ``<outputs>/synthetic/cnn-three-class``."""
    from helpers.data import course_dataset
    from helpers.images import load_images
    from helpers.models import build_cnn
    from helpers.models.train import evaluate_and_save, fit

    # 90 patients: every class in val with scikit-learn 1.6 (Colab's StratifiedGroupKFold) and 1.9
    dataset = course_dataset("synthetic", task="three-class", smoke=True, n_patients=90, size=64)
    images = load_images(dataset, 32, progress=False)
    model = build_cnn(32, filters=(8, 16), classes=3)
    history = fit(model, images, epochs=2, batch_size=16, learning_rate=3e-3, classes=dataset.classes, verbose=0)
    evaluate_and_save(model, images, dataset, name="cnn", history=history)
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset.name / "cnn-three-class"


@pytest.fixture(scope="module")
def three_class_hybrids(module_course_dirs) -> dict[str, Path]:
    return {kind: save_tiny_hybrid(classifier=kind, task="three-class") for kind in ("xgboost", "logistic")}


@pytest.fixture(scope="module")
def xrays(shared_data) -> list[Path]:
    """Real X-rays of each kind: pediatric NORMAL and PNEUMONIA (Kermany), adult COVID-19 (ieee8023)."""
    kermany = shared_data / "kermany-mini"
    covid = sorted(p for p in (shared_data / "ieee8023-mini" / "images").iterdir() if p.suffix in (".jpg", ".png"))
    return [*sorted((kermany / "NORMAL").iterdir())[:2], *sorted((kermany / "PNEUMONIA").iterdir())[:2], *covid[:2]]


def set_threshold(folder: Path, threshold: float) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "threshold": threshold}))


# ---------------------------------------------------------------- the call, without a model


@pytest.mark.parametrize("probabilities, threshold, expected", [
    ((0.2, 0.3, 0.5), 0.4, "COVID"),
    ((0.2, 0.3, 0.5), 0.6, "PNEUMONIA"),  # COVID the most probable, but below its threshold
    ((0.5, 0.2, 0.3), 0.25, "COVID"),  # above the threshold without being the most probable
    ((0.5, 0.2, 0.3), 0.35, "NORMAL"),
    ((0.6, 0.4), 0.5, "NORMAL"),  # binary, default task: unchanged
    ((0.5, 0.5), 0.5, "COVID"),  # at the threshold: COVID, as before
])
def test_the_call_is_covid_at_its_threshold_else_the_most_probable_other_class(probabilities, threshold, expected):
    classes = CLASSES if len(probabilities) == 3 else ("NORMAL", "COVID")
    assert decide(probabilities, threshold, classes) == expected
    assert decide((0.7, 0.3), 0.5, ("PNEUMONIA", "COVID")) == "PNEUMONIA"  # covid-vs-pneumonia


def test_class_probabilities_are_written_so_that_different_values_never_look_equal():
    assert describe_classes({"NORMAL": 0.2, "PNEUMONIA": 0.3, "COVID": 0.5}) == \
        "NORMAL 0.20, PNEUMONIA 0.30, COVID 0.50 (most probable: COVID)"
    shown = describe_classes({"NORMAL": 0.3331, "PNEUMONIA": 0.3334, "COVID": 0.3335})
    assert len(set(re.findall(r"0\.\d+", shown))) == 3 and shown.endswith("(most probable: COVID)")


def test_occlusion_explains_the_probability_of_covid():
    """A fake model whose P(COVID) is the top-left square's brightness: only that square lights up."""
    def probabilities(images):
        covid = images[:, :4, :4].mean(axis=(1, 2)) / 255 * 0.5
        return np.stack([0.5 - covid, np.full(len(images), 0.5), covid], axis=1)  # NORMAL moves the other way

    info = SimpleNamespace(probabilities=probabilities)
    small = np.full((20, 20), 40, np.uint8)
    small[:4, :4] = 250
    heatmap = occlusion(info, small, float(probabilities(small[None])[0, 2]), out_shape=(20, 20))
    assert heatmap[:4, :4].min() == 1.0 and heatmap[4:, :].max() == 0.0 and heatmap[:, 4:].max() == 0.0


# ---------------------------------------------------------------- the Keras model


def test_grad_cam_of_a_softmax_model_explains_the_log_odds_of_covid(three_class_run, xrays):
    info = load_model(three_class_run)
    batch = np.stack([np.repeat(resize(read_image(path), 32)[..., None], 3, axis=2) for path in xrays])
    probabilities = np.asarray(info.model(batch.astype(np.float32), training=False), np.float64)
    log_odds = np.asarray(covid_score_model(info.model)(batch.astype(np.float32), training=False))[:, 0]
    expected = np.log(probabilities[:, 2] / (1 - probabilities[:, 2]))
    np.testing.assert_allclose(log_odds, expected, atol=1e-4)
    assert info.gradcam_model.name == info.model.name and info.gradcam_model.output_shape == (None, 1)


def test_predict_image_gives_every_class_in_order_and_matches_the_training_pipeline(three_class_run, xrays):
    info = load_model(three_class_run)
    assert info.classes == CLASSES and info.multiclass and info.task == "three-class"
    assert info.label == "synthetic / cnn-three-class (NORMAL / PNEUMONIA / COVID) (SYNTHETIC data)"
    prediction = predict_image(info, xrays[0])
    expected = train_predict(info.model, resize(read_image(xrays[0]), 32)[None])[0]
    assert list(prediction.probabilities) == list(CLASSES)
    np.testing.assert_allclose(list(prediction.probabilities.values()), expected, atol=1e-5)
    assert prediction.probability == prediction.probabilities["COVID"] and not prediction.calibrated
    assert prediction.heatmap.shape == prediction.image.shape and 0 <= prediction.heatmap.min() <= 1
    assert any("not calibrated" in note and "COVID against the other classes" in note for note in model_notes(info))


def test_cli_on_real_images_prints_every_class_and_the_covid_call_at_the_threshold(three_class_run, xrays, capsys):
    """The threshold is put between the images' P(COVID), so both sides of the call are checked."""
    set_threshold(three_class_run, 0.34)
    assert main(["--model", str(three_class_run), *map(str, xrays)]) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    covid = sorted(line["probability"] for line in first)
    set_threshold(three_class_run, (covid[2] + covid[3]) / 2)
    assert main(["--model", str(three_class_run), *map(str, xrays)]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    threshold = lines[0]["threshold"]
    assert [line["file"] for line in lines] == list(map(str, xrays))
    assert sum(line["label"] == "COVID" for line in lines) == 3  # half the images on each side
    for line in lines:
        probabilities = line["probabilities"]
        assert list(probabilities) == list(CLASSES) and sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert line["probability"] == probabilities["COVID"] and line["calibrated"] is False
        assert line["margin"] == pytest.approx(line["probability"] - threshold, abs=2e-6)  # each rounded to 6 decimals
        others = {c: p for c, p in probabilities.items() if c != "COVID"}
        assert line["label"] == ("COVID" if line["probability"] >= threshold else max(others, key=others.get))
        assert line["most_probable"] == max(probabilities, key=probabilities.get)
    assert "summary: 6 of 6 file(s) predicted" in err and "most probable" in err and "not calibrated" in err


def test_cli_as_a_module_on_a_three_class_run(three_class_run, xrays):
    result = subprocess.run([sys.executable, "-m", "helpers", "predict", "--model", str(three_class_run),
                             str(xrays[-1])], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["probabilities"]) == set(CLASSES)


def test_a_model_whose_outputs_do_not_match_its_classes_is_refused(three_class_run, tmp_path):
    folder = tmp_path / "synthetic" / "cnn"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text((three_class_run / "metrics.json").read_text())
    (folder / "predictions.csv").write_text((three_class_run / "predictions.csv").read_text())
    from helpers.models import build_cnn

    build_cnn(32, filters=(4, 8)).save(folder / "model.keras")  # one sigmoid unit, three classes in metrics.json
    with pytest.raises(ModelError, match=r"1 output unit\(s\) but its run has the classes"):
        load_model(folder)


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_three_class_hybrids_predict_every_class_and_explain_covid(three_class_hybrids, kind, xrays, capsys):
    info = load_model(three_class_hybrids[kind])
    assert info.kind == "hybrid" and info.classes == CLASSES and info.explanation == "occlusion sensitivity"
    prediction = predict_image(info, xrays[-1])
    assert list(prediction.probabilities) == list(CLASSES)
    assert sum(prediction.probabilities.values()) == pytest.approx(1) and not prediction.calibrated
    assert prediction.probability == prediction.probabilities["COVID"]
    assert prediction.heatmap.shape == prediction.image.shape
    assert main(["--model", str(three_class_hybrids[kind]), str(xrays[0])]) == 0
    assert set(json.loads(capsys.readouterr().out)["probabilities"]) == set(CLASSES)


# ---------------------------------------------------------------- the demo


def test_demo_card_shows_three_probabilities_and_switching_models_predicts_again(three_class_run, xrays):
    save_tiny_cnn("synthetic")
    app = demo.UploadDemo(model=three_class_run)
    labels = [label for label, _ in app.picker.options]
    assert "synthetic / cnn-three-class (NORMAL / PNEUMONIA / COVID) (SYNTHETIC)" in labels
    assert "synthetic / cnn (SYNTHETIC)" in labels
    test = json.loads((three_class_run / "metrics.json").read_text())["multiclass"]["test"]
    assert "task <b>three-class</b>" in app.model_note.value
    assert f"test accuracy {test['accuracy']:.3f}" in app.model_note.value
    app.on_upload({"new": ({"name": "chest.jpg", "content": memoryview(xrays[-1].read_bytes())},)})
    [card] = [child.value for child in app.results.children]
    assert card.count("<tr class='demo-class") == 3 and card.count("demo-most-probable") == 1
    assert re.findall(r"<tr class='demo-class[^>]*><td[^>]*>(\w+)", card) == list(CLASSES)
    assert "not a diagnosis" in card and "not calibrated" in card and cards.COVID_EXPLAINED in card
    assert "(COVID against the other classes)" in card and "0 (not COVID)" in card
    app.picker.value = [value for label, value in app.picker.options if label == "synthetic / cnn (SYNTHETIC)"][0]
    [binary] = [child.value for child in app.results.children]
    assert "<tr class='demo-class" not in binary and "synthetic / cnn " in binary and "0 (NORMAL)" in binary
    assert cards.THRESHOLD_MEANING + "." in binary and cards.COVID_EXPLAINED not in binary
    app.picker.value = str(three_class_run)
    [again] = [child.value for child in app.results.children]
    assert again.count("<tr class='demo-class") == 3 and "Round 3" in app.status.value
    assert demo.choose_model("synthetic", "cnn", task="three-class") == three_class_run.resolve()
    assert demo.choose_model("synthetic", "cnn") == (three_class_run.parent / "cnn").resolve()


def test_a_quick_model_for_a_task_is_trained_for_that_task(course_dirs, monkeypatch):
    seen = {}

    def fake_quick_cnn(dataset, images, *, output_dir, name, **kwargs):
        return SimpleNamespace(path=output_dir / dataset.name / f"{name}-{dataset.task}")

    monkeypatch.setattr("helpers.data.course_dataset",
                        lambda name, **kwargs: seen.update(kwargs) or SimpleNamespace(name=name, task=kwargs["task"]))
    monkeypatch.setattr("helpers.images.load_images", lambda *a, **k: None)
    monkeypatch.setattr("helpers.runs.quick_cnn", fake_quick_cnn)
    assert demo.quick_model("synthetic", task="three-class").name == "cnn-quick-three-class"
    assert seen["task"] == "three-class"


def test_a_covid_vs_pneumonia_model_calls_pneumonia_below_its_threshold(module_course_dirs, xrays, capsys):
    """Binary, but not NORMAL: the other class is PNEUMONIA in the JSON line, the card and the picker."""
    folder = save_tiny_cnn(task="covid-vs-pneumonia")
    info = load_model(folder)
    assert info.classes == ("PNEUMONIA", "COVID") and not info.multiclass
    assert info.label == "synthetic / cnn-covid-vs-pneumonia (PNEUMONIA / COVID) (SYNTHETIC data)"
    assert main(["--model", str(folder), *map(str, xrays)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(line["label"] == ("COVID" if line["probability"] >= line["threshold"] else "PNEUMONIA")
               for line in lines)
    assert all("probabilities" not in line for line in lines)  # the binary fields only
    card = cards.result_card(predict_image(info, xrays[0], with_gradcam=False), info)
    assert "0 (PNEUMONIA)" in card and "<tr class='demo-class" not in card
    assert demo.folder_label(folder) == "synthetic / cnn-covid-vs-pneumonia (PNEUMONIA / COVID) (SYNTHETIC)"
