"""The environment files agree with each other and with what Colab ships."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_DATA
from packaging.requirements import Requirement
from packaging.version import Version

COLAB_FREEZE = SHARED_DATA.parent / "colab" / "pip-freeze.gpu.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s#;]+)", line)
        if match:
            found[canonical(match[1])] = match[2]
    return found


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(*extras: str) -> list[Requirement]:
    spec = project()
    found = [Requirement(r) for r in spec["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in spec["optional-dependencies"][extra]]
    return found


def test_environment_yml_pins_what_the_lock_pins():
    env, lock = pins(ROOT / "environment.yml"), pins(ROOT / "requirements" / "constraints.txt")
    assert env, "environment.yml lists no pinned packages"
    for name, version in env.items():
        assert lock.get(name) == version, f"{name}: environment.yml has {version}, constraints.txt {lock.get(name)}"


def test_environment_yml_covers_every_dependency_of_a_cpu_setup():
    env = pins(ROOT / "environment.yml")
    for requirement in requirements("cpu", "run", "lab", "dev"):
        name = canonical(requirement.name)
        assert name in env, f"{name} (pyproject.toml) is missing from environment.yml"
        assert requirement.specifier.contains(env[name]), f"{name}=={env[name]} violates {requirement}"


def test_lock_satisfies_the_declared_lower_bounds():
    lock = pins(ROOT / "requirements" / "constraints.txt")
    for requirement in requirements("cpu", "gpu", "run", "lab", "dev"):
        name = canonical(requirement.name)
        assert name in lock, f"{name} is not pinned in requirements/constraints.txt (run make lock)"
        assert requirement.specifier.contains(lock[name]), f"{name}=={lock[name]} violates {requirement}"


def test_colab_runtime_satisfies_the_package_lower_bounds():
    if not COLAB_FREEZE.exists():
        pytest.skip(f"Colab's package list not found at {COLAB_FREEZE}")
    colab = pins(COLAB_FREEZE)
    # Colab lacks these on purpose: the notebooks' setup cell installs them (tests/notebooks/test_notebooks.py).
    installed_by_setup_cell = {"pydicom", "imagehash"}
    for requirement in requirements("gpu"):
        name = canonical(requirement.name)
        if name in installed_by_setup_cell:
            assert name not in colab, f"Colab ships {name} now: drop it from the setup cell"
            continue
        assert name in colab, f"{name} is not in Colab's runtime: add it to the setup cell"
        assert requirement.specifier.contains(Version(colab[name])), f"Colab's {name}=={colab[name]} violates {requirement}"


def test_colab_constraints_are_generated_from_colabs_list():
    if not COLAB_FREEZE.exists():
        pytest.skip(f"Colab's package list not found at {COLAB_FREEZE}")
    from tools.colab_constraints import constraints, read_freeze

    wanted = "\n".join(constraints(read_freeze(COLAB_FREEZE)))
    committed = (ROOT / "requirements" / "colab.txt").read_text()
    assert wanted in committed, "requirements/colab.txt is stale: run `make colab-constraints`"
    assert "tensorflow-cpu==2.20.0" in committed and "keras==3.13.2" in committed


# ------------------------------------------------------------------ Colab: Google Drive and widgets


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A stand-in for ``google.colab`` whose ``drive.mount`` creates ``MyDrive`` under the mount point."""
    import sys
    import types

    import google.protobuf  # noqa: F401  (the real google namespace package stays)

    from helpers import environment

    calls = []

    def mount(mount_point):
        calls.append(("mount", mount_point))
        (Path(mount_point) / "MyDrive").mkdir(parents=True, exist_ok=True)

    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(("widgets",)))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(environment, "IS_COLAB", True)
    for name in ("COURSE_OUTPUT_DIR", "COURSE_DATA_DIR", "KERAS_HOME"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_persist_mounts_drive_once_and_points_outputs_and_data_into_the_course_folder(fake_colab, tmp_path):
    from helpers import environment, paths

    mount_point = tmp_path / "drive"
    folder = environment.persist_in_drive(mount_point)
    assert folder == mount_point / "MyDrive" / "covid-course"
    assert paths.output_dir() == (folder / "outputs").resolve() and paths.data_dir() == (folder / "data").resolve()
    assert environment.os.environ["KERAS_HOME"] == str(folder / "data" / "keras")
    assert environment.persist_in_drive(mount_point) == folder
    assert fake_colab == [("mount", str(mount_point))], "a mounted Drive is not mounted again"


def test_persist_does_nothing_outside_colab(monkeypatch, tmp_path):
    from helpers import environment

    monkeypatch.setattr(environment, "IS_COLAB", False)
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "mine"))
    assert environment.persist_in_drive(tmp_path / "drive") is None
    assert not (tmp_path / "drive").exists() and environment.os.environ["COURSE_OUTPUT_DIR"] == str(tmp_path / "mine")


def test_colab_widget_manager_is_enabled_for_ipywidgets_8_only(fake_colab):
    from helpers import environment

    assert environment.enable_widgets("7.7.1") is False and fake_colab == []
    assert environment.enable_widgets("8.1.5") is True and fake_colab == [("widgets",)]


def test_setup_in_colab_says_how_to_keep_the_work(fake_colab, capsys):
    from helpers import environment

    found = environment.setup(verbose=True)
    assert found.persistent is None and "PERSIST = True" in capsys.readouterr().out
