"""Build ``notebooks/*.ipynb`` from the readable sources in ``notebooks/src/*.py`` (jupytext percent format).

Every notebook gets the same opening from here, so it is written once: the
title cell gains the Open-in-Colab badge, the disclaimer and its run-time line
(from the measured table ``notebooks/timings.json``), and a setup cell follows
it (install the course package in Colab only, then ``helpers.setup()``). The
badges, here and in the README, and the install URL name one release,
``helpers.REF``. Outputs are never written; cell tags (``parameters``) are kept.

``python tools/build_notebooks.py`` rebuilds; ``--check`` fails when a committed
notebook or the README's badges are out of date (the tests run it);
``--timings outputs/notebooks/timings.json`` first copies a run's measured times
into the table (``make timings``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks" / "src"
NOTEBOOKS = ROOT / "notebooks"
TIMINGS = NOTEBOOKS / "timings.json"
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT))

from helpers import DISCLAIMER, REF, REPO  # noqa: E402

COLAB_ONLY = ["pydicom>=2.4", "ImageHash>=4.3"]  # what the course needs and Colab's runtime lacks
REPO_URL_VARIABLE = "COURSE_REPO_URL"  # tests install from a local clone; a learner never sets it

SETUP_CELL = f'''# Setup. In Colab: install this course's `helpers` at release {REF} (the one these notebooks were built
# with) and the two libraries Colab lacks; Colab's own TensorFlow, Keras, NumPy and XGBoost stay as they are.
# PERSIST = True keeps outputs and datasets in your Google Drive, in MyDrive/covid-course (Colab asks for
# access; the X-ray dataset takes about 800 MB), so that the other notebooks, each in a new VM, reuse them.
import os
import subprocess
import sys

PERSIST = False
IS_COLAB = "google.colab" in sys.modules
if IS_COLAB:
    repo = os.environ.get("{REPO_URL_VARIABLE}", "https://github.com/{REPO}")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               f"covid-course @ git+{{repo}}@{REF}", {", ".join(json.dumps(p) for p in COLAB_ONLY)}]
    pip = subprocess.run(command, capture_output=True, text=True)
    if pip.returncode:
        raise RuntimeError(
            f"Could not install the course helpers at {REF} from {{repo}}:\\n{{pip.stderr.strip()[-600:]}}\\n"
            f"If git does not know {REF}, that release is not published: open the notebooks from the README of a "
            f"published release (https://github.com/{REPO}/tags) and report the badge at "
            f"https://github.com/{REPO}/issues. Otherwise check the runtime's internet connection and run this cell again.")

import helpers

ENV = helpers.setup(persist=PERSIST)'''

# How a run's profile appears in the run-time line; the runner's "full" profile is the GPU one.
SETTINGS = {"gpu": "on a Colab GPU", "cpu": "with the `cpu` profile", "smoke": "with `SMOKE=True`"}
PROFILE_SETTING = {"full": "gpu", "cpu": "cpu", "smoke": "smoke"}
TIMES_START, TIMES_END = "<!-- run times: tools/build_notebooks.py writes them from notebooks/timings.json -->", \
    "<!-- end of run times -->"
RUN_TIME = re.compile(r"^\*\*Run time:\*\*.*?(?=\n\n|\Z)", re.M | re.S)


def colab_url(name: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/{REF}/notebooks/{name}.ipynb"


def badge(name: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name)})"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def read_timings() -> dict:
    return json.loads(TIMINGS.read_text())


def run_time_line(name: str, timings: dict | None = None) -> str:
    """``**Run time:** ...`` for one notebook, from the table: estimates say so, measurements say where and when."""
    entries = (timings or read_timings()).get(name)
    if not entries:
        raise ValueError(f"{name} has no row in {TIMINGS.name}: add its times (or run `make timings` after a run)")
    parts, measured = [], {}
    for setting, phrase in SETTINGS.items():
        entry = entries.get(setting)
        if entry and entry.get("estimate"):
            parts.append(f"about {duration(entry['seconds'])} {phrase} (an estimate, not measured yet)")
        elif entry:
            data = " on synthetic data" if entry.get("dataset", "").startswith("synthetic") else ""
            where = f"{entry['machine']}, {entry['date']}"
            measured.setdefault(where, []).append(f"{duration(entry['seconds'])} {phrase}{data}")
    parts += [f"{', '.join(times)} (measured: {where})" for where, times in measured.items()]
    return f"**Run time:** {'; '.join(parts)}."


def record_timings(runner_rows: list[dict], timings: dict) -> dict:
    """The table with the runner's measured rows in it (the longest dataset per notebook and setting)."""
    updated = json.loads(json.dumps(timings))
    best = {}
    for row in runner_rows:
        if row.get("status") != "ok" or "machine" not in row:
            continue
        setting = PROFILE_SETTING[row["profile"]]
        if setting == "gpu" and "GPU:" not in row["machine"]:
            continue  # the GPU-scale profile on a CPU says nothing about a GPU's time
        key = (row["notebook"], setting)
        if key not in best or row["seconds"] > best[key]["seconds"]:
            best[key] = {"seconds": row["seconds"], "machine": row["machine"], "date": row["date"],
                         "dataset": row["dataset"]}
    for (notebook, setting), entry in best.items():
        updated.setdefault(notebook, {})[setting] = entry
    return updated


