"""Build ``notebooks/*.ipynb`` from the readable sources in ``notebooks/src/*.py`` (jupytext percent format).

Every notebook gets the same opening from here, so it is written once: the
title cell gains the Open-in-Colab badge and the disclaimer, and a setup cell
follows it (install the pinned course package in Colab only, then
``helpers.setup()``). Outputs are never written; cell tags (``parameters``)
are kept. ``python tools/build_notebooks.py`` rebuilds; ``--check`` fails when
a committed notebook is out of date (the tests run it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks" / "src"
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))

from helpers import DISCLAIMER, REPO, __version__  # noqa: E402

REF = f"v{__version__}"  # the git tag Colab installs the helpers from
COLAB_ONLY = ["pydicom>=2.4", "ImageHash>=4.3"]  # what the course needs and Colab's runtime lacks

SETUP_CELL = f'''# Setup. In Colab: install the course's `helpers` package at a pinned version, plus the only two
# libraries Colab lacks. TensorFlow, Keras, NumPy and XGBoost are Colab's own and are left alone.
import sys

IS_COLAB = "google.colab" in sys.modules
if IS_COLAB:
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "covid-course @ git+https://github.com/{REPO}@{REF}", {", ".join(repr(p) for p in COLAB_ONLY)}],
        check=True,
    )

import helpers

ENV = helpers.setup()'''


def colab_url(name: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}.ipynb"


def badge(name: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name)})"


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook for one source file, with the standard opening."""
    notebook = jupytext.read(source, fmt="py:percent")
    title = notebook.cells[0]
    if title.cell_type != "markdown" or not title.source.startswith("# "):
        raise ValueError(f"{source.name}: the first cell must be a markdown cell starting with '# Title'")
    head, _, rest = title.source.partition("\n")
    title.source = f"{head}\n\n{badge(source.stem)}\n{rest}\n\n> **{DISCLAIMER}**"
    notebook.cells.insert(1, nbformat.v4.new_code_cell(SETUP_CELL))
    for i, cell in enumerate(notebook.cells):
        cell.id = f"{source.stem[:2]}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata = {
        "accelerator": "GPU",
        "colab": {"gpuType": "T4", "provenance": [], "name": f"{source.stem}.ipynb"},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    nbformat.validate(notebook)
    return notebook


def text(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        target = NOTEBOOKS / f"{source.stem}.ipynb"
        wanted = text(build(source))
        if target.exists() and target.read_text() == wanted:
            continue
        if "--check" in argv:
            stale.append(target.name)
        else:
            target.write_text(wanted)
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(f"out of date (run `make notebooks`): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
