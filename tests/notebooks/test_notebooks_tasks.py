"""The SMOKE series of the tasks other than the default, on the synthetic X-ray set (issue 20).

One session fixture runs every notebook for ``covid-vs-pneumonia`` and ``three-class``
(``runner.run_all(..., tasks=...)``, the two series side by side); the tests assert on what it
wrote. Marked ``tasks``: ``make test-colab`` runs it, in Colab's versions; ``make test`` runs the
default task's series (tests/notebooks/test_notebooks.py, marked ``smoke``) instead, so that CI runs
every series once and stays in budget.
"""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import check_recorded_metrics
from test_notebooks import EXPECTED, NOTEBOOKS, run_series

from helpers.data.tasks import get_task
from helpers.runs import run_name

pytestmark = pytest.mark.tasks

TASKS = ["covid-vs-pneumonia", "three-class"]
DATASET = "synthetic"  # the synthetic X-ray set gives every task; synthetic-ct runs the default task only
MODELS = ["cnn", "vgg16", "vgg16-xgboost", "vgg16-logreg"]
CHANCE_MARGIN = 0.25  # the CNNs' AUC must clear chance (0.5) by this much (SMOKE gave about 0.99 when written)


@pytest.fixture(scope="session")
def smoke_tasks(tmp_path_factory):
    """Every notebook in SMOKE mode for each task on the synthetic X-ray set (once per session)."""
    return run_series(tmp_path_factory.mktemp("smoke-tasks"), datasets=[DATASET], tasks=TASKS, report=False)


def executed(out, task, name):
    return nbformat.read(out / "notebooks" / DATASET / task / f"{name}.ipynb", as_version=4)


def printed(notebook) -> str:
    return json.dumps([cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"])


def test_every_notebook_ran_for_each_task_into_its_own_folder(smoke_tasks):
    out, rows = smoke_tasks
    from helpers.app import runner

    assert all("TASK" in runner.declared_parameters(path) for path in NOTEBOOKS)  # else the runner leaves it out
    assert [(r["notebook"], r["dataset"], r["task"]) for r in rows] == [
        (name, DATASET, task) for task in TASKS for name in EXPECTED]
    assert all(r["status"] == "ok" for r in rows)
    for task in TASKS:
        for name in EXPECTED:
            notebook = executed(out, task, name)
            assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not list((out / "notebooks" / DATASET).glob("*.ipynb"))  # the default task's place stays free


@pytest.mark.parametrize("task", TASKS)
def test_runs_are_written_under_the_task_run_names_with_task_and_classes(smoke_tasks, task):
    out, _ = smoke_tasks
    classes = get_task(task).classes
    for model in MODELS:
        folder = out / DATASET / run_name(model, task)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["model"], metrics["task"], metrics["classes"]) == (model, task, list(classes))
        predictions = pd.read_csv(folder / "predictions.csv", float_precision="round_trip")
        assert set(predictions["label"]) == set(classes)
        assert (predictions["y_true"] == (predictions["label"] == "COVID")).all()
        probability_columns = [c for c in predictions.columns if c.startswith("prob_")]
        if len(classes) == 3:
            assert probability_columns == [f"prob_{c}" for c in classes]
            np.testing.assert_allclose(predictions[probability_columns].sum(axis=1), 1.0, atol=1e-5)
            np.testing.assert_allclose(predictions["probability"], predictions["prob_COVID"])
            assert set(metrics["multiclass"]) == {"val", "test"}
        else:
            assert probability_columns == [] and "multiclass" not in metrics
        for split in ("val", "test"):  # the binary fields: COVID against the rest, for every task
            part = predictions[predictions["split"] == split]
            check_recorded_metrics(metrics[split], part["y_true"], part["probability"], metrics["threshold"])
    assert not (out / DATASET / "cnn").exists()  # nothing under the default task's run names


def test_the_cnns_learn_the_synthetic_classes_of_each_task(smoke_tasks):
    out, _ = smoke_tasks
    three = json.loads((out / DATASET / run_name("cnn", "three-class") / "metrics.json").read_text())
    macro_auc = three["multiclass"]["test"]["macro_auc"]  # one-vs-rest, averaged over the three classes
    assert macro_auc > 0.5 + CHANCE_MARGIN, f"macro AUC {macro_auc:.3f}: the three-class CNN is near chance"
    pneumonia = json.loads((out / DATASET / run_name("cnn", "covid-vs-pneumonia") / "metrics.json").read_text())
    auc = pneumonia["test"]["auc"]
    assert auc > 0.5 + CHANCE_MARGIN, f"AUC {auc:.3f}: the CNN cannot tell COVID from the synthetic pneumonia"


def test_the_notebooks_print_the_task_and_build_its_head(smoke_tasks):
    out, _ = smoke_tasks
    for task in TASKS:
        classes = ", ".join(get_task(task).classes)
        exploration = printed(executed(out, task, "01_data_exploration"))
        assert f"task '{task}': classes {classes}" in exploration and "PNEUMONIA" in exploration
        assert f"task {task!r} (classes {classes}): synthetic findings mapped" in exploration  # the mapping note
        head = "3 unit(s), softmax" if task == "three-class" else "1 unit(s), sigmoid"
        assert f"task {task}: classes {classes} -> output layer {head}" in printed(executed(out, task,
                                                                                           "02_cnn_from_scratch"))
        assert f"{run_name('cnn', task)} (task {task}: classes {classes})" in printed(executed(out, task,
                                                                                               "06_upload_demo"))
    three = printed(executed(out, "three-class", "02_cnn_from_scratch"))
    assert "COVID against the rest" in three and "macro one-vs-rest AUC" in three
