"""The course report: ``outputs/report.md`` and a self-contained ``outputs/report.html``.

It collects every run under the outputs folder (all datasets), the dataset summaries,
external validation, notebook timings and the environment. The HTML embeds its figures
as base64 PNG and needs nothing else; the Markdown links PNG files in ``report_files/``.

Command line: ``python -m helpers report [--output-dir DIR] [--n-boot N]``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers import paths
from helpers.constants import DISCLAIMER, NEGATIVE, POSITIVE
from helpers.evaluation import BASELINE, comparison_table, format_comparison, predictive_values
from helpers.plots import plot_confusion_matrices, plot_roc_pr
from helpers.runs import NOT_RUN_FOLDERS, Run, read_dataset_info, read_external, read_runs

FILES = "report_files"
NO_PRETRAINING = {"scratch"}  # trained from scratch by design; None or "random" means lost ImageNet weights
EXTERNAL_KEYS = ("model", "trained_on", "evaluated_on", "auc", "sensitivity", "specificity", "n")


# ---------------------------------------------------------------- blocks: one content, two renderings


def _inline(text: str) -> str:
    """Escaped HTML with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


@dataclass
class Heading:
    text: str
    level: int = 2

    def markdown(self) -> str:
        return f"{'#' * self.level} {self.text}"

    def html(self) -> str:
        return f"<h{self.level}>{_inline(self.text)}</h{self.level}>"


@dataclass
class Text:
    text: str
    kind: str = "p"  # "p", "banner", "disclaimer" or "caption"

    def markdown(self) -> str:
        if self.kind == "banner":
            return f"> **WARNING: {self.text}**"
        if self.kind == "disclaimer":
            return f"> *{self.text}*"
        return f"*{self.text}*" if self.kind == "caption" else self.text

    def html(self) -> str:
        return f'<p class="{self.kind}">{_inline(self.text)}</p>'


@dataclass
class Bullets:
    items: list[str]

    def markdown(self) -> str:
        return "\n".join(f"- {item}" for item in self.items)

    def html(self) -> str:
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in self.items) + "</ul>"


@dataclass
class Table:
    frame: pd.DataFrame

    def markdown(self) -> str:
        def cell(value) -> str:
            return "" if pd.isna(value) else str(value).replace("|", "\\|").replace("\n", " ")

        lines = [
            "| " + " | ".join(cell(c) for c in self.frame.columns) + " |",
            "|" + "---|" * len(self.frame.columns),
        ]
        lines += [
            "| " + " | ".join(cell(v) for v in row) + " |" for row in self.frame.itertuples(index=False)
        ]
        return "\n".join(lines)

    def html(self) -> str:
        def cell(value) -> str:
            text = "" if pd.isna(value) else str(value)
            css = ' class="n"' if NUMERIC.match(text) else ""
            return f"<td{css}>{html.escape(text)}</td>"

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.frame.columns)
        body = "".join(
            "<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in self.frame.itertuples(index=False)
        )
        return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


NUMERIC = re.compile(r"^-?[\d.]+( \([\d.]+-[\d.]+\)| / -?[\d.]+)?$")  # 0.91, 0.91 (0.85-0.96), 45 / 90


@dataclass
class Image:
    name: str
    png: bytes
    caption: str

    def markdown(self) -> str:
        return f"![{self.caption}]({FILES}/{self.name}.png)\n\n*{self.caption}*"

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(self.caption)}">'
            f"<figcaption>{_inline(self.caption)}</figcaption></figure>"
        )


@dataclass
class Columns:
    """Blocks shown side by side in HTML (one column each), one after the other in Markdown."""

    columns: list[list]

    def markdown(self) -> str:
        return "\n\n".join(block.markdown() for column in self.columns for block in column)

    def html(self) -> str:
        inner = "".join("<div>" + "".join(b.html() for b in column) + "</div>" for column in self.columns)
        return f'<div class="columns">{inner}</div>'


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 1em 2em 3em; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.banner { background: #b00020; color: #fff; font-size: 1.25em; font-weight: bold; padding: .8em 1em;
          border-radius: 6px; }
