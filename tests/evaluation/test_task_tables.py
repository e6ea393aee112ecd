"""Comparison tables and confusion figures for every task: per task a baseline named in its classes."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from helpers import evaluation as ev  # noqa: E402
from helpers import plots, runs  # noqa: E402
from helpers.data import Dataset  # noqa: E402
from helpers.evaluation import multiclass  # noqa: E402

TASKS = {"covid-vs-normal": ("NORMAL", "COVID"), "covid-vs-pneumonia": ("PNEUMONIA", "COVID"),
         "three-class": ("NORMAL", "PNEUMONIA", "COVID")}


def task_run(root: Path, task: str, *, covid_every: int = 3, seed: int = 0, n_patients: int = 90) -> runs.Run:
    """A saved run of ``task``: one image per patient, COVID every ``covid_every``-th, informative scores."""
    classes = TASKS[task]
    patient = np.arange(n_patients)
    others = np.asarray(classes[:-1])[(patient // covid_every) % (len(classes) - 1)]
    labels = np.where(patient % covid_every == 0, "COVID", others)
    manifest = pd.DataFrame({"path": [f"{task}-{i}.png" for i in patient], "patient_id": [f"p{i}" for i in patient],
                             "label": labels, "split": np.array(["train", "val", "test"])[(patient // 3) % 3]})
    dataset = Dataset(name="synthetic", root=Path("."), manifest=manifest, modality="xray", synthetic=True, task=task)
    rng = np.random.default_rng(seed)
    probabilities = {}
    for split in ("val", "test"):
        truth = manifest.loc[manifest["split"] == split, "label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        logits = rng.normal(0, 1, (len(truth), len(classes)))
        logits[np.arange(len(truth)), truth] += 2.0
        prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        probabilities[split] = prob if len(classes) > 2 else prob[:, 1]
    frame = runs.predictions_frame(SimpleNamespace(manifest=manifest), probabilities, classes=classes)
    runs.save_run("cnn", dataset=dataset, predictions=frame, output_dir=root)
    return runs.read_run(root / "synthetic" / runs.run_name("cnn", task))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def baseline_rule(table: pd.DataFrame, task: str) -> str:
    return table[(table["model"] == ev.BASELINE) & (table["task"] == task)]["threshold_rule"].item()


def test_the_baseline_of_covid_vs_pneumonia_is_pneumonia(tmp_path):
    run = task_run(tmp_path, "covid-vs-pneumonia")
    assert "always PNEUMONIA (majority of val)" == baseline_rule(ev.comparison_table([run], n_boot=50),
                                                                   "covid-vs-pneumonia")
    recorded = dataclasses.replace(run, dataset_info={"splits": {"train": {"PNEUMONIA": 20, "COVID": 10}}})
    assert baseline_rule(ev.comparison_table([recorded], n_boot=50), "covid-vs-pneumonia") == \
        "always PNEUMONIA (majority of train)"
    mostly_covid = dataclasses.replace(run, dataset_info={"splits": {"train": {"PNEUMONIA": 5, "COVID": 10}}})
    assert baseline_rule(ev.comparison_table([mostly_covid], n_boot=50), "covid-vs-pneumonia") == \
        "always COVID (majority of train)"


def test_three_class_train_counts_give_covid_against_both_other_classes(tmp_path):
    run = task_run(tmp_path, "three-class")
    # COVID is the largest class, but NORMAL and PNEUMONIA together outnumber it
    info = {"splits": {"train": {"NORMAL": 8, "PNEUMONIA": 8, "COVID": 12}}}
    table = ev.comparison_table([dataclasses.replace(run, dataset_info=info)], n_boot=50)
    assert baseline_rule(table, "three-class") == "always not COVID (NORMAL or PNEUMONIA) (majority of train)"


def test_each_task_gets_its_own_baseline_and_no_different_test_set_warning(tmp_path):
    found = [task_run(tmp_path, task, seed=i) for i, task in enumerate(TASKS)]
    assert len({run.test_fingerprint for run in found}) == 3  # each task has its own test images
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = ev.comparison_table(found, n_boot=50)
    assert table.groupby("task")["model"].apply(list).to_dict() == {task: ["cnn", ev.BASELINE] for task in TASKS}
    assert set(table["test_set"]) == {ev.SAME}
    assert list(ev.format_comparison(table).columns[:3]) == ["Dataset", "Task", "Model"]
    one_task = ev.comparison_table(found[:1], n_boot=50)
    assert "Task" not in ev.format_comparison(one_task).columns


def test_tasks_side_by_side_have_covid_vs_rest_and_the_macro_auc_of_three_classes(tmp_path):
    found = [task_run(tmp_path, task, seed=i) for i, task in enumerate(TASKS)]
    table = ev.task_comparison(found, n_boot=100).set_index("task")
    for run in found:
        test = run.split("test")
        assert table.loc[run.task, "auc"] == pytest.approx(roc_auc_score(test["y_true"], test["probability"]))
        assert table.loc[run.task, "threshold"] == run.threshold
    three = found[-1]
    assert table.loc["three-class", "macro_auc"] == pytest.approx(
        multiclass.macro_auc(multiclass.run_predictions(three), three.classes))
    low, high = table.loc["three-class", ["macro_auc_low", "macro_auc_high"]]
    assert low <= table.loc["three-class", "macro_auc"] <= high
    assert table.loc[["covid-vs-normal", "covid-vs-pneumonia"], "macro_auc"].isna().all()
    shown = ev.format_tasks(table.reset_index()).set_index("Task")
    assert shown.loc["covid-vs-pneumonia", "Macro AUC (3 classes)"] == "n/a"
    assert shown.loc["three-class", "AUC, COVID vs rest"].startswith(f"{table.loc['three-class', 'auc']:.2f} (")


def test_binary_confusion_matrices_name_the_rest_of_each_task(tmp_path):
    found = [task_run(tmp_path, task, seed=i) for i, task in enumerate(TASKS)]
    figure = plots.plot_confusion_matrices(found)
    ticks = [[label.get_text() for label in ax.get_xticklabels()] for ax in figure.axes if ax.get_visible()]
    assert ticks == [["NORMAL", "COVID"], ["PNEUMONIA", "COVID"], ["not COVID\n(NORMAL or PNEUMONIA)", "COVID"]]


def test_a_three_class_run_reads_as_the_multiclass_frame_and_its_table_displays(tmp_path):
    run = task_run(tmp_path, "three-class")
    rows = multiclass.run_predictions(run, "test")
    assert list(rows.columns) == ["y_true", "prob_NORMAL", "prob_PNEUMONIA", "prob_COVID", "patient_id"]
    assert set(rows["y_true"]) == set(run.classes)
    table = multiclass.per_class_with_ci(rows, run.classes, n_boot=100)
    shown = multiclass.format_per_class(table)
    assert list(shown.columns) == ["images", "Sensitivity", "PPV"] and list(shown.index) == list(run.classes)
    for label in run.classes:
        assert shown.loc[label, "Sensitivity"] == ev.format_interval(
            *table.loc[label, ["sensitivity", "sensitivity_low", "sensitivity_high"]])
        assert shown.loc[label, "images"] == (rows["y_true"] == label).sum()
