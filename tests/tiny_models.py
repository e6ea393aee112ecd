"""Tiny run folders, saved the way the notebooks save theirs, in seconds: a CNN and VGG16 + XGBoost / logistic hybrids.

They are untrained or trained on noise (their numbers mean nothing); what matters is that every file of a run
folder is the real one, written by the course's own ``save_run`` / ``save_hybrid``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

SPLITS = ["train"] * 24 + ["val"] * 12 + ["test"] * 12  # the hybrids' images
DEFAULT_TASK = "covid-vs-normal"


def _dataset(name: str, synthetic: bool, task: str = DEFAULT_TASK) -> SimpleNamespace:
    from helpers.data.tasks import get_task

    classes = get_task(task).classes
    manifest = pd.DataFrame({
        "path": [f"images/{i}.png" for i in range(len(SPLITS))], "patient_id": [str(i) for i in range(len(SPLITS))],
        "split": SPLITS, "label": [classes[i % len(classes)] for i in range(len(SPLITS))],
    })
    return SimpleNamespace(name=name, synthetic=synthetic, modality="xray", manifest=manifest, task=task,
                           classes=classes)


# The tiny CNN's recorded predictions (fixed: the threshold chosen on val is 0.6): binary, and three-class.
BINARY_ROWS = {"split": ["val", "val", "test", "test"], "label": ["NORMAL", "COVID"] * 2,
               "probability": [0.2, 0.6, 0.3, 0.7]}
THREE_CLASS_ROWS = {"split": ["val"] * 3 + ["test"] * 3, "label": ["NORMAL", "PNEUMONIA", "COVID"] * 2,
                    "prob": [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.3, 0.2], [0.3, 0.4, 0.3],
                             [0.2, 0.2, 0.6]]}


def save_tiny_cnn(dataset: str = "synthetic", *, synthetic: bool = True, name: str = "cnn", size: int = 32,
                  task: str = DEFAULT_TASK) -> Path:
    """An untrained small CNN of ``task`` saved through ``helpers.runs.save_run``, as notebook 02 would."""
    from helpers.models import build_cnn
    from helpers.runs import predictions_frame, run_name, save_run

    ds = _dataset(dataset, synthetic, task)
    rows = BINARY_ROWS if len(ds.classes) == 2 else THREE_CLASS_ROWS
    n = len(rows["split"])
    manifest = pd.DataFrame({"path": [f"images/{i}.png" for i in range(n)], "patient_id": list("abcdef")[:n],
                             "split": rows["split"], "label": rows["label"]})
    if len(ds.classes) == 2:
        manifest["label"] = manifest["label"].replace("NORMAL", ds.classes[0])
        prob = np.asarray(rows["probability"])
    else:
        prob = np.asarray(rows["prob"])
    split = manifest["split"].to_numpy()
    predictions = predictions_frame(SimpleNamespace(manifest=manifest),
                                    {s: prob[split == s] for s in ("val", "test")}, classes=ds.classes)
    model = build_cnn(size, filters=(8, 16), classes=len(ds.classes) if len(ds.classes) > 2 else 1)
    save_run(name, dataset=ds, predictions=predictions, model=model, img_size=size, gradcam_layer="last_conv")
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset / run_name(name, task)


def hybrid_images(size: int = 32) -> np.ndarray:
    """The noise images the tiny hybrids' features come from, in ``SPLITS`` order."""
    return np.random.default_rng(0).integers(0, 255, (len(SPLITS), size, size), dtype=np.uint8)


def save_tiny_hybrid(dataset: str = "synthetic", *, classifier: str = "xgboost", synthetic: bool = True,
                     size: int = 32, task: str = DEFAULT_TASK) -> Path:
    """VGG16 (random seeded weights, ``size`` px) features + XGBoost or logistic regression, via ``save_hybrid``."""
    from helpers.models import hybrid
    from helpers.runs import run_name

    ds = _dataset(dataset, synthetic, task)
    multiclass = ds.classes if len(ds.classes) > 2 else None
    images = hybrid_images(size)
    extractor, weights = hybrid.feature_extractor("vgg16", size=size, weights=None)
    X = np.asarray(extractor.predict(np.repeat(images[..., None], 3, axis=3).astype(np.float32), verbose=0))
    features = hybrid.Features(X, ds.manifest, 0.0, False, weights, size=size, shape=(X.shape[1],))
    if classifier == "xgboost":
        model, info = hybrid.train_xgboost(features, device="cpu", n_estimators=10, early_stopping_rounds=5, n_jobs=1,
                                           classes=multiclass)
    else:
        model, info = hybrid.train_logistic(features, Cs=(0.1,), max_iter=200, classes=multiclass)
    name = f"vgg16-{classifier}"
    hybrid.save_hybrid(name, model, features, ds, info=info)
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset / run_name(name, task)
