"""helpers.runs for every task: run names, three-class predictions and metrics, reading by task."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from helpers import runs
from helpers.data import Dataset

THREE = ("NORMAL", "PNEUMONIA", "COVID")


def task_dataset(task: str, classes: tuple[str, ...], *, n_patients: int = 60) -> Dataset:
    """A Dataset of ``task`` (two images per patient, classes in turn, no files needed)."""
    patients = np.repeat(np.arange(n_patients), 2)
    manifest = pd.DataFrame({
        "path": [f"img{i}.png" for i in range(len(patients))],
        "patient_id": [f"p{p}" for p in patients],
        "label": np.asarray(classes)[patients % len(classes)],
        "split": np.array(["train", "val", "test"])[(patients // len(classes)) % 3],
    })
    return Dataset(name="synthetic", root=Path("."), manifest=manifest, modality="xray", synthetic=True, task=task)


def informative_probabilities(dataset: Dataset, split: str, seed: int) -> np.ndarray:
    """Softmax scores that favour each image's true class: the known answer is well above chance."""
    rows = dataset.manifest[dataset.manifest["split"] == split]
    truth = rows["label"].map({c: i for i, c in enumerate(dataset.classes)}).to_numpy()
    logits = np.random.default_rng(seed).normal(0, 1, (len(rows), len(dataset.classes)))
    logits[np.arange(len(rows)), truth] += 1.5
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def save_three_class(root: Path, seed: int = 0) -> tuple[Dataset, dict]:
    dataset = task_dataset("three-class", THREE)
    image_set = SimpleNamespace(manifest=dataset.manifest)
    probabilities = {s: informative_probabilities(dataset, s, seed + i) for i, s in enumerate(("val", "test"))}
    frame = runs.predictions_frame(image_set, probabilities, classes=dataset.classes)
    return dataset, runs.save_run("cnn", dataset=dataset, predictions=frame, output_dir=root)


def test_run_names_keep_the_default_task_unchanged():
    assert runs.run_name("cnn") == "cnn" and runs.run_name("vgg16-xgboost", "covid-vs-normal") == "vgg16-xgboost"
    assert runs.run_name("cnn", "three-class") == "cnn-three-class"
    with pytest.raises(ValueError, match="unknown task 'three'"):
        runs.run_name("cnn", "three")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_three_class_run_keeps_every_class_probability_and_its_metrics(tmp_path, seed):
    dataset, metrics = save_three_class(tmp_path, seed)
    run = runs.read_run(tmp_path / "synthetic" / "cnn-three-class")
    assert (run.model, run.name, run.task, run.classes, run.multiclass) == (
        "cnn", "cnn-three-class", "three-class", THREE, True)
    test = run.split("test")
    prob = run.probabilities("test")
    assert prob.shape == (len(test), 3) and np.allclose(prob.sum(axis=1), 1)
    assert np.array_equal(test["probability"], test["prob_COVID"])  # the binary tools read P(COVID)
    assert np.array_equal(test["y_true"], (test["label"] == "COVID").astype(int))
    truth = test["label"].map({c: i for i, c in enumerate(THREE)})
    summary = metrics["multiclass"]["test"]
    assert summary["accuracy"] == pytest.approx(accuracy_score(truth, prob.argmax(axis=1)))
    assert summary["macro_auc"] == pytest.approx(roc_auc_score(truth, prob, multi_class="ovr"))
    assert summary["macro_auc"] > 0.7  # the scores favour the true class by construction
    assert np.array(summary["confusion"]).sum() == len(test)
    assert metrics["test"]["auc"] == pytest.approx(roc_auc_score(test["y_true"], test["probability"]))
    assert set(summary["sensitivity"]) == set(THREE) and run.metrics == json.loads(json.dumps(metrics))


