"""A three-class run folder (``outputs/synthetic/cnn-three-class/``) for the CLI and demo tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CLASSES = ["NORMAL", "PNEUMONIA", "COVID"]


def save_three_class_cnn(output_dir: Path, *, threshold: float = 0.34, size: int = 32) -> Path:
    """An untrained three-class CNN (3-unit softmax) with the metrics.json and predictions.csv of the contract."""
    from helpers.models import build_cnn

    folder = output_dir / "synthetic" / "cnn-three-class"
    folder.mkdir(parents=True, exist_ok=True)
    build_cnn(size, filters=(8, 16), classes=3).save(folder / "model.keras")
    probs = [[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6]]
    labels = ["NORMAL", "PNEUMONIA", "COVID"] * 2
    frame = pd.DataFrame({"path": [f"images/{i}.png" for i in range(6)], "patient_id": list("abcdef"),
                          "split": ["val"] * 3 + ["test"] * 3, "label": labels,
                          "y_true": [int(label == "COVID") for label in labels],
                          "probability": [p[2] for p in probs],
                          **{f"prob_{c}": [p[i] for p in probs] for i, c in enumerate(CLASSES)}})
    frame.to_csv(folder / "predictions.csv", index=False)
    multiclass = {"accuracy": 0.67, "macro_auc": 0.75, "sensitivity": dict.fromkeys(CLASSES, 0.5),
                  "ppv": dict.fromkeys(CLASSES, 0.5), "confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}
    metrics = {"model": "cnn", "task": "three-class", "classes": CLASSES, "dataset": "synthetic", "synthetic": True,
               "modality": "xray", "threshold": threshold, "threshold_rule": "youden (validation split)",
               "img_size": size, "gradcam_layer": "last_conv", "test": {"auc": 0.8}, "val": {"auc": 0.9},
               "calibration": {"method": "temperature", "T": 2.0, "n_val": 3, "note": None},
               "multiclass": {"val": multiclass, "test": multiclass}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def save_three_class_hybrid(output_dir: Path, *, classifier: str = "xgboost", size: int = 32) -> Path:
    """VGG16 (random seeded weights) features + a three-class XGBoost or multinomial logistic regression on noise,
    beside the three-class CNN's metrics.json and predictions.csv (the hybrid's own files are the real ones)."""
    from helpers.models import hybrid

    cnn = output_dir / "synthetic" / "cnn-three-class"
    folder = output_dir / "synthetic" / f"vgg16-{classifier}-three-class"
    folder.mkdir(parents=True, exist_ok=True)
    splits = ["train"] * 18 + ["val"] * 6 + ["test"] * 6
    manifest = pd.DataFrame({"path": [f"images/{i}.png" for i in range(30)], "patient_id": list(map(str, range(30))),
                             "split": splits, "label": CLASSES * 10})
    images = np.random.default_rng(0).integers(0, 255, (30, size, size), dtype=np.uint8)
    extractor, weights = hybrid.feature_extractor("vgg16", size=size, weights=None)
    X = np.asarray(extractor.predict(np.repeat(images[..., None], 3, axis=3).astype(np.float32), verbose=0))
    features = hybrid.Features(X, manifest, 0.0, False, weights, size=size, shape=(X.shape[1],))
    if classifier == "xgboost":
        model, _ = hybrid.train_xgboost(features, device="cpu", n_estimators=10, early_stopping_rounds=5, n_jobs=1,
                                        classes=tuple(CLASSES))
        model.save_model(folder / "model.ubj")
    else:
        import joblib

        model, _ = hybrid.train_logistic(features, Cs=(0.1,), max_iter=200, classes=tuple(CLASSES))
        joblib.dump(model, folder / "model.joblib")
    (folder / "features.json").write_text(json.dumps({**features.spec(), "classifier": classifier}))
    for name in ("metrics.json", "predictions.csv"):
        (folder / name).write_text((cnn / name).read_text())
    return folder


@pytest.fixture(scope="module")
def three_class_run(module_course_dirs) -> Path:
    return save_three_class_cnn(Path(os.environ["COURSE_OUTPUT_DIR"]))


@pytest.fixture(scope="module")
def three_class_hybrids(three_class_run) -> dict[str, Path]:
    return {kind: save_three_class_hybrid(three_class_run.parents[1], classifier=kind) for kind in ("xgboost", "logistic")}
