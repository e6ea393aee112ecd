"""Reading run artifacts, the comparison table, evaluation figures and the report, on fake runs."""

from __future__ import annotations

import base64
import json
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import evaluation as ev
from helpers import plots
from helpers.app import report
from helpers.runs import read_runs

# ------------------------------------------------------------------ fake but valid artifacts


def write_run(
    root: Path,
    dataset: str = "synthetic",
    model: str = "small_cnn",
    *,
    synthetic: bool = True,
    weights: str | None = None,
    n_patients: int = 45,
    images: int = 3,
    separation: float = 2.0,
    seed: int = 0,
    fingerprint: str | None = None,
) -> Path:
    """``outputs/<dataset>/<model>/`` with predictions.csv and metrics.json as training writes them."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("val", "test"):
        for i in range(n_patients):
            label = "COVID" if i % 3 == 0 else "NORMAL"
            patient, effect = f"{dataset}:{split}{i}", rng.normal(0, 0.7)
            for j in range(images):
                score = separation * (label == "COVID") - separation / 2 + effect + rng.normal()
                rows.append(
                    {
                        "path": f"{label}/{split}{i}_{j}.png",
                        "patient_id": patient,
                        "split": split,
                        "label": label,
                        "y_true": int(label == "COVID"),
                        "probability": round(float(1 / (1 + np.exp(-score))), 4),
                    }
                )
    predictions = pd.DataFrame(rows)
    val, test = (predictions[predictions["split"] == s] for s in ("val", "test"))
    threshold = ev.choose_threshold(val["y_true"], val["probability"])
    metrics = {
        "model": model,
        "dataset": dataset,
        "synthetic": synthetic,
        "weights": weights,
        "threshold": threshold,
        "threshold_rule": "youden",
        "img_size": 64,
        "gradcam_layer": "conv_last",
        "test": ev.binary_metrics(test["y_true"], test["probability"], threshold),
        "val": ev.binary_metrics(val["y_true"], val["probability"], threshold),
        "train_seconds": 42.0,
        "n_images": {"train": 5 * len(val), "val": len(val), "test": len(test)},
        "epochs": 3,
        "n_parameters": 12345,
        "params": {"batch_size": 16},
        "environment": {"python": "3.11.9", "tensorflow": "2.17.0", "device": {"kind": "CPU"}},
        **({"test_fingerprint": fingerprint} if fingerprint else {}),
    }
    folder = root / dataset / model
    folder.mkdir(parents=True)
    predictions.to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def write_dataset_info(root: Path, dataset: str, *, synthetic: bool, modality: str, train=(100, 200)) -> None:
    info = {
        "name": dataset,
        "synthetic": synthetic,
        "modality": modality,
        "n_images": 900,
        "n_patients": 300,
        "splits": {
            "train": {"COVID": train[0], "NORMAL": train[1]},
            "val": {"COVID": 45, "NORMAL": 90},
            "test": {"COVID": 45, "NORMAL": 90},
        },
        "notes": ["3 images with unknown view were dropped"],
    }
    (root / dataset).mkdir(parents=True, exist_ok=True)
    (root / dataset / "dataset.json").write_text(json.dumps(info))


@pytest.fixture
def outputs(tmp_path) -> Path:
    """Two datasets (synthetic X-ray, real CT), three models, external validation, timings, one broken run."""
    root = tmp_path / "outputs"
    write_dataset_info(root, "synthetic", synthetic=True, modality="xray")
    write_run(root, "synthetic", "small_cnn")
    write_run(root, "synthetic", "densenet121", weights="imagenet", separation=3.0, seed=1)
    write_run(root, "covid-ct", "resnet50", synthetic=False, weights="imagenet", seed=2)
    (root / "synthetic" / "unfinished").mkdir()
    (root / "synthetic" / "external").mkdir()
    (root / "synthetic" / "external" / "densenet121_on_actualmed.json").write_text(
        json.dumps(
            {
                "model": "densenet121",
                "trained_on": "synthetic",
                "evaluated_on": "actualmed",
                "auc": 0.61,
                "sensitivity": 0.5,
                "specificity": 0.7,
                "n": 120,
                "auc_low": 0.52,
            }
        )
    )
    (root / "notebooks").mkdir()
    (root / "notebooks" / "timings.json").write_text(
        json.dumps(
            [
                {
                    "notebook": "03_small_cnn.ipynb",
                    "status": "ok",
                    "seconds": 95.2,
                    "profile": "smoke",
                    "dataset": "synthetic",
                },
                {"notebook": "04_transfer.ipynb", "status": "failed", "seconds": 3700},
            ]
        )
    )
    return root


# ------------------------------------------------------------------------------ reading runs


def test_read_runs_reads_every_finished_run_and_notes_the_rest(outputs):
    with pytest.warns(UserWarning, match="unfinished"):
        runs = read_runs(outputs)
    assert sorted((r.dataset, r.model) for r in runs) == [
        ("covid-ct", "resnet50"),
        ("synthetic", "densenet121"),
        ("synthetic", "small_cnn"),
    ]
    run = next(r for r in runs if r.model == "small_cnn")
    assert run.synthetic and run.weights is None and run.dataset_info["modality"] == "xray"
    assert set(run.predictions["split"]) == {"val", "test"}
    assert run.threshold == json.loads((run.path / "metrics.json").read_text())["threshold"]
    assert [r.model for r in read_runs(outputs, dataset="covid-ct")] == ["resnet50"]


def test_comparison_table_has_intervals_and_the_baseline(outputs):
    with pytest.warns(UserWarning):
        runs = read_runs(outputs)
    table = ev.comparison_table(runs, n_boot=300)
    assert table["model"].tolist().count(ev.BASELINE) == 2  # one per dataset
    for name in ("auc", "sensitivity", "specificity", "ppv", "npv", "f1"):
        inside = table[name].between(table[f"{name}_low"], table[f"{name}_high"]) | table[name].isna()
        assert inside.all(), name
    models = table[table["model"] != ev.BASELINE]
    assert (models["n_images"] == 135).all() and (models["n_patients"] == 45).all()
    assert models["threshold"].tolist() == [r.threshold for r in runs]
    tests = [r.split("test") for r in runs]
    assert models["auc"].tolist() == pytest.approx([roc_auc_score(t["y_true"], t["probability"]) for t in tests])
    baseline = table[(table["model"] == ev.BASELINE) & (table["dataset"] == "synthetic")].iloc[0]
    assert (baseline["auc"], baseline["sensitivity"], baseline["specificity"]) == (0.5, 0.0, 1.0)
    assert baseline["threshold_rule"].endswith("(majority of train)")  # majority read from dataset.json
    shown = ev.format_comparison(table)
    assert re.fullmatch(r"0\.\d\d \(0\.\d\d-[01]\.\d\d\)", shown["AUC"].iloc[0])
    assert shown["Data"].tolist().count("SYNTHETIC") == 3
    assert set(shown["Test set"]) == {"unknown"}  # these runs were saved without a test fingerprint


def test_baseline_follows_the_training_majority(tmp_path):
    write_dataset_info(tmp_path, "synthetic", synthetic=True, modality="xray", train=(300, 100))
    write_run(tmp_path, "synthetic", "small_cnn")
    table = ev.comparison_table(read_runs(tmp_path), n_boot=50)
    baseline = table.iloc[-1]
    assert baseline["sensitivity"] == 1.0 and baseline["specificity"] == 0.0
    assert "always COVID" in baseline["threshold_rule"]


def banners(page: Path) -> list[str]:
    return re.findall(r'<p class="banner">(.*?)</p>', page.read_text(encoding="utf-8"))


def test_runs_on_another_test_set_are_flagged_in_the_table_and_the_report(tmp_path):
    write_run(tmp_path, "synthetic", "small_cnn", fingerprint="aaaa")
    write_run(tmp_path, "synthetic", "densenet121", fingerprint="aaaa", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same test set: compared silently
        table = ev.comparison_table(read_runs(tmp_path), n_boot=50)
        _, page = report.build_report(tmp_path, n_boot=50)
    assert set(table["test_set"]) == {ev.SAME} and table.attrs["different_test_set"] == []
    assert not any("DIFFERENT" in banner for banner in banners(page))

    write_run(tmp_path, "synthetic", "a_capped_cnn", fingerprint="bbbb", n_patients=30, seed=2)  # another cap
    with pytest.warns(UserWarning, match="synthetic/a_capped_cnn: scored on other test images"):
        table = ev.comparison_table(read_runs(tmp_path), n_boot=50)
    assert dict(zip(table["model"], table["test_set"], strict=True)) == {
        "a_capped_cnn": ev.DIFFERENT, "densenet121": ev.SAME, "small_cnn": ev.SAME, ev.BASELINE: ev.SAME}
    assert table.attrs["different_test_set"] == ["synthetic/a_capped_cnn"]
    baseline = table[table["model"] == ev.BASELINE].iloc[0]
    assert baseline["n_images"] == 135  # the reference runs' 45 test patients, not the capped run's 30
    _, page = report.build_report(tmp_path, n_boot=50)
    assert any("DIFFERENT test set" in b and "synthetic/a_capped_cnn" in b for b in banners(page))


# ----------------------------------------------------------------------------------- figures


def test_evaluation_figures_mark_synthetic_data(outputs):
    with pytest.warns(UserWarning):
        runs = read_runs(outputs)
    synthetic = [r for r in runs if r.dataset == "synthetic"]
    figures = [
        plots.plot_roc_pr(synthetic),
        plots.plot_confusion_matrices(runs),
        plots.plot_calibration(runs),
        plots.plot_threshold_tradeoff(synthetic[0]),
    ]
    for figure in figures:
        assert plots.SYNTHETIC_MARK in figure._suptitle.get_text()
        plt.close(figure)
    real = plots.plot_roc_pr([r for r in runs if r.dataset == "covid-ct"])
    assert plots.SYNTHETIC_MARK not in real._suptitle.get_text()
    assert len(real.axes[0].lines) == 3  # curve, operating point, chance line
    plt.close(real)


# ------------------------------------------------------------------------------------ report


class PageParser(HTMLParser):
    """Collects image sources, external references and tags left open."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self):
        super().__init__()
        self.images, self.references, self.open = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.references += [attrs[k] for k in ("href", "src") if tag != "img" and k in attrs]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def parse(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    assert not parser.open, parser.open
    return parser


def test_report_is_self_contained_and_complete(outputs):
    markdown, page = report.build_report(outputs, n_boot=200)
    assert (markdown, page) == (outputs / "report.md", outputs / "report.html")
    parsed = parse(page)
    assert len(parsed.images) == 4  # ROC/PR and confusion matrices for each of two datasets
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parsed.references == []
    text = page.read_text(encoding="utf-8")
    assert 'class="banner"' in text and "SYNTHETIC DATA" in text
    assert "<table" in text and ev.BASELINE in text and "densenet121" in text
    assert report.DISCLAIMER in text
    for expected in (
        "actualmed",
        "03_small_cnn.ipynb",
        "1 h 01 min",
        "tensorflow",
        "device.kind",
        "unfinished",
        "3 images with unknown view",
    ):
        assert expected in text, expected
    assert text.index("synthetic (xray, SYNTHETIC data)") < text.index("covid-ct (ct, real data)")
    md = markdown.read_text(encoding="utf-8")
    assert "| Model | AUC |" in md and "WARNING" in md and report.DISCLAIMER in md
    linked = re.findall(r"\]\((report_files/[^)]+\.png)\)", md)
    assert len(linked) == 4 and all((outputs / link).is_file() for link in linked)


def test_report_escapes_what_it_shows(tmp_path):
    write_run(tmp_path, "covid-ct", "cnn<b>", synthetic=False, weights="imagenet")
    _, page = report.build_report(tmp_path, n_boot=50)
    text = page.read_text(encoding="utf-8")
    assert "cnn&lt;b&gt;" in text and "cnn<b>" not in text


def test_no_banner_for_real_data_with_imagenet_weights(tmp_path):
    write_run(tmp_path, "covid-ct", "resnet50", synthetic=False, weights="imagenet")
    _, page = report.build_report(tmp_path, n_boot=50)
    assert 'class="banner"' not in page.read_text(encoding="utf-8")


def test_banner_for_transfer_model_without_imagenet_weights(tmp_path):
    write_run(tmp_path, "covid-ct", "resnet50", synthetic=False, weights="random")
    _, page = report.build_report(tmp_path, n_boot=50)
    text = page.read_text(encoding="utf-8")
    assert 'class="banner"' in text and "WITHOUT ImageNet weights" in text and "weights=random" in text


def test_empty_outputs_give_a_helpful_report(tmp_path, capsys):
    assert report.main(["--output-dir", str(tmp_path / "empty"), "--n-boot", "10"]) == 0
    assert "report.html" in capsys.readouterr().out
    page = tmp_path / "empty" / "report.html"
    parsed = parse(page)
    assert parsed.images == []
    text = page.read_text(encoding="utf-8")
    assert "No results yet" in text and "run-all" in text and report.DISCLAIMER in text
    assert "No results yet" in (tmp_path / "empty" / "report.md").read_text(encoding="utf-8")


def test_unreadable_artifacts_are_noted_not_fatal(tmp_path):
    folder = write_run(tmp_path, "synthetic", "small_cnn")
    (folder.parent / "broken").mkdir()
    (folder.parent / "broken" / "metrics.json").write_text("{not json")
    (folder.parent / "broken" / "predictions.csv").write_text("path,probability\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "timings.json").write_text('{"oops": 1}')
    (folder.parent / "external").mkdir()
    (folder.parent / "external" / "x.json").write_text('[1, {"model": "small_cnn"}]')
    _, page = report.build_report(tmp_path, n_boot=50)
    text = page.read_text(encoding="utf-8")
    assert "broken" in text and "small_cnn" in text and "External validation" in text