def build(source: Path, timings: dict | None = None) -> nbformat.NotebookNode:
    """The notebook for one source file, with the standard opening."""
    notebook = jupytext.read(source, fmt="py:percent")
    title = notebook.cells[0]
    if title.cell_type != "markdown" or not title.source.startswith("# "):
        raise ValueError(f"{source.name}: the first cell must be a markdown cell starting with '# Title'")
    if not RUN_TIME.search(title.source):
        raise ValueError(f"{source.name}: the title cell needs a '**Run time:**' paragraph (the builder fills it)")
    head, _, rest = title.source.partition("\n")
    rest = RUN_TIME.sub(lambda _: run_time_line(source.stem, timings), rest, count=1)
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


def times_table(timings: dict) -> str:
    """The README's table of run times per notebook, from the same table as the notebooks' run-time lines."""
    def cell(entry: dict | None) -> str:
        if not entry:
            return "not measured"
        if entry.get("estimate"):
            return f"about {duration(entry['seconds'])} (an estimate)"
        return f"{duration(entry['seconds'])} ({entry['machine']}, {entry['date']})"

    rows = [f"| {name[:2]} | {cell(entries.get('gpu'))} | {cell(entries.get('smoke'))} |"
            for name, entries in sorted(timings.items())]
    return "\n".join(["| notebook | on a Colab GPU | with `SMOKE=True` |", "|---|---|---|", *rows])


def readme_text(readme: str, timings: dict) -> str:
    """The README with every Colab link pointing at this release's notebooks, and the run-time table."""
    readme = re.sub(rf"https://colab\.research\.google\.com/github/{re.escape(REPO)}/blob/[^/]+/notebooks/([\w-]+)\.ipynb",
                    lambda match: colab_url(match[1]), readme)
    return re.sub(rf"{re.escape(TIMES_START)}.*?{re.escape(TIMES_END)}",
                  lambda _: f"{TIMES_START}\n{times_table(timings)}\n{TIMES_END}", readme, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--timings" in argv:
        runs = json.loads(Path(argv[argv.index("--timings") + 1]).read_text())
        TIMINGS.write_text(json.dumps(record_timings(runs, read_timings()), indent=1) + "\n")
        print(f"wrote {TIMINGS.relative_to(ROOT)}")
    timings, stale = read_timings(), []
    wanted = {NOTEBOOKS / f"{source.stem}.ipynb": text(build(source, timings))
              for source in sorted(SOURCES.glob("[0-9][0-9]_*.py"))}
    wanted[README] = readme_text(README.read_text(), timings)
    for target, content in wanted.items():
        if target.exists() and target.read_text() == content:
            continue
        if "--check" in argv:
            stale.append(target.name)
        else:
            target.write_text(content)
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(f"out of date (run `make notebooks`): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
