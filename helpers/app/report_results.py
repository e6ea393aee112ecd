"""The report's results, per dataset and task: the comparison table, every model against the best (paired),
predictive values, calibration before/after, the three-class table, the Grad-CAM sanity check, and where
several tasks ran on one dataset, the tasks side by side. Runs of one task are compared only with each other
(each task has its own test images); runs scored on another test set are left out of the paired table."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from helpers.app.report_parts import best_by_val_auc, cells, figure, number, signed_interval, val_auc
from helpers.app.report_sanity import sanity_section
from helpers.data.tasks import DEFAULT_TASK, TASKS
from helpers.evaluation import BASELINE, comparison_table, format_comparison, predictive_values, reference_run
from helpers.evaluation.paired import compare_to_best
from helpers.evaluation.tables import DISPLAY_METRICS
from helpers.plots import plot_confusion_matrices, plot_roc_pr
from helpers.plots.review import plot_reliability_before_after

TEXT = {
    "paired": "Every model against {best}, the best by validation AUC (the test split chose nothing), on the same "
              "test patients: the difference (model minus best) with its 95% interval from {n_boot} paired "
              "patient-bootstrap resamples (each resample draws the same patients for both models). Sensitivity "
              "and specificity are read at each model's own validation-chosen threshold. DeLong's p (AUC) is a "
              "cross-check that treats images as independent.",
    "overlap": "Overlapping separate intervals (the table above) do not mean that the test set cannot tell two "
               "models apart: both were scored on the same patients, whose difficulty moves their metrics "
               "together, so the difference varies much less than either metric. Read the paired interval: one "
               "that excludes 0 says the test set tells the two apart; one that includes 0 says it cannot, which "
               "is not a proof that they are equally good.",
    "left_out": "Left out of the paired table, scored on another test set (their test_fingerprint differs): {runs}.",
    "tasks": "The tasks side by side: for each, the model of best validation AUC, COVID-19 against the rest on "
             "that task's own test images (a task with pneumonia controls asks a harder question than one "
             "with healthy lungs only); macro AUC averages every class against the rest (three classes).",
    "sanity": "Grad-CAM sanity check (Adebayo et al. 2018): the best Keras model by validation AUC explains a few "
              "test images (the same ones every time), each map the class the model called, all maps on one "
              "colour scale; beside them the maps of the same network with its top layers re-initialised at "
              "random. Maps that look alike (a rank correlation near 1) show the image, not what the model "
              "learned, and explain nothing.",
    "multiclass": "Three classes on test (from metrics.json): accuracy, macro one-vs-rest AUC, and per class the "
                  "sensitivity (share of the class found) and PPV (share of the calls of that class that are right); "
                  "below, the confusion matrix of the model of best validation AUC (each image called its most "
                  "probable class).",
}


def task_order(task: str) -> int:
    return list(TASKS).index(task) if task in TASKS else len(TASKS)


def groups(runs: list) -> dict[tuple[str, str], list]:
    """The runs by ``(dataset, task)``, tasks in the course's order, models by name."""
    found: dict[tuple[str, str], list] = {}
    for run in sorted(runs, key=lambda run: (task_order(run.task), run.model)):
        found.setdefault((run.dataset, run.task), []).append(run)
    return found


def results_section(runs: list, headings: dict[str, str], *, files: Path, n_boot: int, seed: int) -> dict | None:
    """Per dataset (``headings``: name -> heading, in order), per task: every table and figure; None when
    nothing was scored. ``table``: every task's comparison table (with ``task``); ``different``: runs on another
    test set."""
    section, tables = {"datasets": [], "roc": [], "confusion": [], "different": []}, []
    by_group = groups(runs)
    for name, heading in headings.items():
        entries = []
        for (dataset, task), mine in by_group.items():
            if dataset != name:
                continue
            scored = [run for run in mine if not run.split("test").empty]
            frame = comparison_table(mine, n_boot=n_boot, seed=seed) if scored else pd.DataFrame()
            if frame.empty:
                continue
            section["different"] += frame.attrs.get("different_test_set", [])
            tables.append(frame.assign(task=task))
            entries.append(_task_entry(name, task, scored, frame, files=files, n_boot=n_boot, seed=seed,
                                       section=section))
        if entries:
            section["datasets"].append({"heading": heading, "entries": entries,
                                        "tasks": _tasks_table(entries) if len(entries) > 1 else None})
    section["table"] = pd.concat(tables, ignore_index=True) if tables else None
    return section if tables else None


