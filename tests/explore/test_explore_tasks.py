"""Notebook 01's tables and figures list the task's classes: PNEUMONIA gets its own column and colour."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from helpers import explore  # noqa: E402
from helpers.data.dataset import Dataset  # noqa: E402
from helpers.images import ImageSet  # noqa: E402
from helpers.plots import exploration as figures  # noqa: E402

LABELS = ["NORMAL"] * 3 + ["PNEUMONIA"] * 4 + ["COVID"] * 5


def dataset(task: str, labels: list[str]) -> Dataset:
    """A manifest alone (no files): 12 images of 6 patients, two each, every split and two sources."""
    manifest = pd.DataFrame({
        "path": [f"{i}.png" for i in range(len(labels))], "label": labels,
        "patient_id": [f"p{i // 2}" for i in range(len(labels))], "source": ["a", "b"] * (len(labels) // 2),
        "split": (["train"] * 2 + ["val"] * 2 + ["test"] * 2) * (len(labels) // 6),
        "modality": "xray", "view": "PA", "sex": "", "age": float("nan"),
    })
    return Dataset("toy", root=".", manifest=manifest, modality="xray", synthetic=True, task=task)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_tables_have_a_column_per_class_of_the_task():
    three = dataset("three-class", LABELS)
    balance = explore.class_balance(three)
    assert list(balance.columns[:3]) == ["NORMAL", "PNEUMONIA", "COVID"]
    assert balance.loc["all", "PNEUMONIA"] == 4 and balance.loc["all", "total"] == 12
    assert balance.loc["all", "% COVID"] == pytest.approx(100 * 5 / 12, abs=0.05)
    assert list(explore.patients(three).index) == ["NORMAL", "PNEUMONIA", "COVID", "all"]
    assert list(explore.images_per_patient(three).columns) == ["NORMAL", "PNEUMONIA", "COVID"]
    pair = dataset("covid-vs-pneumonia", [label for label in LABELS if label != "NORMAL"] + ["COVID"] * 3)
    assert list(explore.class_balance(pair).columns[:2]) == ["PNEUMONIA", "COVID"]
    assert "NORMAL" not in explore.class_balance(pair).columns


def test_pneumonia_has_its_own_colour_in_the_figures():
    three = dataset("three-class", LABELS)
    colours = {name: to_rgba(colour) for name, colour in figures.LABEL_COLORS.items()}
    assert len(set(colours.values())) == 3
    bars = figures.plot_class_balance(three).axes[0]
    legend = {text.get_text(): handle.get_facecolor()
              for text, handle in zip(bars.get_legend().get_texts(), bars.get_legend().legend_handles)}
    assert legend == {name: colours[name] for name in ("NORMAL", "PNEUMONIA", "COVID")}
    per_patient = figures.plot_images_per_patient(three).axes[0]
    assert [text.get_text() for text in per_patient.get_legend().get_texts()] == ["NORMAL", "PNEUMONIA", "COVID"]


def test_sample_grid_has_a_pneumonia_row():
    three = dataset("three-class", LABELS)
    image_set = ImageSet(images=np.zeros((12, 8, 8), np.uint8), manifest=three.manifest)
    grid = figures.plot_sample_grid(three, image_set, n_per_class=2)
    rows = [ax.get_title().split("\n")[0] for ax in grid.axes if ax.images]
    assert rows == ["NORMAL"] * 2 + ["PNEUMONIA"] * 2 + ["COVID"] * 2