.disclaimer { border-left: 4px solid #888; background: #f5f5f5; padding: .5em 1em; font-style: italic; }
.caption { color: #555; font-size: .9em; }
.table { overflow-x: auto; margin: .5em 0 1em; }
table { border-collapse: collapse; font-size: .85em; }
th, td { padding: .3em .5em; text-align: left; vertical-align: top; border-bottom: 1px solid #e3e3e3; }
td.n { white-space: nowrap; }
th { background: #f0f0f0; } tbody tr:nth-child(even) { background: #fafafa; }
.columns { display: flex; flex-wrap: wrap; gap: 1.5em; }
.columns > div { flex: 1 1 480px; min-width: 0; }
figure { margin: .5em 0 1em; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9em; }
code { background: #f0f0f0; padding: 0 .25em; border-radius: 3px; }
"""


def render_markdown(blocks: list) -> str:
    return "\n\n".join(block.markdown() for block in blocks) + "\n"


def render_html(blocks: list, *, title: str) -> str:
    body = "\n".join(block.html() for block in blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body><main>\n{body}\n</main></body>\n</html>\n"
    )


# ------------------------------------------------------------------------------------- content


def _figure(fig, name: str, caption: str, files: Path) -> Image:
    """Save the figure as ``report_files/<name>.png``, close it, and return it as a block."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    (files / f"{name}.png").write_bytes(buffer.getvalue())
    return Image(name, buffer.getvalue(), caption)


def _number(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return str(value)
    return str(value) if isinstance(value, int | np.integer) else f"{value:.{digits}f}"


def _duration(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
    )


def _modality(name: str, info: dict | None) -> str:
    return str((info or {}).get("modality") or ("ct" if "ct" in re.split(r"[-_]", name.lower()) else "xray"))


def _datasets(root: Path, runs: list[Run]) -> dict[str, dict | None]:
    """Every dataset with runs or a dataset.json: X-ray first, then CT."""
    names = {run.dataset for run in runs}
    names |= {p.parent.name for p in root.glob("*/dataset.json") if p.parent.name not in NOT_RUN_FOLDERS}
    infos = {name: read_dataset_info(name, output_dir=root) for name in names}
    return dict(sorted(infos.items(), key=lambda item: (_modality(*item) != "xray", item[0])))


def _is_synthetic(name: str, info: dict | None, runs: list[Run]) -> bool:
    return bool((info or {}).get("synthetic")) or any(run.synthetic for run in runs if run.dataset == name)


def _banner(datasets: dict[str, dict | None], runs: list[Run]) -> list[Text]:
    """The loud warnings: synthetic data, transfer models without ImageNet weights."""
    messages = []
    synthetic = [name for name, info in datasets.items() if _is_synthetic(name, info, runs)]
    if synthetic:
        messages.append(
            f"SYNTHETIC DATA (dataset {', '.join(synthetic)}): these images were generated, not taken from "
            "patients. The numbers show that the code works, not that anything detects COVID-19."
        )
    unweighted = [
        f"{run.dataset}/{run.model} (weights={run.weights})"
        for run in runs
        if run.weights not in NO_PRETRAINING and str(run.weights).lower() != "imagenet"
    ]
    if unweighted:
        messages.append(
            "Transfer models trained WITHOUT ImageNet weights: "
            + ", ".join(unweighted)
            + ". Their results do not represent transfer learning."
        )
    return [Text(message, kind="banner") for message in messages]


def _split_counts(value) -> str:
    if isinstance(value, dict):
        return f"{value.get(POSITIVE, 0)} / {value.get(NEGATIVE, 0)}"
    return _number(value)


def _dataset_summary(name: str, info: dict | None, runs: list[Run]) -> dict[str, str]:
    """One column of the dataset table, from dataset.json where present, else from the runs."""
    info = info or {}
    mine = [run for run in runs if run.dataset == name]
    column = {
        "modality": _modality(name, info),
        "data": "SYNTHETIC" if _is_synthetic(name, info, runs) else "real",
        "images": _number(info.get("n_images")),
        "patients": _number(info.get("n_patients")),
    }
    splits = info.get("splits") or {}
    for split in ("train", "val", "test"):
        if split in splits:
            column[f"{split}: {POSITIVE} / {NEGATIVE}"] = _split_counts(splits[split])
        elif mine:
            rows = mine[0].split(split)
            counts = (rows["y_true"] == 1).sum(), (rows["y_true"] == 0).sum()
            total = (mine[0].metrics.get("n_images") or {}).get(split)
            shown = f"{counts[0]} / {counts[1]}" if len(rows) else f"{_number(total)} images"
            column[f"{split}: {POSITIVE} / {NEGATIVE}"] = shown
    return column


def _dataset_section(datasets: dict[str, dict | None], runs: list[Run]) -> list:
    table = pd.DataFrame({name: _dataset_summary(name, info, runs) for name, info in datasets.items()})
    blocks = [Heading("Datasets"), Table(table.fillna("-").rename_axis("").reset_index())]
    notes = [f"{name}: {note}" for name, info in datasets.items() for note in (info or {}).get("notes") or []]
    if notes:
        blocks.append(Bullets(notes))
    return blocks


HOW_TO_READ = [
    (
        "Each metric is shown as estimate (95% confidence interval). Intervals come from a bootstrap that "
        "resamples patients, not images: images of one patient are not independent evidence."
    ),
    (
        "Sensitivity: share of COVID-19 images called COVID. Specificity: share of normal images called "
        "normal. PPV / NPV: how often a positive / negative call is right, at the test set's prevalence."
    ),
    "The decision threshold was chosen on the validation split; the test split was never used for a choice.",
    (
        f"The `{BASELINE}` always predicts the most frequent training class. A model that does not clearly "
        "beat it on AUC and on sensitivity and specificity together has learned nothing useful."
    ),
]


def _predictive_table(rows: pd.DataFrame) -> pd.DataFrame:
    """PPV / NPV of each model at other prevalences, from its test sensitivity and specificity."""
    table = []
    for _, row in rows.iterrows():
        if pd.isna(row["sensitivity"]) or pd.isna(row["specificity"]):
            continue
        values = predictive_values(row["sensitivity"], row["specificity"])
        shown = {"Model": row["model"]}
        for _, value in values.iterrows():
            shown[f"prevalence {value['prevalence']:.0%}"] = (
                f"{_number(value['ppv'])} / {_number(value['npv'])}"
            )
        table.append(shown)
    return pd.DataFrame(table)


def _results_section(table: pd.DataFrame, runs: list[Run], datasets: dict, files: Path) -> list:
    blocks = [Heading("Results on the test split"), Bullets(HOW_TO_READ)]
    shown = format_comparison(table)
    roc_figures, matrix_figures = [], []
    for name, info in datasets.items():
        mine = [run for run in runs if run.dataset == name]
        in_table = table["dataset"] == name
        if not mine or not in_table.any():
            continue
        data = "SYNTHETIC data" if _is_synthetic(name, info, runs) else "real data"
        blocks += [
            Heading(f"{name} ({_modality(name, info)}, {data})", level=3),
            Table(shown[in_table.to_numpy()].drop(columns=["Dataset", "Data", "Accuracy"])),
            Text(
                f"95% intervals from {table.attrs['n_boot']} patient-level bootstrap resamples "
                "of the test split.",
                "caption",
            ),
        ]
        predictive = _predictive_table(table[in_table & (table["model"] != BASELINE)])
        if not predictive.empty:
            blocks += [
                Text(
                    "What a call would mean where COVID-19 is rarer or more common than in this test set "
                    "(PPV / NPV from test sensitivity and specificity, Bayes' rule):"
                ),
                Table(predictive),
            ]
        try:
            roc_figures.append(
                [
                    _figure(
                        plot_roc_pr(mine, vertical=True),
                        f"roc_pr_{name}",
                        f"{name}: ROC and precision-recall on the test split",
                        files,
                    )
                ]
            )
            matrix_figures.append(
                [
                    _figure(
                        plot_confusion_matrices(mine, ncols=2),
                        f"confusion_{name}",
                        f"{name}: confusion matrices at the validation-chosen threshold",
                        files,
                    )
                ]
            )
        except ValueError as error:
            blocks.append(Text(f"No figures for {name}: {error}.", "caption"))
    if roc_figures:
        blocks += [
            Heading("ROC and precision-recall"),
            Columns(roc_figures),
            Heading("Confusion matrices"),
            Columns(matrix_figures),
        ]
    return blocks


def _external_section(root: Path, table: pd.DataFrame | None) -> list:
    """Models evaluated on a dataset from another source, next to their internal test AUC."""
    records = read_external(root)
    if not records:
        return []
    internal = {} if table is None else {(r.dataset, r.model): r.auc for r in table.itertuples()}
    extra = [
        key
        for record in records
        for key in record
        if key not in (*EXTERNAL_KEYS, "file") and not isinstance(record[key], dict | list)
    ]
    columns = [*EXTERNAL_KEYS, *dict.fromkeys(extra)]
    rows = []
    for record in records:
        row = {key.replace("_", " "): _number(record.get(key)) for key in columns}
        row["internal test AUC"] = _number(internal.get((record.get("trained_on"), record.get("model"))))
        row["file"] = record["file"]
        rows.append(row)
    return [
        Heading("External validation"),
        Text(
            "Models applied to images from another hospital or source than they were trained on. "
            "A large drop from the internal test AUC means the model learned the source, not the disease."
        ),
        Table(pd.DataFrame(rows)),
    ]


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


def _timings_section(root: Path) -> list:
    timings = _read_timings(root)
    if isinstance(timings, dict):
        timings = timings.get("notebooks", list(timings.values()))
    rows = [t for t in timings or [] if isinstance(t, dict)]
    if not rows:
        return []
    table = pd.DataFrame(
        [
            {
                "notebook": t.get("notebook", "?"),
                "status": t.get("status", "?"),
                "time": _duration(t.get("seconds")),
                "profile": t.get("profile", "-"),
                "dataset": t.get("dataset", "-"),
            }
            for t in rows
        ]
    )
    total = sum(t["seconds"] for t in rows if isinstance(t.get("seconds"), int | float))
    return [Heading("Time per notebook"), Table(table), Text(f"Total: {_duration(total)}.", "caption")]


def _flatten(mapping: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _environment_section(runs: list[Run]) -> list:
    """Versions and device from each run's metrics.json; differing values are all listed."""
    values: dict[str, dict[str, None]] = {}
    for run in runs:
        environment = run.metrics.get("environment")
        for key, value in _flatten(environment if isinstance(environment, dict) else {}).items():
            values.setdefault(key, {})[value] = None
    if not values:
        return []
    table = pd.DataFrame({"": list(values), "value": [" | ".join(v) for v in values.values()]})
    return [Heading("Environment and versions"), Table(table)]


def _empty_section(root: Path) -> list:
    notebooks = sorted(p.name for p in (paths.project_root() / "notebooks").glob("*.ipynb"))
    steps = (
        [f"`notebooks/{name}`" for name in notebooks]
        if notebooks
        else ["the course notebooks in `notebooks/`, in order (the training notebooks write the results)"]
    )
    return [
        Heading("No results yet"),
        Text(f"No trained models were found under `{root}`. Run the notebooks first:"),
        Bullets(steps),
        Text(
            "Or run them all at once: `python -m helpers run-all --profile smoke` (minutes, synthetic data) "
            "or `make run-all`; then build this report again with `python -m helpers report`."
        ),
    ]


TITLE = "COVID-19 detection in chest X-rays and CT: results"


def _blocks(root: Path, runs: list[Run], *, n_boot: int, seed: int) -> list:
    files = root / FILES
    files.mkdir(parents=True, exist_ok=True)
    for stale in files.glob("*.png"):
        stale.unlink()
    datasets = _datasets(root, runs)
    blocks = [
        Heading(TITLE, level=1),
        Text(f"Generated {datetime.now():%Y-%m-%d %H:%M} from `{root}`.", "caption"),
        Text(DISCLAIMER, "disclaimer"),
        *_banner(datasets, runs),
    ]
    table = comparison_table(runs, n_boot=n_boot, seed=seed) if runs else None
    if datasets:
        blocks += _dataset_section(datasets, runs)
    if table is not None and not table.empty:
        blocks += _results_section(table, runs, datasets, files)
    else:
        blocks += _empty_section(root)
    blocks += _external_section(root, table) + _timings_section(root) + _environment_section(runs)
    return blocks


def build_report(output_dir: Path | None = None, *, n_boot: int = 1000, seed: int = 0) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into the outputs folder; return both."""
    root = Path(output_dir) if output_dir is not None else paths.output_dir()
    root.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = read_runs(root)
        blocks = _blocks(root, runs, n_boot=n_boot, seed=seed)
    notes = list(dict.fromkeys(str(w.message) for w in caught if w.category is UserWarning))
    if notes:
        blocks += [Heading("Notes from reading the outputs"), Bullets(notes)]
    blocks.append(Text(DISCLAIMER, "disclaimer"))
    markdown, page = root / "report.md", root / "report.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks, title=TITLE), encoding="utf-8")
    return markdown, page


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers report``: build the report and print where it is."""
    parser = argparse.ArgumentParser(prog="python -m helpers report", description=build_report.__doc__)
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="outputs folder (default: COURSE_OUTPUT_DIR)"
    )
    parser.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples per metric (default 1000)"
    )
    args = parser.parse_args(argv)
    markdown, page = build_report(args.output_dir, n_boot=args.n_boot)
    print(f"wrote {markdown}\nwrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
