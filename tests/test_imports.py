"""The packages that promise to work without TensorFlow import without it (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

WITHOUT_TENSORFLOW = ["helpers", "helpers.data", "helpers.evaluation", "helpers.images", "helpers.runs"]
# One fresh interpreter imports them in turn and lists, after each, what it has loaded.
LIST_AFTER_EACH = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    print(json.dumps([name, sorted(sys.modules)]))
"""


def test_data_evaluation_images_and_runs_import_without_tensorflow_or_keras():
    # Looked for in this checkout: an editable install elsewhere could otherwise lend its own helpers/runs.py.
    if not any((ROOT / "helpers" / name).exists() for name in ("runs.py", "runs/__init__.py")):
        pytest.skip("helpers.runs does not exist yet: the other modules are checked by the test below")
    check(WITHOUT_TENSORFLOW)


def test_data_evaluation_and_images_import_without_tensorflow_or_keras():
    check([name for name in WITHOUT_TENSORFLOW if name != "helpers.runs"])


def check(modules: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", LIST_AFTER_EACH, *modules], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    loaded = dict(json.loads(line) for line in result.stdout.splitlines())
    assert list(loaded) == modules  # every import really happened
    for module in modules:
        assert module in loaded[module]
        assert not {"tensorflow", "keras"} & set(loaded[module]), f"importing {module} loads TensorFlow"
