"""``python -m helpers run-all``: execute the notebooks in order with papermill.

Profiles set the notebooks' parameters: ``full`` (GPU scale), ``cpu`` (a laptop
finishes the series in about half an hour) and ``smoke`` (CI: tiny settings,
offline, both modalities). ``--task`` (comma-separated; default ``covid-vs-normal``)
chooses the classes (:mod:`helpers.data.tasks`): one series per dataset and task, a task a
dataset cannot give refused before anything runs. Executed notebooks go to
``outputs/notebooks/<dataset>/`` (another task: ``outputs/notebooks/<dataset>/<task>/``).
A notebook that already completed with the same parameters is skipped (the run
resumes after an interruption); a changed parameter re-runs it and everything
after it; ``--force`` re-runs all. Series on different datasets or tasks are independent and
may run side by side (``--jobs``). The first failure stops the run, names the
notebook and the cell, and keeps the partly executed notebook for inspection.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from helpers import paths
from helpers.data.registry import base_name
from helpers.data.tasks import DEFAULT_TASK, check_source, get_task
from helpers.files import write_text

PROFILES = {
    "full": {"common": {"SMOKE": False}},
    "cpu": {
        "common": {"SMOKE": False, "MAX_PER_CLASS": 250, "IMG_SIZE": 128, "BATCH_SIZE": 32},
        "02": {"EPOCHS": 12},
        "03": {"BACKBONES": ["vgg16", "densenet121"], "IMG_SIZE": 112, "EPOCHS": 4, "FINE_TUNE_EPOCHS": 2},
        "04": {"IMG_SIZE": 128},
        "05": {"N_BOOT": 500, "EPOCHS": 6},
    },
    "smoke": {"common": {"SMOKE": True, "WEIGHTS": None}},
}
# The plan's time estimate reads the notebooks' run-time table (notebooks/timings.json, `make timings`),
# whose "gpu" row is this runner's "full" profile; a notebook without a row counts 2 minutes.
TIMINGS_SETTING = {"full": "gpu", "cpu": "cpu", "smoke": "smoke"}
DEFAULT_DATASETS = {"full": ["covid19-radiography"], "cpu": ["covid19-radiography"],
                    "smoke": ["synthetic", "synthetic-ct"]}
HOSTS = {"kaggle": ("www.kaggle.com", 443), "github": ("raw.githubusercontent.com", 443)}


@dataclass
class Step:
    notebook: Path
    dataset: str
    parameters: dict
    task: str = DEFAULT_TASK

    @property
    def number(self) -> str:
        return self.notebook.name[:2]

    @property
    def series(self) -> str:
        """``dataset`` for the default task, else ``dataset/task``: the state's and the outputs' folder."""
        return self.dataset if self.task == DEFAULT_TASK else f"{self.dataset}/{self.task}"

    @property
    def key(self) -> str:
        return f"{self.series}/{self.notebook.name}"

    @property
    def fingerprint(self) -> str:
        text = json.dumps({"notebook": self.notebook.read_text(), "parameters": self.parameters, "task": self.task},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def output(self) -> Path:
        return paths.output_dir() / "notebooks" / self.series / self.notebook.name


class NotebookFailed(RuntimeError):
    pass


def has_gpu() -> bool:
    """An NVIDIA GPU answers ``nvidia-smi`` (checked without importing TensorFlow)."""
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def choose_profile(requested: str | None) -> tuple[str, str]:
    if requested and requested != "auto":
        return requested, "asked for"
    if has_gpu():
        return "full", "a GPU was found"
    return "cpu", "no GPU found (PROFILE=full forces the GPU-scale settings)"


def online(host: tuple[str, int], timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def resolve_dataset(name: str, *, strict: bool) -> tuple[str, str]:
    """The dataset to run on and why: a real one that cannot be reached becomes its synthetic stand-in."""
    from helpers.data.dataset import SYNTHETIC_FOR
    from helpers.data.sources import get_source

    source = get_source(name)
    if source.synthetic:
        return name, "synthetic (offline, generated)"
    host = HOSTS["kaggle"] if "kaggle" in source.homepage else HOSTS["github"]
    if online(host) or strict:
        return name, f"real ({source.homepage})"
    fallback = SYNTHETIC_FOR[source.modality]
    return fallback, f"SYNTHETIC: {host[0]} cannot be reached, so {name!r} is replaced by {fallback!r}"


def notebooks(root: Path | None = None, only: list[str] | None = None) -> list[Path]:
    found = sorted((root or paths.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in found if not only or nb.name[:2] in only]


def declared_parameters(notebook: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def check_tasks(datasets: list[str], tasks: list[str]) -> None:
    """Refuse, before anything runs, an unknown task or one a dataset cannot give (``check_source``'s message)."""
    for task in tasks:
        for dataset in datasets:
            try:
                check_source(base_name(dataset)[0], task)
            except ValueError as error:
                raise SystemExit(f"run-all refused, nothing was run: {error}") from None


def plan(profile: str, datasets: list[str], selected: list[Path], tasks: list[str] | None = None) -> list[Step]:
    """One step per dataset, task and notebook; a parameter goes only to a notebook that declares it.

    A notebook without a ``TASK`` parameter knows the default task only: it has no step for the others.
    """
    settings = PROFILES[profile]
    steps = []
    for dataset in datasets:
        for task in tasks or [DEFAULT_TASK]:
            for notebook in selected:
                wanted = {**settings["common"], **settings.get(notebook.name[:2], {}), "DATASET": dataset,
                          "TASK": task}
                declared = declared_parameters(notebook)
                if task == DEFAULT_TASK or "TASK" in declared:
                    steps.append(Step(notebook, dataset, {k: v for k, v in wanted.items() if k in declared}, task))
    return steps


def state_file() -> Path:
    return paths.output_dir() / "notebooks" / "state.json"


def read_state() -> dict:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}


