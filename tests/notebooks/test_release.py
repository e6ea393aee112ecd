"""One ref: the badges, the setup cell's install URL and the package version name one release;
the run-time lines come from the measured table; ``make release`` bumps, checks and tags locally."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest
from conftest import ROOT

import helpers
from tools import build_notebooks

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([^/]+)/notebooks/([\w-]+)\.ipynb")
INSTALL = re.compile(r'f"covid-course @ git\+\{repo\}@([^"]+)"')


def badges(text: str) -> list[tuple[str, str, str]]:
    return BADGE.findall(text)


def title(path) -> str:
    return nbformat.read(path, as_version=4).cells[0].source


def test_badges_install_url_and_package_version_name_one_release():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "helpers.__version__"}
    assert helpers.REF == f"v{helpers.__version__}"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert badges(notebook.cells[0].source) == [(helpers.REPO, helpers.REF, path.stem)]
        assert INSTALL.findall(notebook.cells[1].source) == [helpers.REF]
        assert f'"https://github.com/{helpers.REPO}"' in notebook.cells[1].source


def test_the_readme_badges_are_the_notebooks_badges():
    readme = badges((ROOT / "README.md").read_text())
    assert sorted(readme) == sorted(found for path in NOTEBOOKS for found in badges(title(path)))


def test_every_run_time_line_is_the_committed_table():
    timings = build_notebooks.read_timings()
    assert sorted(timings) == [path.stem for path in NOTEBOOKS]
    for path in NOTEBOOKS:
        lines = [line for line in title(path).splitlines() if line.startswith("**Run time:**")]
        assert lines == [build_notebooks.run_time_line(path.stem, timings)]
        assert "GPU (an estimate" in lines[0] or "GPU:" in lines[0], "a GPU time is an estimate until measured"


def test_make_timings_records_measured_rows_and_labels_gpu_times():
    table = {"02_cnn": {"gpu": {"seconds": 300, "estimate": True},
                        "smoke": {"seconds": 30, "machine": "2 CPU cores, no GPU", "date": "2026-11-22"}}}
    cpu = {"machine": "2 CPU cores, no GPU", "date": "2026-12-01", "status": "ok", "notebook": "02_cnn"}
    rows = [{**cpu, "profile": "smoke", "dataset": "synthetic", "seconds": 21.0},
            {**cpu, "profile": "smoke", "dataset": "synthetic-ct", "seconds": 24.0},
            {**cpu, "profile": "full", "dataset": "synthetic", "seconds": 200.0},
            {**cpu, "profile": "cpu", "dataset": "synthetic", "seconds": 99.0, "status": "FAILED"}]
    updated = build_notebooks.record_timings(rows, table)
    assert updated["02_cnn"]["smoke"] == {"seconds": 24.0, "machine": "2 CPU cores, no GPU", "date": "2026-12-01",
                                          "dataset": "synthetic-ct"}
    assert updated["02_cnn"]["gpu"] == table["02_cnn"]["gpu"], "the full profile on a CPU is no GPU time"
    assert "cpu" not in updated["02_cnn"] and table["02_cnn"]["smoke"]["seconds"] == 30
    line = build_notebooks.run_time_line("02_cnn", updated)
    assert line == ("**Run time:** about 5 min on a Colab GPU (an estimate, not measured yet); 24 s with `SMOKE=True` "
                    "on synthetic data (measured: 2 CPU cores, no GPU, 2026-12-01).")
    gpu = {**cpu, "machine": "GPU: Tesla T4, 2 CPU cores", "profile": "full", "dataset": "covid19-radiography",
           "seconds": 250.0}
    line = build_notebooks.run_time_line("02_cnn", build_notebooks.record_timings([gpu], updated))
    assert line.startswith("**Run time:** 4 min on a Colab GPU (measured: GPU: Tesla T4, 2 CPU cores, 2026-12-01); 24 s")
    assert "estimate" not in line


def test_the_builder_refuses_a_title_cell_without_a_run_time_paragraph(tmp_path):
    source = tmp_path / "07_new.py"
    source.write_text('# %% [markdown]\n# # 07 · New\n#\n# Text.\n\n# %% tags=["parameters"]\nSMOKE = False\n')
    with pytest.raises(ValueError, match=r"\*\*Run time:\*\*"):
        build_notebooks.build(source)


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_make_release_bumps_rebuilds_checks_commits_and_tags_locally(tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(ROOT), str(clone))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org")
    make = ["make", "-s", "release", f"PY={sys.executable}", "STAMP="]
    refused = subprocess.run([*make, "VERSION=1.2"], cwd=clone, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "give it as x.y.z" in refused.stderr
    done = subprocess.run([*make, "VERSION=9.8.7"], cwd=clone, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert git(clone, "describe", "--exact-match", "HEAD") == "v9.8.7" and git(clone, "status", "--porcelain") == ""
    assert '__version__ = "9.8.7"' in (clone / "helpers" / "__init__.py").read_text()
    assert "/blob/v9.8.7/notebooks/06_upload_demo.ipynb" in (clone / "README.md").read_text()
    assert "@v9.8.7" in (clone / "notebooks" / "02_cnn_from_scratch.ipynb").read_text()
    assert git(ROOT, "tag", "--list", "v9.8.7") == "", "make release must never push"
    again = subprocess.run([*make, "VERSION=9.8.7"], cwd=clone, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "exists already" in again.stderr


def test_the_runners_plan_estimates_from_the_same_table():
    from helpers.app import runner

    timings = build_notebooks.read_timings()
    for profile, setting in runner.TIMINGS_SETTING.items():
        assert runner.estimated_minutes(profile, "03_transfer_learning") == timings["03_transfer_learning"][setting][
            "seconds"] / 60
    assert runner.estimated_minutes("smoke", "99_not_a_notebook") == 2.0
