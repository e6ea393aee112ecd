"""The notebooks' first cell, run the way Colab runs it.

A clean environment with Colab's versions (``requirements/colab.txt`` on Colab's Python, from uv's
cache), then the setup cell itself with a stand-in ``google.colab`` module: its own pip command,
with only the repository URL pointed at a local clone of this repository (at its committed HEAD,
tagged with the release when the repository lacks the tag), then ``import helpers; helpers.setup()``.
Offline: pip finds the two extra libraries and setuptools in ``.cache/wheelhouse``, which
``make test-colab`` fills. Marked ``colab``: ``make test-colab`` runs it, ``make test`` does not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from tools import build_notebooks

pytestmark = pytest.mark.colab

UV = Path(sys.executable).parent / "uv"
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
COLAB_PYTHON = os.environ.get("COLAB_PYTHON") or getattr(sys, "_base_executable", sys.executable)
EXTRAS = {"pydicom", "imagehash"}  # what the cell adds to Colab's set, besides the course package

# Runs the cell as Colab would: google.colab is imported, so the cell installs; ipywidgets 7 needs no manager.
COLAB_KERNEL = """
import sys, types
colab = types.ModuleType("google.colab")
colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: print("custom widget manager enabled"))
sys.modules["google.colab"] = colab
exec(compile(open(sys.argv[1]).read(), "setup cell", "exec"))
print("helpers imported from", helpers.__file__)
"""


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)


def clone(target: Path, *, tagged: bool) -> Path:
    """A clone of this repository whose release tag exists (``tagged``) or not."""
    run("git", "clone", "--quiet", ROOT, target, check=True)
    has_tag = run("git", "-C", target, "rev-parse", "-q", "--verify", f"refs/tags/{build_notebooks.REF}").returncode == 0
    if tagged and not has_tag:
        run("git", "-C", target, "tag", build_notebooks.REF, check=True)
    if not tagged and has_tag:
        run("git", "-C", target, "tag", "-d", build_notebooks.REF, check=True)
    return target


def colab_environ(**extra) -> dict[str, str]:
    """This process's environment without what points at this checkout or configures pip, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON", "COURSE_"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, **extra}


def freeze(python: Path) -> dict[str, str]:
    lines = run(python, "-m", "pip", "freeze", env=colab_environ(), check=True).stdout.splitlines()
    return {re.split(r"==| @ ", line)[0].lower(): line for line in lines if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory):
    """A fresh venv on Colab's Python with exactly Colab's package set (offline, from uv's cache)."""
    if not UV.exists():
        pytest.skip(f"uv not found next to {sys.executable} (make test-colab installs it)")
    if not list(WHEELHOUSE.glob("*.whl")):
        pytest.skip(f"no wheels in {WHEELHOUSE}: make test-colab downloads them")
    root = tmp_path_factory.mktemp("colab")
    run(COLAB_PYTHON, "-m", "venv", root / "venv", check=True)
    python = root / "venv" / "bin" / "python"
    built = run(UV, "pip", "install", "--python", python, "--offline", "--quiet", "-r", ROOT / "requirements" / "colab.txt")
    assert built.returncode == 0, f"Colab's set is not in uv's cache (run make test-colab first):\n{built.stderr}"
    cell = root / "setup_cell.py"
    cell.write_text(build_notebooks.SETUP_CELL)
    return root, python, cell


def run_cell(root: Path, python: Path, cell: Path, repository: Path) -> subprocess.CompletedProcess:
    env = colab_environ(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(WHEELHOUSE), COURSE_OUTPUT_DIR=str(root / "outputs"),
                        COURSE_DATA_DIR=str(root / "data"), **{build_notebooks.REPO_URL_VARIABLE: f"file://{repository}"})
    return run(python, "-c", COLAB_KERNEL, cell, cwd=root, env=env, timeout=600)


def test_the_setup_cell_installs_the_release_and_two_libraries_and_changes_nothing_of_colabs(colab_env):
    root, python, cell = colab_env
    before = freeze(python)
    assert not EXTRAS & set(before) and "covid-course" not in before
    result = run_cell(root, python, cell, clone(root / "tagged", tagged=True))
    assert result.returncode == 0, result.stderr[-3000:]
    after = freeze(python)
    changed = {name: (line, after.get(name)) for name, line in before.items() if after.get(name) != line}
    assert not changed, f"the setup cell changed Colab's packages: {changed}"
    assert set(after) - set(before) == EXTRAS | {"covid-course"}
    assert f"@{build_notebooks.REF}" in build_notebooks.SETUP_CELL and "file://" in after["covid-course"]
    assert f"helpers imported from {root / 'venv'}" in result.stdout and "Colab: yes" in result.stdout
    assert "custom widget manager enabled" not in result.stdout, "Colab renders ipywidgets 7.7 itself"


def test_a_missing_release_tag_fails_with_the_ref_and_what_to_do(colab_env):
    root, python, cell = colab_env
    result = run_cell(root, python, cell, clone(root / "untagged", tagged=False))
    assert result.returncode != 0
    message = result.stderr[result.stderr.rindex("RuntimeError"):]
    assert f"at {build_notebooks.REF} from file://" in message and f"If git does not know {build_notebooks.REF}" in message
    assert f"https://github.com/{build_notebooks.REPO}/tags" in message
