"""Three-class runs (``outputs/synthetic/*-three-class/``) saved the way the notebooks save theirs, for the app tests.

A tiny CNN with a 3-unit softmax trained for two epochs on the small synthetic three-class set
(:func:`helpers.data.course_dataset`, SMOKE sizes) and saved by ``evaluate_and_save``; VGG16 (random
seeded weights) features + a three-class XGBoost / multinomial logistic regression on noise, saved by
``save_hybrid``. Their numbers mean little; every file of their run folders is the real one.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

CLASSES = ("NORMAL", "PNEUMONIA", "COVID")
SIZE = 32


def save_three_class_cnn() -> Path:
    """``build_cnn(32, classes=3)``, ``fit`` for 2 epochs, ``evaluate_and_save``: ``<outputs>/synthetic/cnn-three-class``."""
    from helpers.data import course_dataset
    from helpers.images import load_images
    from helpers.models import build_cnn
    from helpers.models.train import evaluate_and_save, fit

    dataset = course_dataset("synthetic", task="three-class", smoke=True, n_patients=60, size=64)
    images = load_images(dataset, SIZE, progress=False)
    model = build_cnn(SIZE, filters=(8, 16), classes=3)
    history = fit(model, images, epochs=2, batch_size=16, learning_rate=3e-3, classes=dataset.classes, verbose=0)
    evaluate_and_save(model, images, dataset, name="cnn", history=history)
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / dataset.name / "cnn-three-class"


def save_three_class_hybrid(classifier: str = "xgboost") -> Path:
    """VGG16 features of noise + a three-class classifier, via ``save_hybrid``: ``.../vgg16-<classifier>-three-class``."""
    from helpers.models import hybrid

    splits = ["train"] * 18 + ["val"] * 6 + ["test"] * 6
    manifest = pd.DataFrame({"path": [f"images/{i}.png" for i in range(30)], "patient_id": list(map(str, range(30))),
                             "split": splits, "label": list(CLASSES) * 10})
    dataset = SimpleNamespace(name="synthetic", synthetic=True, modality="xray", manifest=manifest,
                              task="three-class", classes=CLASSES)
    images = np.random.default_rng(0).integers(0, 255, (30, SIZE, SIZE), dtype=np.uint8)
    extractor, weights = hybrid.feature_extractor("vgg16", size=SIZE, weights=None)
    X = np.asarray(extractor.predict(np.repeat(images[..., None], 3, axis=3).astype(np.float32), verbose=0))
    features = hybrid.Features(X, manifest, 0.0, False, weights, size=SIZE, shape=(X.shape[1],))
    if classifier == "xgboost":
        model, info = hybrid.train_xgboost(features, device="cpu", n_estimators=10, early_stopping_rounds=5, n_jobs=1,
                                           classes=CLASSES)
    else:
        model, info = hybrid.train_logistic(features, Cs=(0.1,), max_iter=200, classes=CLASSES)
    hybrid.save_hybrid(f"vgg16-{classifier}", model, features, dataset, info=info)
    return Path(os.environ["COURSE_OUTPUT_DIR"]) / "synthetic" / f"vgg16-{classifier}-three-class"


@pytest.fixture(scope="module")
def three_class_run(module_course_dirs) -> Path:
    return save_three_class_cnn()


@pytest.fixture(scope="module")
def three_class_hybrids(module_course_dirs) -> dict[str, Path]:
    return {kind: save_three_class_hybrid(kind) for kind in ("xgboost", "logistic")}