def _task_entry(name: str, task: str, runs: list, frame: pd.DataFrame, *, files: Path, n_boot: int, seed: int,
                section: dict) -> dict:
    """One task of one dataset: its tables, and its figures appended to the section's."""
    label = name if task == DEFAULT_TASK else f"{name}, {task}"
    key = name if task == DEFAULT_TASK else f"{name}_{task}"
    shown = format_comparison(frame)
    entry = {
        "heading": f"Task {task}: {', '.join(runs[0].classes)}",
        "task": task, "frame": frame, "runs": runs,
        "table": cells(shown.drop(columns=["Dataset", "Data", "Accuracy"])),
        "paired": paired_section(runs, n_boot=n_boot, seed=seed),
        "predictive": _predictive_table(frame[frame["model"] != BASELINE]),
        "calibration": _calibration_table(runs),
        "reliability": _reliability_figure(runs, label, key, files),
        "multiclass": _multiclass_table(runs),
        "confusion": _confusion_table(same_test_set(runs)),
        "sanity": sanity_section(same_test_set(runs), label=label, key=key, files=files, seed=seed),
        "problem": None,
    }
    try:
        section["roc"].append(figure(plot_roc_pr(runs, vertical=True), f"roc_pr_{key}",
                                     f"{label}: ROC and precision-recall on the test split", files))
        section["confusion"].append(figure(plot_confusion_matrices(runs, ncols=2), f"confusion_{key}",
                                           f"{label}: confusion matrices at the validation-chosen threshold", files))
    except ValueError as error:
        entry["problem"] = f"No figures for {label}: {error}."
    return entry


def same_test_set(runs: list) -> list:
    """The runs scored on the test images most runs share (and those saved without a fingerprint)."""
    reference = reference_run(runs).test_fingerprint
    return [run for run in runs if run.test_fingerprint in (None, reference)]


def paired_section(runs: list, *, n_boot: int, seed: int) -> dict:
    """``{"table", "text", "overlap", "left_out", "message"}``: :func:`compare_to_best` on :func:`same_test_set`."""
    same = same_test_set(runs)
    left = [run.model for run in runs if all(run is not kept for kept in same)]
    shown = {"table": None, "text": None, "overlap": TEXT["overlap"], "message": None,
             "left_out": TEXT["left_out"].format(runs=", ".join(left)) if left else None}
    if len(same) < 2:
        return {**shown, "message": "Only one model was scored on this test set: nothing to compare it with yet."}
    try:
        differences = compare_to_best(same, n_boot=n_boot, seed=seed)
    except ValueError as error:
        return {**shown, "message": f"No paired comparison: {error}."}
    best = differences.attrs["best"]
    rows = []
    for model, mine in differences.groupby("model", sort=False):
        by_metric = mine.set_index("metric")
        clear = [DISPLAY_METRICS[metric] for metric, row in by_metric.iterrows() if row["clear"]]
        row = {"Model": model, "AUC (model / best)": f"{number(by_metric.loc['auc', 'model_value'])} / "
                                                     f"{number(by_metric.loc['auc', 'best_value'])}"}
        for metric, values in by_metric.iterrows():
            row[f"{DISPLAY_METRICS[metric]} difference (95% CI)"] = signed_interval(
                values["difference"], values["low"], values["high"])
        p = by_metric.loc["auc", "delong_p"]
        row["DeLong p (AUC)"] = "< 0.001" if p < 0.001 else number(p, 3)
        row["interval excludes 0"] = ", ".join(clear) or "none"
        rows.append(row)
    text = TEXT["paired"].format(best=f"`{best}` (validation AUC {number(differences.attrs['best_val_auc'])})",
                                 n_boot=n_boot)
    return {**shown, "table": cells(pd.DataFrame(rows)), "text": text}


