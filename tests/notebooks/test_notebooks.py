"""The notebooks: contract (badge, setup cell, parameters, no outputs), the Colab setup cell, and a SMOKE run.

The SMOKE series runs once per test session (a session-scoped fixture) and the
tests below assert on what it wrote, instead of executing notebooks test by test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import types

import nbformat
import pandas as pd
import pytest
from conftest import ROOT, check_recorded_metrics

from tools import build_notebooks

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["01_data_exploration", "02_cnn_from_scratch", "03_transfer_learning", "04_vgg16_xgboost_hybrid",
            "05_evaluation_and_explainability", "06_upload_demo"]
SMOKE_DATASETS = os.environ.get("COURSE_SMOKE_DATASETS", "synthetic,synthetic-ct").split(",")
FORBIDDEN = {"tensorflow", "tensorflow-cpu", "keras", "numpy", "xgboost", "jax", "torch"}


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(path):
    return [cell for cell in read(path).cells if cell.cell_type == "code"]


def test_the_course_has_its_six_notebooks():
    assert [nb.stem for nb in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path):
    notebook = read(path)
    nbformat.validate(notebook)
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells(path)), "outputs committed"
    title = notebook.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith(f"# {path.stem[:2]}")
    assert build_notebooks.colab_url(path.stem) in title.source
    assert f"https://colab.research.google.com/github/{build_notebooks.REPO}/blob/{build_notebooks.REF}/notebooks/{path.name}" in title.source
    assert "not a diagnostic device" in title.source
    assert notebook.cells[1].source == build_notebooks.SETUP_CELL
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "DATASET" in tagged[0].source and "SMOKE = False" in tagged[0].source
    assert notebook.metadata["accelerator"] == "GPU"
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    for heading in ("Key takeaways", "Exercises", "References"):
        assert heading in text, f"{path.name} has no '{heading}' section"


def test_notebooks_are_built_from_their_sources():
    assert build_notebooks.main(["--check"]) == 0, "run `make notebooks`"


def pip_commands(source: str) -> list[list[str]]:
    """Every pip install in a cell: shell escapes, %pip magics and subprocess calls."""
    commands = [shlex.split(m) for m in re.findall(r"^\s*[!%]\s*pip\s+install\s+(.*)$", source, re.M)]
    if re.search(r"pip[\"']?\s*,\s*[\"']install", source):
        commands.append(re.findall(r"[\"']([^\"']+)[\"']", source.split("install", 1)[1].split("check=")[0]))
    return commands


def package_name(argument: str) -> str:
    return re.split(r"[<>=!~\[ @]", argument.strip(), maxsplit=1)[0].lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_installs_what_colab_has_or_an_unpinned_git_ref(path):
    for cell in code_cells(path):
        for command in pip_commands(cell.source):
            packages = [a for a in command if not a.startswith("-")]
            assert not FORBIDDEN & {package_name(p) for p in packages}, f"{path.name} installs {packages}"
            for url in [p for p in packages if "git+" in p]:
                assert re.search(r"@(v\d+\.\d+\.\d+|[0-9a-f]{40})$", url), f"{path.name}: unpinned {url}"


def recording_pip(monkeypatch, calls: list) -> None:
    """Record pip invocations instead of running them; everything else runs for real."""
    real = subprocess.run

    def run(args, *rest, **kwargs):
        if isinstance(args, (list, tuple)) and "pip" in args:
            calls.append(list(args))
            return subprocess.CompletedProcess(args, 0)
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)


def test_colab_setup_cell_installs_only_the_pinned_course_package_and_what_colab_lacks(monkeypatch):
    calls = []
    import google.protobuf  # noqa: F401  (the real google namespace package stays)

    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("widgets"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr("helpers.environment.IS_COLAB", True)
    recording_pip(monkeypatch, calls)
    namespace = {}
    exec(build_notebooks.SETUP_CELL, namespace)
    pip = [c for c in calls if isinstance(c, list)]
    assert len(pip) == 1 and pip[0][:4] == [sys.executable, "-m", "pip", "install"]
    assert "--no-deps" in pip[0], "must never let pip upgrade Colab's TensorFlow/NumPy"
    packages = [a for a in pip[0][4:] if not a.startswith("-")]
    course = [p for p in packages if "git+" in p]
    assert len(course) == 1 and re.search(r"covid-course @ git\+https://github.com/[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+$",
                                          course[0])
    assert {package_name(p) for p in packages if p not in course} == {"pydicom", "imagehash"}
    assert not FORBIDDEN & {package_name(p) for p in packages}
    assert namespace["IS_COLAB"] is True and namespace["ENV"].seed == 42


def test_setup_cell_installs_nothing_outside_colab(monkeypatch):
    calls = []
    recording_pip(monkeypatch, calls)
    namespace = {}
    exec(build_notebooks.SETUP_CELL, namespace)
    assert calls == [] and namespace["IS_COLAB"] is False


# ------------------------------------------------------------------------------------ the SMOKE series


def run_series(root, **options) -> tuple:
    """``runner.run_all("smoke", ...)`` with the data and outputs in ``root``; ``(outputs folder, rows)``.

    Session fixtures cannot use monkeypatch, so the two folders' variables are set and restored here.
    """
    from helpers.app import runner

    saved = {k: os.environ.get(k) for k in ("COURSE_DATA_DIR", "COURSE_OUTPUT_DIR")}
    os.environ.update(COURSE_DATA_DIR=str(root / "data"), COURSE_OUTPUT_DIR=str(root / "outputs"))
    try:
        rows = runner.run_all("smoke", force=True, **options)
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return root / "outputs", rows


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """Run every notebook in SMOKE mode, offline, on the synthetic X-ray and CT sets (once per session)."""
    return run_series(tmp_path_factory.mktemp("smoke"), datasets=SMOKE_DATASETS)


def test_smoke_series_runs_every_notebook_on_each_dataset(smoke):
    out, rows = smoke
    assert [(r["notebook"], r["dataset"]) for r in rows] == [(nb, ds) for ds in SMOKE_DATASETS for nb in EXPECTED]
    assert all(r["status"] == "ok" for r in rows)
    for dataset in SMOKE_DATASETS:
        for name in EXPECTED:
            executed = read(out / "notebooks" / dataset / f"{name}.ipynb")
            errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors


TENSORFLOW_START_UP = ("absl::InitializeLog", "oneDNN custom operations", "TensorFlow binary is optimized",
                       "To enable the following instructions")


def test_executed_notebooks_begin_with_the_setup_summary_not_tensorflow_start_up_lines(smoke):
    """Issue 15: the first output a learner reads is the versions line of ``setup()``, not TensorFlow's C++ log."""
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        for name in EXPECTED:
            executed = read(out / "notebooks" / dataset / f"{name}.ipynb")
            text = json.dumps([c.get("outputs", []) for c in executed.cells])
            assert not [line for line in TENSORFLOW_START_UP if line in text], f"{dataset}/{name}"
            setup_cell = executed.cells[1]
            assert setup_cell.source == build_notebooks.SETUP_CELL
            assert setup_cell.outputs[0]["name"] == "stdout" and setup_cell.outputs[0]["text"].startswith("python ")


