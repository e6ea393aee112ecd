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
    # Colab lacks these on purpose: the notebooks' setup cell installs them (tests/test_notebooks.py).
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
