"""The course report: ``outputs/report.md`` and a self-contained ``outputs/report.html``.

It collects every run under the outputs folder (all datasets and tasks), the dataset summaries,
external validation, notebook timings and the environment into one context, rendered by
two Jinja2 templates (``templates/report.html.j2``, autoescaped, and ``templates/report.md.j2``).
The results per dataset and task (comparison, paired differences against the best model,
calibration, three classes, the tasks side by side) are :mod:`helpers.app.report_results`; the
Grad-CAM sanity check is :mod:`helpers.app.report_sanity`.
The HTML embeds its figures as base64 PNG and needs nothing else; the Markdown links PNG
files in ``report_files/``.

Command line: ``python -m helpers report [--output-dir DIR] [--n-boot N]``.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from datetime import datetime
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from helpers import paths
from helpers.app import report_results
from helpers.app.report_parts import cells, number
from helpers.constants import DISCLAIMER, NEGATIVE, POSITIVE
from helpers.data import dataset_info
from helpers.evaluation import BASELINE, reference_run
from helpers.files import write_text
from helpers.runs import NOT_RUN_FOLDERS, Run, read_external, read_runs, run_name

FILES = "report_files"
TITLE = "COVID-19 detection in chest X-rays and CT: results"
NO_PRETRAINING = {"scratch"}  # trained from scratch by design; None or "random" means lost ImageNet weights
EXTERNAL_KEYS = ("model", "trained_on", "evaluated_on", "auc", "sensitivity", "specificity", "n")
# 0.91, 0.91 (0.85-0.96), 45 / 90, +0.04 (-0.01, +0.09)
NUMERIC = re.compile(r"^[-+]?[\d.]+( \([\d.]+-[\d.]+\)| / -?[\d.]+| \([-+]?[\d.]+, [-+]?[\d.]+\))?$")
HOW_TO_READ = [
    "Each metric is shown as estimate (95% confidence interval). Intervals come from a bootstrap that "
    "resamples patients, not images: images of one patient are not independent evidence.",
    "Sensitivity: share of COVID-19 images called COVID. Specificity: share of the other images (normal, or other "
    "pneumonia, by task) not called COVID. PPV / NPV: how often a positive / negative call is right, at the test "
    "set's prevalence. Every task is read as COVID-19 against the rest.",
    "The decision threshold was chosen on the validation split; the test split was never used for a choice.",
    f"The `{BASELINE}` always predicts the most frequent training class. A model that does not clearly "
    "beat it on AUC and on sensitivity and specificity together has learned nothing useful.",
    "Test set: `same` when a model was scored on the same test images as the other models of its dataset and task; "
    "`DIFFERENT` rows cannot be compared with the rest; `unknown` for runs saved without a fingerprint.",
]

TEXT = {  # the report's sentences, shared by both templates (`code` spans become <code> in HTML); see also
    # report_results.TEXT and report_sanity.TEXT
    "calibration": "Calibration: each model's probabilities divided in the logit by a temperature T fitted on the "
                   "validation split (the ranking, the AUC and the calls stay the same); the Brier score on test "
                   "before and after (lower is better).",
    "predictive": "What a call would mean where COVID-19 is rarer or more common than in this test set "
                  "(PPV / NPV from test sensitivity and specificity, Bayes' rule):",
    "external": "Models applied to images from another hospital or source than they were trained on. "
                "A large drop from the internal test AUC means the model learned the source, not the disease.",
    "no_results": "No trained models were found under `{root}`. Run the notebooks first:",
    "run_all": "Or run them all at once: `python -m helpers run-all --profile smoke` (minutes, synthetic data) "
               "or `make run-all`; then build this report again with `python -m helpers report`.",
}


# ---------------------------------------------------------------- templates


def _inline(text) -> Markup:
    """Escaped HTML with `code` spans."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _markdown_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("helpers.app", "templates"), autoescape=jinja2.select_autoescape(["html.j2"]),
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
)
TEMPLATES.filters.update(inline=_inline, md_cell=_markdown_cell)
TEMPLATES.tests["numeric"] = lambda value: bool(NUMERIC.match(value))


# ---------------------------------------------------------------- content