def test_smoke_runs_say_loudly_that_the_data_are_synthetic(smoke):
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        executed = read(out / "notebooks" / dataset / "02_cnn_from_scratch.ipynb")
        text = json.dumps([c.get("outputs", []) for c in executed.cells])
        assert "SYNTHETIC DATA" in text


MODELS = ["cnn", "vgg16", "vgg16-xgboost"]


@pytest.mark.parametrize("model", MODELS)
def test_model_artifacts_follow_the_contract_and_agree_with_their_predictions(smoke, model):
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        folder = out / dataset / model
        metrics = json.loads((folder / "metrics.json").read_text())
        predictions = pd.read_csv(folder / "predictions.csv", float_precision="round_trip")
        assert list(predictions.columns)[:6] == ["path", "patient_id", "split", "label", "y_true", "probability"]
        assert set(predictions["split"]) == {"val", "test"} and predictions["probability"].between(0, 1).all()
        assert metrics["dataset"] == dataset and metrics["synthetic"] is True and metrics["model"] == model
        for split in ("val", "test"):
            part = predictions[predictions["split"] == split]
            assert metrics[split]["n"] == len(part) == metrics["n_images"][split]
            check_recorded_metrics(metrics[split], part["y_true"], part["probability"], metrics["threshold"])
        assert any((folder / name).exists() for name in ("model.keras", "model.ubj"))
        assert metrics["environment"]["python"] and metrics["train_seconds"] >= 0


