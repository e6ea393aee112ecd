"""Shared fixtures: real sample data from ../shared/data, isolated data/output folders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of small real X-rays and CT slices; tests skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture
def course_dirs(tmp_path, monkeypatch):
    """Point COURSE_DATA_DIR and COURSE_OUTPUT_DIR at fresh temporary folders."""
    data, out = tmp_path / "data", tmp_path / "outputs"
    monkeypatch.setenv("COURSE_DATA_DIR", str(data))
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(out))
    return data, out


@pytest.fixture(scope="module")
def module_course_dirs(tmp_path_factory):
    """Like ``course_dirs``, for a whole test module, so that its datasets are prepared once."""
    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_DATA_DIR", str(data))
        patch.setenv("COURSE_OUTPUT_DIR", str(out))
        yield data, out


def pytest_collection_modifyitems(items):
    """Tests of the SMOKE series (the longest fixture) first: with ``-n 2`` the other tests run beside it."""
    items.sort(key=lambda item: "smoke" not in getattr(item, "fixturenames", ()))
