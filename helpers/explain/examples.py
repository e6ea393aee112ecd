"""What notebook 05 explains: which runs get Grad-CAM, on which images, and the best run's operating points.

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


def gradcam_runs(runs: list[Run]) -> list[Run]:
    """The first CNN and the first transfer model with a saved Keras model (hybrids have none)."""
    from helpers.models import BACKBONES

    saved = [run for run in runs if run.kind == "keras"]
    cnn = [run for run in saved if run.model.startswith("cnn")]
    transfer = [run for run in saved if run.model in BACKBONES]
    return cnn[:1] + transfer[:1]


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
