"""The papermill runner: parameters injected, failures named with their cell, interrupted runs resumed."""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest

from helpers.app import runner

PARAMETERS = 'DATASET = "covid19-radiography"\nSMOKE = False'
RECORD = """
import json, os, pathlib
out = pathlib.Path(os.environ["COURSE_OUTPUT_DIR"]) / "record.jsonl"
with out.open("a") as f:
    f.write(json.dumps({"notebook": NAME, "DATASET": DATASET, "SMOKE": SMOKE,
                        "WEIGHTS": globals().get("WEIGHTS", "not injected")}) + "\\n")
"""


def write_notebook(folder, name, *cells, parameters=PARAMETERS):
    notebook = nbformat.v4.new_notebook()
    tagged = nbformat.v4.new_code_cell(parameters)
    tagged.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), tagged,
                      nbformat.v4.new_code_cell(f"NAME = {name!r}"), *map(nbformat.v4.new_code_cell, cells)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


def records(out):
    path = out / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def course(tmp_path, course_dirs):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    course_dirs[1].mkdir()
    return folder, course_dirs[1]


def test_profile_parameters_are_injected_where_the_notebook_declares_them(course, capsys):
    folder, out = course
    write_notebook(folder, "01_first", RECORD)
    write_notebook(folder, "02_second", RECORD, parameters=PARAMETERS + "\nWEIGHTS = 'imagenet'")
    rows = runner.run_all("smoke", datasets=["synthetic"], report=False, notebook_dir=folder)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    first, second = records(out)
    assert first == {"notebook": "01_first", "DATASET": "synthetic", "SMOKE": True, "WEIGHTS": "not injected"}
    assert second["WEIGHTS"] is None and second["SMOKE"] is True
    printed = capsys.readouterr().out
    assert "Plan: profile 'smoke' (asked for)" in printed and "estimated time" in printed
    assert (out / "notebooks" / "synthetic" / "02_second.ipynb").exists()
    timings = json.loads((out / "notebooks" / "timings.json").read_text())
    assert [t["notebook"] for t in timings] == ["01_first", "02_second"]