def write_state(state: dict) -> None:
    write_text(state_file(), json.dumps(state, indent=1))


def default_jobs(profile: str) -> int:
    """Dataset series side by side: SMOKE notebooks leave CPU cores idle (imports, small batches),
    so the X-ray and CT series share the machine; larger profiles fill a GPU or all cores alone."""
    return (os.cpu_count() or 1) if profile == "smoke" else 1


@contextlib.contextmanager
def kernel_threads(jobs: int):
    """With several kernels at once, give each its share of the cores (TensorFlow and OpenMP read these)."""
    names = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    if jobs > 1:
        share = str(max(1, (os.cpu_count() or 1) // jobs))
        for name in names:
            os.environ.setdefault(name, share)
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def execute(step: Step, *, kernel: str = "python3", progress_bar: bool = True) -> float:
    """Run one notebook with papermill; raise NotebookFailed naming the cell on error."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = step.output()
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(step.notebook), str(output), parameters=step.parameters, kernel_name=kernel,
            cwd=str(step.notebook.parent), progress_bar=progress_bar and sys.stderr.isatty(), log_output=False,
        )
    except PapermillExecutionError as error:
        raise NotebookFailed(
            f"{step.notebook.name} ({step.dataset}{'' if step.task == DEFAULT_TASK else ', ' + step.task}) failed in cell {error.exec_count or error.cell_index}: "
            f"{error.ename}: {error.evalue}\nThe partly executed notebook is kept at {output}"
        ) from None
    return time.perf_counter() - started


def estimated_minutes(profile: str, notebook: str) -> float:
    try:
        # The checkout this runner belongs to (not the current folder): its notebooks' measured times.
        table = json.loads((paths.project_root(Path(__file__).parent) / "notebooks" / "timings.json").read_text())
    except (OSError, ValueError):
        table = {}
    entry = table.get(notebook, {}).get(TIMINGS_SETTING[profile])
    return entry["seconds"] / 60 if entry else 2.0


def machine() -> str:
    """Where a run was timed, as the notebooks' run-time lines name it: the GPU if any, the CPU cores."""
    cores = f"{os.cpu_count()} CPU cores"
    if not has_gpu():
        return f"{cores}, no GPU"
    query = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return f"GPU: {query.stdout.splitlines()[0].strip()}, {cores}"


def run_all(
    profile: str | None = None, *, datasets: list[str] | None = None, only: list[str] | None = None,
    force: bool = False, strict: bool = False, report: bool = True, kernel: str = "python3",
    notebook_dir: Path | None = None, jobs: int | None = None, tasks: list[str] | None = None,
) -> list[dict]:
    """Plan, print the plan, run the steps not already done, print the time table; returns its rows.

    ``tasks``: the tasks to run (default ``covid-vs-normal``), each on every dataset.
    """
    profile, why = choose_profile(profile)
    tasks = list(dict.fromkeys(tasks or [DEFAULT_TASK]))
    requested = datasets or DEFAULT_DATASETS[profile]
    check_tasks(requested, tasks)
    resolved = [resolve_dataset(name, strict=strict) for name in requested]
    selected = notebooks(notebook_dir, only=only)
    if not selected:
        raise SystemExit("no notebooks found under notebooks/ (or none matches --only)")
    steps = plan(profile, list(dict.fromkeys(name for name, _ in resolved)), selected, tasks)
    if strict:
        for step in steps:
            step.parameters["STRICT"] = True
    series = {}
    for step in steps:
        series.setdefault(step.series, []).append(step)
    jobs = max(1, min(jobs or default_jobs(profile), len(series)))
    estimate = sum(estimated_minutes(profile, step.notebook.stem) for step in steps) / jobs
    print(f"Plan: profile {profile!r} ({why})")
    for name, kind in resolved:
        print(f"  dataset {name}: {kind}")
    for task in tasks:
        print(f"  task {task}: classes {', '.join(get_task(task).classes)}")
    untasked = [nb.name for nb in selected if "TASK" not in declared_parameters(nb)]
    if untasked and set(tasks) - {DEFAULT_TASK}:
        print(f"  NOTE: no TASK parameter in {', '.join(untasked)}: run for {DEFAULT_TASK} only")
    print(f"  notebooks: {', '.join(nb.name for nb in selected)}")
    print(f"  estimated time: about {estimate:.0f} min; outputs in {paths.output_dir()}")
    if jobs > 1:
        print(f"  {jobs} series (dataset, task) run side by side (each notebook still runs after the one it "
              "builds on)")
    state = {} if force else read_state()
    started = time.perf_counter()
    lock, failed = threading.Lock(), threading.Event()

    def run_series(series_steps: list[Step]) -> tuple[list[dict], NotebookFailed | None]:
        rows, rerun_rest = [], force
        for step in series_steps:
            key = step.key
            done = state.get(key, {})
            if not rerun_rest and done.get("fingerprint") == step.fingerprint and step.output().exists():
                print(f"- {key}: done earlier with the same parameters, skipped (--force re-runs it)")
                rows.append({**done["row"], "status": "skipped (done)"})
                continue
            if failed.is_set():
                rows.append(_row(step, profile, "not run", 0.0))
                continue
            rerun_rest = True  # later notebooks read what this one writes
            print(f"- {key}: running with {step.parameters}", flush=True)
            try:
                seconds = execute(step, kernel=kernel, progress_bar=jobs == 1)
            except NotebookFailed as error:
                failed.set()
                rows.append(_row(step, profile, "FAILED", 0.0))
                return rows, error
            row = _row(step, profile, "ok", seconds)
            rows.append(row)
            with lock:
                state[key] = {"fingerprint": step.fingerprint, "row": row}
                write_state(state)
        return rows, None

    with kernel_threads(jobs), ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(run_series, series.values()))
    rows = [row for series_rows, _ in results for row in series_rows]
    errors = [error for _, error in results if error]
    if errors:
        _finish(rows, time.perf_counter() - started)
        for error in errors:
            print(f"\nFAILED: {error}", file=sys.stderr)
        raise errors[0]
    _finish(rows, time.perf_counter() - started)
    if report:
        from helpers.app.report import build_report
        from helpers.environment import import_tensorflow_quietly

        import_tensorflow_quietly()  # the report loads Keras models (its sanity figure)
        md, html = build_report()
        print(f"report: {html} (and {md.name})")
    return rows


def _row(step: Step, profile: str, status: str, seconds: float) -> dict:
    return {"notebook": step.notebook.stem, "dataset": step.dataset, "task": step.task, "profile": profile,
            "status": status, "seconds": round(seconds, 1)}


def _finish(rows: list[dict], wall: float) -> None:
    path = paths.output_dir() / "notebooks" / "timings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    measured = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    path.write_text(json.dumps([{**row, **measured} for row in rows], indent=1))
    print(f"\n{'notebook':34s} {'dataset':16s} {'task':19s} {'status':16s} {'seconds':>8s}")
    for row in rows:
        print(f"{row['notebook']:34s} {row['dataset']:16s} {row.get('task', DEFAULT_TASK):19s} {row['status']:16s} "
              f"{row['seconds']:8.1f}")
    total = sum(row["seconds"] for row in rows if row["status"] == "ok")
    print(f"{'sum of the times of the notebooks run now':88s} {total:8.1f}")
    print(f"{'wall clock':88s} {wall:8.1f}\nexecuted notebooks: {paths.output_dir() / 'notebooks'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers run-all", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["auto", *PROFILES], default=os.environ.get("PROFILE") or "auto")
    parser.add_argument("--dataset", help="comma-separated dataset names (default: the profile's)")
    parser.add_argument("--task", help=f"comma-separated tasks (default {DEFAULT_TASK}): covid-vs-normal, "
                        "covid-vs-pneumonia, three-class")
    parser.add_argument("--only", help="comma-separated notebook numbers, e.g. 02,03")
    parser.add_argument("--force", action="store_true", help="re-run notebooks already done")
    parser.add_argument("--strict", action="store_true", help="fail instead of falling back to synthetic data")
    parser.add_argument("--jobs", type=int, help="dataset series run side by side (default: the CPU cores for "
                        "smoke, else 1)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_all(
            args.profile, datasets=args.dataset.split(",") if args.dataset else None,
            only=args.only.split(",") if args.only else None, force=args.force, strict=args.strict,
            report=not args.no_report, jobs=args.jobs, tasks=args.task.split(",") if args.task else None,
        )
    except NotebookFailed:
        return 1
    return 0
