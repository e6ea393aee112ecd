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

SPLITS = ["train"] * 24 + ["val"] * 8 + ["test"] * 8


def _dataset(name: str, synthetic: bool) -> SimpleNamespace:
    manifest = pd.DataFrame({
        "path": [f"images/{i}.png" for i in range(len(SPLITS))], "patient_id": [str(i) for i in range(len(SPLITS))],
        "split": SPLITS, "label": ["COVID", "NORMAL"] * (len(SPLITS) // 2),
    })
    return SimpleNamespace(name=name, synthetic=synthetic, modality="xray", manifest=manifest)


def save_tiny_cnn(dataset: str = "synthetic", *, synthetic: bool = True, name: str = "cnn", size: int = 32) -> Path:
    """An untrained small CNN saved through ``helpers.models.train.save_run``, as notebook 02 would."""
    from helpers.models import build_cnn
    from helpers.runs import save_run

    model = build_cnn(size, filters=(8, 16))
    predictions = pd.DataFrame({"path": [f"images/{i}.png" for i in range(4)], "patient_id": list("abcd"),
                                "split": ["val", "val", "test", "test"], "label": ["NORMAL", "COVID"] * 2,
                                "y_true": [0, 1, 0, 1], "probability": [0.2, 0.6, 0.3, 0.7]})
    save_run(name, dataset=_dataset(dataset, synthetic), predictions=predictions, model=model, img_size=size,
             gradcam_layer="last_conv")
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset / name


def save_tiny_hybrid(dataset: str = "synthetic", *, classifier: str = "xgboost", synthetic: bool = True,
                     size: int = 32) -> Path:
    """VGG16 (random seeded weights, ``size`` px) features + XGBoost or logistic regression, via ``save_hybrid``."""
    from helpers.models import hybrid

    ds = _dataset(dataset, synthetic)
    images = np.random.default_rng(0).integers(0, 255, (len(SPLITS), size, size), dtype=np.uint8)
    extractor, weights = hybrid.feature_extractor("vgg16", size=size, weights=None)
    X = np.asarray(extractor.predict(np.repeat(images[..., None], 3, axis=3).astype(np.float32), verbose=0))
    features = hybrid.Features(X, ds.manifest, 0.0, False, weights, size=size, shape=(X.shape[1],))
    if classifier == "xgboost":
        model, info = hybrid.train_xgboost(features, device="cpu", n_estimators=10, early_stopping_rounds=5, n_jobs=1)
    else:
        model, info = hybrid.train_logistic(features, Cs=(0.1,), max_iter=200)
    name = f"vgg16-{classifier}"
    hybrid.save_hybrid(name, model, features, ds, info=info)
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset / name