def _duration(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _modality(name: str, info: dict | None) -> str:
    return str((info or {}).get("modality") or ("ct" if "ct" in re.split(r"[-_]", name.lower()) else "xray"))


def _datasets(root: Path, runs: list[Run]) -> dict[str, dict | None]:
    """Every dataset with runs (with the record of their test set) or a dataset.json: X-ray first, then CT."""
    by_dataset: dict[str, list[Run]] = {}
    for run in runs:
        by_dataset.setdefault(run.dataset, []).append(run)
    infos = {name: reference_run(mine).dataset_info for name, mine in by_dataset.items()}
    for name in sorted({p.parent.name for p in root.glob("*/dataset.json")} - NOT_RUN_FOLDERS - set(infos)):
        infos[name] = dataset_info(name, root=root)
    return dict(sorted(infos.items(), key=lambda item: (_modality(*item) != "xray", item[0])))


def _is_synthetic(name: str, info: dict | None, runs: list[Run]) -> bool:
    return bool((info or {}).get("synthetic")) or any(run.synthetic for run in runs if run.dataset == name)


def _banners(datasets: dict[str, dict | None], runs: list[Run], different: list[str]) -> list[str]:
    """The loud warnings: synthetic data, transfer models without ImageNet weights, other test sets."""
    messages = []
    synthetic = [name for name, info in datasets.items() if _is_synthetic(name, info, runs)]
    if synthetic:
        messages.append(
            f"SYNTHETIC DATA (dataset {', '.join(synthetic)}): these images were generated, not taken from "
            "patients. The numbers show that the code works, not that anything detects COVID-19.")
    unweighted = [f"{run.dataset}/{run.name} (weights={run.weights})" for run in runs
                  if run.weights not in NO_PRETRAINING and str(run.weights).lower() != "imagenet"]
    if unweighted:
        messages.append(f"Transfer models trained WITHOUT ImageNet weights: {', '.join(unweighted)}. "
                        "Their results do not represent transfer learning.")
    if different:
        messages.append(f"Scored on a DIFFERENT test set than the other models of their dataset: "
                        f"{', '.join(different)}. Their numbers cannot be compared with the rest.")
    return messages


def _heading(name: str, info: dict | None, runs: list[Run]) -> str:
    return f"{name} ({_modality(name, info)}, {'SYNTHETIC' if _is_synthetic(name, info, runs) else 'real'} data)"


def _split_counts(value) -> str:
    if isinstance(value, dict):
        return f"{value.get(POSITIVE, 0)} / {sum(n for label, n in value.items() if label != POSITIVE)}"
    return number(value)


def _dataset_summary(name: str, info: dict | None, runs: list[Run]) -> dict[str, str]:
    """One column of the dataset table, from dataset.json where present, else from the runs."""
    info = info or {}
    mine = [run for run in runs if run.dataset == name]
    column = {
        "modality": _modality(name, info),
        "data": "SYNTHETIC" if _is_synthetic(name, info, runs) else "real",
        "classes": ", ".join(info.get("classes") or (mine[0].classes if mine else (NEGATIVE, POSITIVE))),
        "images": number(info.get("n_images")),
        "patients": number(info.get("n_patients")),
    }
    splits = info.get("splits") or {}
    for split in ("train", "val", "test"):
        if split in splits:
            column[f"{split}: {POSITIVE} / rest"] = _split_counts(splits[split])
        elif mine:
            rows = mine[0].split(split)
            total = (mine[0].metrics.get("n_images") or {}).get(split)
            shown = (f"{(rows['y_true'] == 1).sum()} / {(rows['y_true'] == 0).sum()}" if len(rows)
                     else f"{number(total)} images")
            column[f"{split}: {POSITIVE} / rest"] = shown
    return column


def _dataset_section(datasets: dict[str, dict | None], runs: list[Run]) -> dict | None:
    """One column per dataset, or per dataset and task where several tasks ran on it."""
    if not datasets:
        return None
    columns, infos = {}, []
    for name, info in datasets.items():
        tasks = report_results.groups([run for run in runs if run.dataset == name])
        if len(tasks) < 2:
            columns[name], infos = _dataset_summary(name, info, runs), [*infos, (name, info)]
            continue
        for (_, task), mine in tasks.items():
            task_info = reference_run(mine).dataset_info
            columns[f"{name} ({task})"] = _dataset_summary(name, task_info, mine)
            infos.append((f"{name} ({task})", task_info))
    table = pd.DataFrame(columns)
    notes = list(dict.fromkeys(f"{name}: {note}" for name, info in infos for note in (info or {}).get("notes") or []))
    return {"table": cells(table.fillna("-").rename_axis("").reset_index()), "notes": notes}


def _external_section(root: Path, table: pd.DataFrame | None) -> dict | None:
    """Models evaluated on a dataset from another source, next to their internal test AUC."""
    records = read_external(root)
    if not records:
        return None
    internal = {} if table is None else {(r.dataset, run_name(r.model, r.task)): r.auc for r in table.itertuples()}
    extra = [key for record in records for key in record
             if key not in (*EXTERNAL_KEYS, "file") and not isinstance(record[key], dict | list)]
    rows = []
    for record in records:
        row = {key.replace("_", " "): number(record.get(key)) for key in [*EXTERNAL_KEYS, *dict.fromkeys(extra)]}
        row["internal test AUC"] = number(internal.get((record.get("trained_on"), record.get("model"))))
        row["file"] = record["file"]
        rows.append(row)
    return cells(pd.DataFrame(rows))


def _read_timings(root: Path):
    """``outputs/notebooks/timings.json`` as written by ``run-all``; None (warned) when unreadable."""
    path = root / "notebooks" / "timings.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        warnings.warn(f"{path} is not readable JSON ({error}); run `python -m helpers run-all` again", stacklevel=2)
        return None


def _timings_section(root: Path) -> dict | None:
    timings = _read_timings(root)
    if isinstance(timings, dict):
        timings = timings.get("notebooks", list(timings.values()))
    rows = [t for t in timings or [] if isinstance(t, dict)]
    if not rows:
        return None
    table = pd.DataFrame([{"notebook": t.get("notebook", "?"), "status": t.get("status", "?"),
                           "time": _duration(t.get("seconds")), "profile": t.get("profile", "-"),
                           "dataset": t.get("dataset", "-")} for t in rows])
    total = sum(t["seconds"] for t in rows if isinstance(t.get("seconds"), int | float))
    return {"table": cells(table), "total": _duration(total)}


def _environment_section(runs: list[Run]) -> dict | None:
    """Versions and device from each run's metrics.json; differing values are all listed."""
    values: dict[str, dict[str, None]] = {}
    for run in runs:
        environment = run.metrics.get("environment")
        flat = pd.json_normalize(environment if isinstance(environment, dict) else {}, sep=".")
        for key, value in flat.iloc[0].items():
            values.setdefault(key, {})[str(value)] = None
    if not values:
        return None
    return cells(pd.DataFrame({"": list(values), "value": [" | ".join(v) for v in values.values()]}))


def _next_steps() -> list[str]:
    """What to run when there are no results yet."""
    notebooks = sorted(p.name for p in (paths.project_root() / "notebooks").glob("*.ipynb"))
    if notebooks:
        return [f"`notebooks/{name}`" for name in notebooks]
    return ["the course notebooks in `notebooks/`, in order (the training notebooks write the results)"]


def _context(root: Path, runs: list[Run], *, n_boot: int, seed: int) -> dict:
    """Everything the templates show (warnings raised while collecting it become the report's notes)."""
    files = root / FILES
    files.mkdir(parents=True, exist_ok=True)
    for stale in files.glob("*.png"):
        stale.unlink()
    datasets = _datasets(root, runs)
    headings = {name: _heading(name, info, runs) for name, info in datasets.items()}
    results = report_results.results_section(runs, headings, files=files, n_boot=n_boot, seed=seed)
    return {
        "title": TITLE, "generated": f"{datetime.now():%Y-%m-%d %H:%M}", "root": str(root), "disclaimer": DISCLAIMER,
        "banners": _banners(datasets, runs, results["different"] if results else []),
        "datasets": _dataset_section(datasets, runs),
        "how_to_read": HOW_TO_READ,
        "text": {**TEXT, **report_results.TEXT, "no_results": TEXT["no_results"].format(root=root)},
        "n_boot": n_boot,
        "results": results,
        "next_steps": None if results else _next_steps(),
        "external": _external_section(root, results["table"] if results else None),
        "timings": _timings_section(root),
        "environment": _environment_section(runs),
    }


def build_report(output_dir: Path | None = None, *, n_boot: int = 1000, seed: int = 0) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into the outputs folder; return both."""
    root = Path(output_dir) if output_dir is not None else paths.output_dir()
    root.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = _context(root, read_runs(root), n_boot=n_boot, seed=seed)
    context["notes"] = list(dict.fromkeys(str(w.message) for w in caught if w.category is UserWarning))
    markdown, page = root / "report.md", root / "report.html"
    write_text(markdown, TEMPLATES.get_template("report.md.j2").render(context, files=FILES))
    write_text(page, TEMPLATES.get_template("report.html.j2").render(context))
    return markdown, page


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers report``: build the report and print where it is."""
    parser = argparse.ArgumentParser(prog="python -m helpers report", description=build_report.__doc__)
    parser.add_argument("--output-dir", type=Path, default=None, help="outputs folder (default: COURSE_OUTPUT_DIR)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per metric (default 1000)")
    args = parser.parse_args(argv)
    markdown, page = build_report(args.output_dir, n_boot=args.n_boot)
    print(f"wrote {markdown}\nwrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