def test_covid_vs_pneumonia_is_binary_with_covid_positive(tmp_path):
    dataset = task_dataset("covid-vs-pneumonia", ("PNEUMONIA", "COVID"))
    scored = dataset.manifest[dataset.manifest["split"] != "train"]
    y = (scored["label"] == "COVID").astype(int).to_numpy()
    frame = runs.predictions_frame(SimpleNamespace(manifest=dataset.manifest),
                                   {s: y[(scored["split"] == s).to_numpy()] * 0.8 + 0.1 for s in ("val", "test")})
    runs.save_run("cnn", dataset=dataset, predictions=frame, output_dir=tmp_path)
    run = runs.read_run(tmp_path / "synthetic" / "cnn-covid-vs-pneumonia")
    assert (run.task, run.classes, run.multiclass) == ("covid-vs-pneumonia", ("PNEUMONIA", "COVID"), False)
    assert run.metrics["test"]["auc"] == 1.0 and "multiclass" not in run.metrics
    assert np.allclose(run.probabilities("val")[:, 1], run.split("val")["probability"])


def test_runs_are_read_by_task_and_older_runs_read_as_the_default_task(tmp_path):
    save_three_class(tmp_path)
    binary = task_dataset("covid-vs-normal", ("NORMAL", "COVID"))
    scored = binary.manifest[binary.manifest["split"] != "train"]
    frame = scored.assign(y_true=(scored["label"] == "COVID").astype(int), probability=0.5)
    runs.save_run("cnn", dataset=binary, predictions=frame, output_dir=tmp_path)
    older = tmp_path / "synthetic" / "cnn" / "metrics.json"
    metrics = json.loads(older.read_text())
    older.write_text(json.dumps({k: v for k, v in metrics.items() if k not in ("task", "classes")}))
    for folder in ("cnn", "cnn-three-class"):
        (tmp_path / "synthetic" / folder / "model.keras").write_bytes(b"")
    assert [r.name for r in runs.read_runs(tmp_path)] == ["cnn", "cnn-three-class"]
    assert [(r.name, r.task, r.classes) for r in runs.read_runs(tmp_path, task="covid-vs-normal")] == [
        ("cnn", "covid-vs-normal", ("NORMAL", "COVID"))]
    assert [r.name for r in runs.read_runs(tmp_path, "synthetic", task="three-class")] == ["cnn-three-class"]
    assert [f.name for f in runs.run_folders(tmp_path, task="three-class")] == ["cnn-three-class"]
    assert [f.name for f in runs.run_folders(tmp_path, task="covid-vs-normal")] == ["cnn"]


def test_a_three_class_run_without_a_class_column_is_a_clear_error(tmp_path):
    save_three_class(tmp_path)
    path = tmp_path / "synthetic" / "cnn-three-class" / "predictions.csv"
    pd.read_csv(path).drop(columns="prob_PNEUMONIA").to_csv(path, index=False)
    with pytest.raises(runs.RunError, match=r"lacks the column\(s\) \['prob_PNEUMONIA'\].*one prob_<CLASS> per class"):
        runs.read_run(path.parent)


def test_a_probability_matrix_needs_its_classes():
    dataset = task_dataset("three-class", THREE)
    with pytest.raises(ValueError, match="3 probability columns need classes= of that many"):
        runs.predictions_frame(SimpleNamespace(manifest=dataset.manifest),
                               {"test": informative_probabilities(dataset, "test", 0)})


@pytest.mark.slow
@pytest.mark.tensorflow
def test_quick_cnn_trains_a_softmax_for_three_classes(tmp_path):
    from helpers.data import course_dataset
    from helpers.images import load_images

    dataset = course_dataset("synthetic", smoke=True, verbose=False, task="three-class")
    run = runs.quick_cnn(dataset, load_images(dataset, 32, progress=False), output_dir=tmp_path, epochs=1)
    assert run.path == tmp_path / dataset.name / "cnn-three-class"
    assert run.keras_model().output_shape[-1] == 3 and set(run.split("test")["label"]) == set(THREE)
    assert np.allclose(run.probabilities("test").sum(axis=1), 1, atol=1e-5)
    assert set(run.metrics["multiclass"]["test"]) >= {"accuracy", "macro_auc", "sensitivity", "ppv", "confusion"}
