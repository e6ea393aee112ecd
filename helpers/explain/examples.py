"""What notebook 05 explains: which run gets Grad-CAM (and what its grid covers), on which images, and operating points.

:func:`operating_points` is evaluation, not explanation: it stays here until ``helpers.evaluation``
(another owner) has a home for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.data.dataset import Dataset
from helpers.evaluation import binary_metrics, format_interval, metrics_with_ci
from helpers.images import load_images
from helpers.runs import Run


def gradcam_run(runs: list[Run], choice: str = "best") -> Run:
    """The run Grad-CAM explains: ``"best"`` (the best validation AUC among the runs with a Keras model; hybrids
    have no convolution of their own to take a gradient through) or the run of that model (or folder) name."""
    saved = [run for run in runs if run.kind == "keras"]
    if not saved:
        raise ValueError("no run with a saved Keras model for Grad-CAM (hybrids have none): run notebook 02 or 03")
    if choice == "best":
        return max(saved, key=lambda run: _val_auc(run))
    named = [run for run in saved if choice in (run.model, run.name)]
    if not named:
        raise ValueError(f"GRADCAM_MODEL = {choice!r}: no saved Keras model of that name; choose 'best' or one of "
                         f"{sorted(run.name for run in saved)}")
    return named[0]


def _val_auc(run: Run) -> float:
    auc = (run.metrics.get("val") or {}).get("auc")
    return -np.inf if auc is None else float(auc)


def grid_sentence(model, *, name: str | None = None, layer: str | None = None) -> str:
    """What one cell of a Grad-CAM map covers, read from the layer's output shape and the model's input size."""
    from helpers.models import gradcam_layer, input_size

    layer = layer or gradcam_layer(model)
    height, width = (int(n) for n in model.get_layer(layer).output.shape[1:3])
    size = input_size(model)
    exact = size % height == 0 and size % width == 0
    cell = f"{size // height}x{size // width}" if exact else f"about {size / height:.1f}x{size / width:.1f}"
    return (f"the last convolutional layer of {name or model.name} is {layer} with a {height}x{width} grid: "
            f"each cell covers {cell} pixels of the {size}px input")


def operating_points(run: Run, thresholds: dict[str, float], *, n_boot: int = 1000) -> pd.DataFrame:
    """Validation and test sensitivity/specificity (test with patient-bootstrap CIs) at each named threshold."""
    val, test = run.split("val"), run.split("test")
    rows = {}
    for name, threshold in thresholds.items():
        on_val = binary_metrics(val["y_true"], val["probability"], threshold)
        on_test = metrics_with_ci(test, threshold, metrics=("sensitivity", "specificity", "ppv", "npv"),
                                  n_boot=n_boot)
        rows[name] = {
            "threshold": f"{threshold:.3f}",
            "val sensitivity": f"{on_val['sensitivity']:.2f}", "val specificity": f"{on_val['specificity']:.2f}",
            **{f"test {metric}": format_interval(*values) for metric, values in on_test.iterrows()},
        }
    return pd.DataFrame(rows).T


def outcome_examples(run: Run, *, n: int = 2, split: str = "test") -> pd.DataFrame:
    """Up to ``n`` rows of each outcome (true/false positive/negative), the most confident calls first."""
    rows = run.split(split)
    called = rows["probability"] >= run.threshold
    truth = rows["y_true"] == 1
    outcome = np.select([truth & called, truth & ~called, ~truth & called], ["TP", "FN", "FP"], "TN")
    rows = rows.assign(outcome=outcome, margin=(rows["probability"] - run.threshold).abs())
    rows = rows.sort_values("margin", ascending=False).groupby("outcome").head(n)
    order = {"TP": 0, "FN": 1, "FP": 2, "TN": 3}
    return rows.sort_values("outcome", key=lambda column: column.map(order))


def outcome_gradcam(
    run: Run, dataset: Dataset, *, n: int = 2, size: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Grad-CAM of a run's model over :func:`outcome_examples`: ``(examples, images, heatmaps)``.

    The figure: ``helpers.plots.plot_outcome_gradcam(run, examples, images, heatmaps)``.
    """
    from helpers.explain.gradcam import gradcam
    from helpers.models import input_size

    model = run.keras_model()
    image_set = load_images(dataset, size or input_size(model), progress=False)
    where = pd.Series(np.arange(len(image_set)), index=image_set.manifest["path"])
    examples = outcome_examples(run, n=n)
    examples = examples[examples["path"].isin(where.index)]
    images = image_set.images[where[examples["path"]].to_numpy()]
    return examples, images, gradcam(model, images)
