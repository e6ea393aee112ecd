"""Notebooks 05 and 06 run alone, as in a fresh Colab VM: empty output and data folders, ``SMOKE=True``.

They need an earlier notebook's models; alone they must say so, train what they need, and complete.
Marked ``colab`` (about a minute each): ``make test-colab`` runs them in Colab's versions.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import ROOT

pytestmark = pytest.mark.colab

ALONE = {
    "05_evaluation_and_explainability": ["No trained models yet", "Trained a quick", "cnn-quick"],
    "06_upload_demo": ["No trained model yet: a quick", "for the demo", "preselected model:"],
}


QUICK_RUN = {"05_evaluation_and_explainability": "synthetic/cnn-quick", "06_upload_demo": "demo/synthetic/*"}


@pytest.mark.parametrize("name", ALONE)
def test_notebook_runs_alone_and_says_what_it_trained_instead(name, course_dirs, tmp_path):
    import papermill

    executed = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(executed), kernel_name="python3",
                               parameters={"SMOKE": True, "DATASET": "synthetic"}, cwd=str(tmp_path),
                               progress_bar=False)
    outputs = [output for cell in nbformat.read(executed, as_version=4).cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    text = json.dumps(outputs)
    for said in ALONE[name]:
        assert said in text, f"{name} alone does not say {said!r}"
    _, out = course_dirs
    trained = QUICK_RUN[name]  # 06 trains into its own folder and leaves the course's outputs as they were
    assert list(out.glob(f"{trained}/metrics.json")), f"{name} alone left no run at outputs/{trained}"