def test_a_failing_notebook_stops_the_run_and_names_its_cell(course, capsys):
    folder, out = course
    write_notebook(folder, "01_fine", RECORD)
    write_notebook(folder, "02_broken", "x = 1", "raise ValueError('the lesson broke here')")
    write_notebook(folder, "03_after", RECORD)
    with pytest.raises(runner.NotebookFailed, match=r"02_broken.ipynb \(synthetic\) failed in cell \d+: "
                                                     r"ValueError: the lesson broke here"):
        runner.run_all("smoke", datasets=["synthetic"], report=False, notebook_dir=folder)
    assert [r["notebook"] for r in records(out)] == ["01_fine"]  # 03 never ran
    partial = nbformat.read(out / "notebooks" / "synthetic" / "02_broken.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in partial.cells for o in c.get("outputs", []))
    assert "FAILED" in capsys.readouterr().err


def test_an_interrupted_series_resumes_at_the_notebook_that_failed(course, capsys):
    folder, out = course
    flag = out / "broken"
    flag.write_text("")
    crash_once = f"import pathlib\nif pathlib.Path({str(flag)!r}).exists(): raise RuntimeError('interrupted')"
    write_notebook(folder, "01_a", RECORD)
    write_notebook(folder, "02_b", crash_once, RECORD)
    write_notebook(folder, "03_c", RECORD)
    with pytest.raises(runner.NotebookFailed):
        runner.run_all("smoke", datasets=["synthetic"], report=False, notebook_dir=folder)
    flag.unlink()
    rows = runner.run_all("smoke", datasets=["synthetic"], report=False, notebook_dir=folder)
    assert [row["status"] for row in rows] == ["skipped (done)", "ok", "ok"]
    assert [r["notebook"] for r in records(out)] == ["01_a", "02_b", "03_c"]
    assert "01_a.ipynb: done earlier with the same parameters, skipped" in capsys.readouterr().out
    rows = runner.run_all("smoke", datasets=["synthetic"], report=False, notebook_dir=folder)
    assert all(row["status"] == "skipped (done)" for row in rows)
    assert re.search(r"sum of the times of the notebooks run now\s+0\.0\n", capsys.readouterr().out)
    rows = runner.run_all("smoke", datasets=["synthetic"], report=False, notebook_dir=folder, force=True)
    assert all(row["status"] == "ok" for row in rows)


def test_a_changed_parameter_invalidates_the_resume(course, monkeypatch):
    folder, out = course
    write_notebook(folder, "01_a", RECORD)
    write_notebook(folder, "02_b", RECORD, parameters=PARAMETERS + "\nEPOCHS = 30")
    runner.run_all("cpu", datasets=["synthetic"], report=False, notebook_dir=folder)
    changed = {**runner.PROFILES["cpu"], "02": {"EPOCHS": 3}}
    monkeypatch.setitem(runner.PROFILES, "cpu", changed)
    rows = runner.run_all("cpu", datasets=["synthetic"], report=False, notebook_dir=folder)
    assert [row["status"] for row in rows] == ["skipped (done)", "ok"]


MEET = """
import os, pathlib, time
here = pathlib.Path(os.environ["COURSE_OUTPUT_DIR"])
(here / f"{DATASET}.started").write_text(os.environ.get("TF_NUM_INTRAOP_THREADS", "unset"))
deadline = time.time() + 60
while len(list(here.glob("*.started"))) < 2:
    assert time.time() < deadline, "the other series never started: the series ran one after the other"
    time.sleep(0.1)
"""


def test_dataset_series_run_side_by_side_each_in_its_own_order(course, capsys):
    folder, out = course
    before = os.environ.get("TF_NUM_INTRAOP_THREADS")
    write_notebook(folder, "01_meet", MEET, RECORD)
    write_notebook(folder, "02_after", RECORD)
    rows = runner.run_all("smoke", datasets=["synthetic", "synthetic-ct"], report=False, notebook_dir=folder,
                          jobs=2)
    assert [(r["dataset"], r["notebook"], r["status"]) for r in rows] == [
        (d, n, "ok") for d in ("synthetic", "synthetic-ct") for n in ("01_meet", "02_after")]
    for dataset in ("synthetic", "synthetic-ct"):
        assert [r["notebook"] for r in records(out) if r["DATASET"] == dataset] == ["01_meet", "02_after"]
        assert (out / f"{dataset}.started").read_text() == str(max(1, (os.cpu_count() or 1) // 2))
    assert "2 series (dataset, task) run side by side" in capsys.readouterr().out
    assert os.environ.get("TF_NUM_INTRAOP_THREADS") == before  # the share was for the kernels only


def test_only_smoke_series_share_the_machine_by_default(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert runner.default_jobs("smoke") == 16
    assert runner.default_jobs("full") == runner.default_jobs("cpu") == 1  # one GPU, or all cores, per series


def test_profile_follows_the_machine(monkeypatch):
    monkeypatch.setattr(runner, "has_gpu", lambda: True)
    assert runner.choose_profile("auto")[0] == "full"
    monkeypatch.setattr(runner, "has_gpu", lambda: False)
    assert runner.choose_profile(None) == ("cpu", "no GPU found (PROFILE=full forces the GPU-scale settings)")
    assert runner.choose_profile("full") == ("full", "asked for")


def test_unreachable_real_dataset_is_replaced_by_synthetic_in_the_plan(monkeypatch):
    monkeypatch.setattr(runner, "online", lambda host, timeout=3.0: False)
    name, why = runner.resolve_dataset("covid-ct", strict=False)
    assert name == "synthetic-ct" and "SYNTHETIC" in why and "raw.githubusercontent.com" in why
    assert runner.resolve_dataset("covid-ct", strict=True)[0] == "covid-ct"
    assert runner.resolve_dataset("synthetic", strict=False)[0] == "synthetic"


def test_command_line_reports_failure_with_exit_status(course):
    folder, _ = course
    write_notebook(folder, "01_broken", "1/0")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "notebooks", lambda root=None, only=None: sorted(folder.glob("*.ipynb")))
        assert runner.main(["--profile", "smoke", "--dataset", "synthetic", "--no-report"]) == 1


# ------------------------------------------------------------------------------------------------ tasks

TASKED = PARAMETERS + '\nTASK = "covid-vs-normal"'
RECORD_TASK = """
import json, os, pathlib
with (pathlib.Path(os.environ["COURSE_OUTPUT_DIR"]) / "tasks.jsonl").open("a") as f:
    f.write(json.dumps({"notebook": NAME, "DATASET": DATASET, "TASK": TASK}) + "\\n")
"""


def test_a_step_per_dataset_and_task_each_with_its_own_output_and_fingerprint(tmp_path, course_dirs):
    tasked = write_notebook(tmp_path, "01_tasked", parameters=TASKED)
    untasked = write_notebook(tmp_path, "02_untasked")
    steps = runner.plan("smoke", ["synthetic"], [tasked, untasked], ["covid-vs-normal", "three-class"])
    assert [(s.notebook.stem, s.task) for s in steps] == [  # no TASK parameter: the default task only
        ("01_tasked", "covid-vs-normal"), ("02_untasked", "covid-vs-normal"), ("01_tasked", "three-class")]
    assert [s.parameters.get("TASK") for s in steps] == ["covid-vs-normal", None, "three-class"]
    notebooks_dir = course_dirs[1] / "notebooks"
    assert steps[0].output() == notebooks_dir / "synthetic" / "01_tasked.ipynb"  # the default's path as before
    assert steps[2].output() == notebooks_dir / "synthetic" / "three-class" / "01_tasked.ipynb"
    assert (steps[0].key, steps[2].key) == ("synthetic/01_tasked.ipynb", "synthetic/three-class/01_tasked.ipynb")
    same = runner.Step(tasked, "synthetic", dict(steps[2].parameters), "covid-vs-pneumonia")
    assert same.fingerprint != steps[2].fingerprint  # the task counts even where the parameters agree
    assert runner.plan("smoke", ["synthetic"], [tasked]) == steps[:1]  # no tasks: the default task


@pytest.mark.parametrize(("datasets", "tasks", "message"), [
    (["synthetic", "covid-ct"], ["covid-vs-normal", "covid-vs-pneumonia"],
     r"task 'covid-vs-pneumonia' refused: covid-ct has no pneumonia class"),
    (["synthetic"], ["covid-vs-flu"], r"unknown task 'covid-vs-flu'; choose one of: covid-vs-normal"),
])
def test_a_task_a_dataset_cannot_give_is_refused_before_anything_runs(course, monkeypatch, datasets, tasks, message):
    folder, out = course
    write_notebook(folder, "01_a", RECORD, parameters=TASKED)

    def no_network(host, timeout=3.0):
        raise AssertionError("the datasets were resolved before the tasks were checked")

    monkeypatch.setattr(runner, "online", no_network)
    with pytest.raises(SystemExit, match="run-all refused, nothing was run: " + message):
        runner.run_all("smoke", datasets=datasets, tasks=tasks, report=False, notebook_dir=folder)
    assert records(out) == [] and not (out / "notebooks").exists()


def test_tasks_run_as_separate_series_and_resume_separately(course, capsys):
    folder, out = course
    write_notebook(folder, "01_a", RECORD_TASK, parameters=TASKED)
    write_notebook(folder, "02_untasked", "x = 1")
    rows = runner.run_all("smoke", datasets=["synthetic"], tasks=["covid-vs-normal", "three-class"], report=False,
                          notebook_dir=folder, jobs=1)
    assert [(r["notebook"], r["task"], r["status"]) for r in rows] == [
        ("01_a", "covid-vs-normal", "ok"), ("02_untasked", "covid-vs-normal", "ok"), ("01_a", "three-class", "ok")]
    ran = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    assert [r["TASK"] for r in ran] == ["covid-vs-normal", "three-class"]
    assert (out / "notebooks" / "synthetic" / "01_a.ipynb").exists()
    assert (out / "notebooks" / "synthetic" / "three-class" / "01_a.ipynb").exists()
    printed = capsys.readouterr().out
    assert "task three-class: classes NORMAL, PNEUMONIA, COVID" in printed
    assert "NOTE: no TASK parameter in 02_untasked.ipynb: run for covid-vs-normal only" in printed
    rows = runner.run_all("smoke", datasets=["synthetic"], tasks=["three-class"], report=False, notebook_dir=folder,
                          only=["01"])
    assert [(r["task"], r["status"]) for r in rows] == [("three-class", "skipped (done)")]


def test_command_line_passes_the_tasks(monkeypatch):
    called = {}
    monkeypatch.setattr(runner, "run_all", lambda profile, **kwargs: called.update(kwargs) or [])
    assert runner.main(["--profile", "smoke", "--task", "covid-vs-pneumonia,three-class"]) == 0
    assert called["tasks"] == ["covid-vs-pneumonia", "three-class"]
    runner.main(["--profile", "smoke"])
    assert called["tasks"] is None  # run_all's default: covid-vs-normal