def _predictive_table(rows: pd.DataFrame) -> dict | None:
    """PPV / NPV of each model at other prevalences, from its test sensitivity and specificity."""
    shown = []
    for _, row in rows.iterrows():
        if pd.isna(row["sensitivity"]) or pd.isna(row["specificity"]):
            continue
        values = {"Model": row["model"]}
        for _, value in predictive_values(row["sensitivity"], row["specificity"]).iterrows():
            values[f"prevalence {value['prevalence']:.0%}"] = f"{number(value['ppv'])} / {number(value['npv'])}"
        shown.append(values)
    return cells(pd.DataFrame(shown)) if shown else None


def _calibration_table(runs: list) -> dict | None:
    """T and the test Brier score before/after calibration per run that stored them (``metrics.json``)."""
    rows = [{"Model": run.model, "T (fitted on val)": number(record.get("T")),
             "Brier before": number(record.get("brier_test_before"), 3),
             "Brier after": number(record.get("brier_test_after"), 3), "Note": record.get("note") or ""}
            for run in runs if (record := run.metrics.get("calibration"))]
    return cells(pd.DataFrame(rows)) if rows else None


def _stored_calibration(run):
    """The run's stored temperature; None (warned: a note of the report) when there is none or it is unusable."""
    try:
        return run.calibration
    except ValueError as error:
        warnings.warn(f"{run.path}: its stored calibration is not used ({error})", stacklevel=2)
        return None


def _reliability_figure(runs: list, label: str, key: str, files: Path):
    """The reliability diagram on test before and after the stored temperature, of the best calibrated run."""
    stored = {run.name: calibration for run in same_test_set(runs) if (calibration := _stored_calibration(run))}
    run = best_by_val_auc([run for run in runs if run.name in stored])
    if run is None:
        return None
    test, calibration = run.split("test"), stored[run.name]
    before = test["probability"].to_numpy(float)
    fig = plot_reliability_before_after(test["y_true"], before, calibration.apply(before), synthetic=run.synthetic,
                                        title=f"{run.model}: calibration on test,\nbefore and after T = "
                                              f"{calibration.T:.2f} (fitted on val)")
    return figure(fig, f"reliability_{key}",
                  f"{label}: reliability of {run.model} (best validation AUC) before and after temperature scaling",
                  files)


def _multiclass_table(runs: list) -> dict | None:
    """Accuracy, macro AUC and per-class sensitivity / PPV on test of each multi-class run."""
    rows = []
    for run in runs:
        record = (run.metrics.get("multiclass") or {}).get("test")
        if not run.multiclass or not isinstance(record, dict):
            continue
        row = {"Model": run.model, "accuracy": number(record.get("accuracy")),
               "macro AUC": number(record.get("macro_auc"))}
        for what in ("sensitivity", "ppv"):
            row |= {f"{what} {c}": number((record.get(what) or {}).get(c)) for c in run.classes}
        rows.append(row)
    return cells(pd.DataFrame(rows)) if rows else None


def _confusion_table(runs: list) -> dict | None:
    """The test confusion matrix (rows true, columns predicted) of the best multi-class run by validation AUC."""
    best = best_by_val_auc([run for run in runs if run.multiclass])
    matrix = (((best.metrics.get("multiclass") or {}).get("test") or {}).get("confusion")) if best else None
    if not matrix or len(matrix) != len(best.classes):
        return None
    frame = pd.DataFrame(matrix, columns=[f"called {c}" for c in best.classes])
    frame.insert(0, f"{best.model}: true class", list(best.classes))
    return cells(frame)


def _tasks_table(entries: list[dict]) -> dict:
    """One row per task of a dataset: its best model by validation AUC and that model's test numbers."""
    rows = []
    for entry in entries:
        best = best_by_val_auc(same_test_set(entry["runs"]))
        shown = format_comparison(entry["frame"]).set_index("Model").loc[best.model]
        macro = ((best.metrics.get("multiclass") or {}).get("test") or {}).get("macro_auc")
        rows.append({"Task": entry["task"], "Classes": ", ".join(best.classes),
                     "Best model (val AUC)": f"{best.model} ({number(val_auc(best))})",
                     "COVID-vs-rest AUC": shown["AUC"], "Sensitivity": shown["Sensitivity"],
                     "Specificity": shown["Specificity"], "Macro AUC": number(macro) if best.multiclass else "-",
                     "Images / patients": shown["Images / patients"]})
    return cells(pd.DataFrame(rows))
