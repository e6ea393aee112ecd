"""helpers.runs: the run-folder contract, its one reading policy, and the one quick CNN."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import data, runs
from helpers.data import Dataset

ROOT = Path(__file__).resolve().parents[1]


def fake_dataset(name: str = "synthetic", *, n_patients: int = 24, seed: int = 0) -> tuple[Dataset, pd.DataFrame]:
    """A Dataset (two images per patient, no files needed) and predictions for its val and test images."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), 2)
    manifest = pd.DataFrame({
        "path": [f"img{i}.png" for i in range(len(patients))],
        "patient_id": [f"p{p}" for p in patients],
        "label": np.where(patients % 2 == 0, "COVID", "NORMAL"),
        "split": np.array(["train", "val", "test"])[patients % 3],
    })
    dataset = Dataset(name=name, root=Path("."), manifest=manifest, modality="xray", synthetic=True)
    scored = manifest[manifest["split"] != "train"]
    y = (scored["label"] == "COVID").astype(int).to_numpy()
    prob = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, len(y)), 0, 1)
    predictions = scored.assign(y_true=y, probability=prob).reset_index(drop=True)
    return dataset, predictions


def saved_run(root: Path, name: str = "cnn", **fake) -> Path:
    dataset, predictions = fake_dataset(**fake)
    runs.save_run(name, dataset=dataset, predictions=predictions, history={"loss": [0.7, 0.5]}, output_dir=root)
    return root / dataset.name / name


def test_save_then_read_round_trip(tmp_path):
    dataset, predictions = fake_dataset()
    metrics = runs.save_run("cnn", dataset=dataset, predictions=predictions, history={"loss": [0.7, 0.5]},
                            weights="scratch", img_size=64, output_dir=tmp_path)
    run = runs.read_run(tmp_path / "synthetic" / "cnn")
    assert (run.dataset, run.model, run.weights, run.synthetic) == ("synthetic", "cnn", "scratch", True)
    assert run.metrics == json.loads(json.dumps(metrics))
    assert run.predictions[predictions.columns].equals(predictions)  # every probability survives the CSV
    test = predictions[predictions["split"] == "test"]
    assert run.metrics["test"]["auc"] == pytest.approx(roc_auc_score(test["y_true"], test["probability"]))
    assert run.threshold == metrics["threshold"] and run.threshold in set(predictions["probability"])
    assert run.test_fingerprint == data.test_fingerprint(dataset.manifest) and len(run.test_fingerprint) == 16
    assert run.kind is None and run.model_file is None
    assert runs.load_history(run.path) == {"loss": [0.7, 0.5]}
    assert run.metrics["n_images"] == {"train": 16, "val": 16, "test": 16}
    assert not list(run.path.glob(".*"))  # no temporary file left behind


def test_a_failed_save_leaves_an_unfinished_run_never_a_mixed_one(tmp_path):
    folder = saved_run(tmp_path)  # a complete run, then a retraining whose save fails half-way

    class FailingModel:
        def count_params(self):
            return 1

        def save(self, path):
            Path(path).write_bytes(b"half a model")
            raise OSError("disk full")

    dataset, predictions = fake_dataset()
    with pytest.raises(OSError, match="disk full"):
        runs.save_run("cnn", dataset=dataset, predictions=predictions, model=FailingModel(), output_dir=tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["history.json", "predictions.csv"]  # no temporary file
    with pytest.raises(runs.RunError, match="metrics.json is missing"):
        runs.read_run(folder)


def test_a_run_gets_the_dataset_record_of_its_test_set(tmp_path):
    from helpers.data.dataset import saved_files

    dataset, _ = fake_dataset()
    uncapped, capped = (saved_files(dataset.name, cap, root=tmp_path)[0] for cap in (None, 10))
    uncapped.parent.mkdir(parents=True)
    uncapped.write_text(json.dumps({"max_per_class": None, "test_fingerprint": "another test set"}))
    capped.write_text(json.dumps({"max_per_class": 10, "test_fingerprint": dataset.test_fingerprint}))
    folder = saved_run(tmp_path)
    assert runs.read_run(folder).dataset_info["max_per_class"] == 10  # found by its fingerprint, whatever the cap
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "test_fingerprint": None}))
    assert runs.read_run(folder).dataset_info["test_fingerprint"] == "another test set"  # an older run: its cap's


def test_model_kinds(tmp_path):
    folder = saved_run(tmp_path)
    (folder / "model.ubj").write_bytes(b"")
    assert runs.read_run(folder).kind is None  # a classifier file without features.json is no model
    (folder / "features.json").write_text("{}")
    run = runs.read_run(folder)
    assert (run.kind, run.model_file.name) == ("hybrid", "model.ubj")
    with pytest.raises(runs.RunError, match="hybrid"):
        run.keras_model()
    (folder / "model.keras").write_bytes(b"")
    assert runs.read_run(folder).kind == "keras"
    assert runs.run_folders(tmp_path, kind="hybrid") == [] and runs.run_folders(tmp_path, kind="keras") == [folder]