def test_notebooks_02_to_04_score_their_models_on_one_test_set(smoke):
    """02, 03 and 04 run apart but record the same test split: the comparison in 05 is fair."""
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        recorded = {model: json.loads((out / dataset / model / "metrics.json").read_text()).get("test_fingerprint")
                    for model in MODELS}
        tests = [pd.read_csv(out / dataset / model / "predictions.csv").query("split == 'test'") for model in MODELS]
        assert len(set(recorded.values())) == 1 and None not in recorded.values(), f"{dataset}: {recorded}"
        assert all(sorted(t["path"]) == sorted(tests[0]["path"]) for t in tests)  # the fingerprint's claim, checked


def test_smoke_cnn_learns_the_synthetic_task(smoke):
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        metrics = json.loads((out / dataset / "cnn" / "metrics.json").read_text())
        assert metrics["test"]["auc"] > 0.8, f"{dataset}: a CNN that cannot learn synthetic data means a broken pipeline"


def test_dataset_records_and_the_report_are_written(smoke):
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        info = json.loads((out / dataset / "dataset.json").read_text())
        assert info["synthetic"] is True and sum(info["splits"]["test"].values()) > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "SYNTHETIC" in html and "not a diagnostic device" in html
    timings = json.loads((out / "notebooks" / "timings.json").read_text())
    assert {t["notebook"] for t in timings} == set(EXPECTED)


# ------------------------------------------------------------ the figures and lesson cells of each notebook

# Cells that must show figures in every SMOKE run: (a call in the cell's source, images that cell must show).
FIGURES = {
    "02_cnn_from_scratch": [("plots.plot_images(", 1), ("plots.plot_augmentations(", 1), ("plots.plot_history(", 1),
                            ("plots.plot_roc_pr([run])", 2)],  # ROC and confusion matrix in one cell
    "03_transfer_learning": [("plots.plot_phased_history(history", 1), ("plots.plot_roc_pr(runs)", 2)],
    "04_vgg16_xgboost_hybrid": [("plots.plot_boosting(", 1), ("plots.plot_roc_pr(hybrid_runs)", 2)],
    "05_evaluation_and_explainability": [("plots.plot_forest(", 1), ("plot_gradcam_grid(panels", 1),
                                         ("plots.plot_outcome_gradcam(", 1), ("plots.plot_roc_pr(", 1)],
}
MIN_IMAGES = {"01_data_exploration": 11, "02_cnn_from_scratch": 5, "03_transfer_learning": 3,
              "04_vgg16_xgboost_hybrid": 6, "05_evaluation_and_explainability": 9}  # as counted in SMOKE runs


def images_of(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_smoke_notebooks_show_their_figures(smoke):
    out, _ = smoke
    for dataset in SMOKE_DATASETS:
        for name, minimum in MIN_IMAGES.items():
            executed = read(out / "notebooks" / dataset / f"{name}.ipynb")
            shown = sum(images_of(cell) for cell in executed.cells if cell.cell_type == "code")
            assert shown >= minimum, f"{dataset}/{name}: {shown} figures, expected at least {minimum}"
            for call, count in FIGURES.get(name, []):
                cells = [cell for cell in executed.cells if cell.cell_type == "code" and call in cell.source]
                assert cells, f"{name} has no cell calling {call}"
                assert max(images_of(cell) for cell in cells) >= count, f"{dataset}/{name}: {call} showed no figure"


def test_smoke_notebooks_ran_their_lesson_cells(smoke):
    """The tagged cells that hold the lesson (the CNN, the transfer recipe, the booster, Grad-CAM) executed cleanly."""
    out, _ = smoke
    wanted = {"02_cnn_from_scratch": {"lesson-augment", "lesson-cnn", "lesson-compile", "lesson-fit"},
              "03_transfer_learning": {"lesson-transfer", "lesson-fit", "lesson-finetune"},
              "04_vgg16_xgboost_hybrid": {"lesson-features", "lesson-xgboost"},
              "05_evaluation_and_explainability": {"lesson-gradcam"}}
    for dataset in SMOKE_DATASETS:
        for name, tags in wanted.items():
            executed = read(out / "notebooks" / dataset / f"{name}.ipynb")
            ran = {tag for cell in executed.cells if cell.cell_type == "code" and cell.get("execution_count")
                   and not any(o.get("output_type") == "error" for o in cell.get("outputs", []))
                   for tag in cell.metadata.get("tags", [])}
            assert tags <= ran, f"{dataset}/{name}: lesson cells {sorted(tags - ran)} did not run"
    for dataset in SMOKE_DATASETS:
        metrics = json.loads((out / dataset / "vgg16" / "metrics.json").read_text())
        assert isinstance(metrics["params"]["fine_tune_kept"], bool) and metrics["params"]["fine_tune_start"] >= 0