def _no_metrics(folder: Path) -> None:
    (folder / "metrics.json").unlink()


def _edit_metrics(text: str):
    return lambda folder: (folder / "metrics.json").write_text(text)


def _set_threshold(folder: Path) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "threshold": "high"}))


def _drop_probability(folder: Path) -> None:
    frame = pd.read_csv(folder / "predictions.csv")
    frame.drop(columns="probability").to_csv(folder / "predictions.csv", index=False)


BROKEN = {
    "missing metrics.json": (_no_metrics, r"metrics\.json is missing"),
    "invalid JSON": (_edit_metrics("{not json"), r"metrics\.json is not readable JSON"),
    "a JSON list": (_edit_metrics("[1, 2]"), r"metrics\.json holds a JSON list, not an object"),
    "a threshold that is no number": (_set_threshold, r"threshold 'high' is not a number"),
    "predictions without probability": (_drop_probability, r"predictions\.csv lacks the column\(s\) \['probability'\]"),
}


@pytest.mark.parametrize("breakage", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_folder_is_a_clear_error_and_read_runs_skips_it_once(tmp_path, breakage):
    damage, message = breakage
    good, broken = saved_run(tmp_path, "cnn"), saved_run(tmp_path, "densenet121")
    damage(broken)
    with pytest.raises(runs.RunError, match=message) as error:
        runs.read_run(broken)
    assert str(broken) in str(error.value) and "re-run the notebook" in str(error.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = runs.read_runs(tmp_path)
    assert [run.path for run in found] == [good]
    assert [str(w.message) for w in caught] == [f"skipped: {error.value}"]


def test_read_runs_leaves_out_what_is_no_run(tmp_path):
    folder = saved_run(tmp_path)
    for other in ("external", "notebooks", ".ipynb_checkpoints"):
        (folder.parent / other).mkdir()
    (tmp_path / "report_files").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [run.path for run in runs.read_runs(tmp_path)] == [folder]
        assert runs.read_runs(tmp_path, dataset="covid-ct") == []


def test_external_records_round_trip_and_bad_entries_are_warned(tmp_path):
    record = {"model": "cnn", "trained_on": "synthetic", "evaluated_on": "actualmed", "auc": 0.6}
    path = runs.save_external(record, output_dir=tmp_path)
    assert path == tmp_path / "synthetic" / "external" / "cnn-on-actualmed.json"
    (path.parent / "list.json").write_text(json.dumps([1, {**record, "model": "vgg"}]))
    with pytest.warns(UserWarning, match="list.json: 1 is not a JSON object"):
        found = runs.read_external(tmp_path)
    assert [(r["file"], r["model"]) for r in found] == [
        ("synthetic/external/cnn-on-actualmed.json", "cnn"), ("synthetic/external/list.json", "vgg")]


@pytest.mark.slow
def test_quick_cnn_trains_when_there_is_none_and_reuses_it(tmp_path, capsys):
    from helpers.data import course_dataset
    from helpers.images import load_images
    from helpers.models.pipeline import split_arrays
    from helpers.models.train import predict

    dataset = course_dataset("synthetic", smoke=True, verbose=False)
    image_set = load_images(dataset, 32, progress=False)
    out = tmp_path / "demo-models"
    trained = runs.quick_cnn(dataset, image_set, output_dir=out, epochs=1, batch_size=32)
    assert "Trained a quick 32px CNN" in capsys.readouterr().out
    assert trained.path == out / dataset.name / "cnn" and trained.kind == "keras"
    assert trained.test_fingerprint == dataset.test_fingerprint and trained.metrics["params"]["quick"]
    stamp = (trained.path / "model.keras").stat().st_mtime_ns

    reused = runs.quick_cnn(dataset, image_set, output_dir=out, epochs=1)
    assert "Using the CNN already trained" in capsys.readouterr().out
    assert (reused.path / "model.keras").stat().st_mtime_ns == stamp
    test_images = split_arrays(image_set, "test")[0]
    assert np.allclose(predict(reused.keras_model(), test_images), reused.split("test")["probability"], atol=1e-5)

    with pytest.raises(runs.RunError, match="takes 32px images, these are 48px"):
        runs.quick_cnn(dataset, load_images(dataset, 48, progress=False), output_dir=out)
    assert (trained.path / "model.keras").stat().st_mtime_ns == stamp  # nothing usable is overwritten


def test_runs_evaluation_and_data_import_without_tensorflow():
    code = ("import sys, helpers.runs, helpers.evaluation, helpers.data; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
