"""The classifier on the features: steps 2 and 3 of the hybrid (see :mod:`helpers.models.hybrid`).

:func:`train_xgboost` (``xgboost.XGBClassifier``, early stopping on the validation split) or
:func:`train_logistic` (scikit-learn, ``C`` chosen on the validation split); :func:`save_hybrid`
writes the run's artifacts through :func:`helpers.runs.save_run`, the classifier and
``features.json`` (the extractor's settings); :func:`load_hybrid` reloads both halves.

The XGBoost model is saved in XGBoost's own format (``model.ubj``). The logistic regression
pipeline is saved with joblib (``model.joblib``), which is pickle: loading it runs code from the
file. These are the course's own artifacts, written and read on the learner's machine: load
only folders you trained yourself, with the scikit-learn version that wrote them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import keras
import numpy as np
import pandas as pd
import xgboost
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from helpers.data.tasks import DEFAULT_TASK
from helpers.files import atomic_path, write_text
from helpers.models.hybrid.features import FEATURE_VERSION, Features, backbone_features, feature_extractor
from helpers.paths import run_dir
from helpers.runs import predictions_frame, run_name, save_run

LOGISTIC_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
CLASSIFIER_FILES = {"xgboost": "model.ubj", "logistic": "model.joblib"}


def default_device() -> str:
    """``"cuda"`` when XGBoost was built with CUDA and TensorFlow sees a GPU, else ``"cpu"``."""
    import tensorflow as tf

    cuda = str(xgboost.build_info().get("USE_CUDA", False)).upper() in ("TRUE", "ON", "1")
    return "cuda" if cuda and tf.config.list_physical_devices("GPU") else "cpu"


def train_xgboost(
    features: Features, *, device: str | None = None, n_estimators: int = 2000, learning_rate: float = 0.05,
    max_depth: int = 4, early_stopping_rounds: int = 50, seed: int = 42, n_jobs: int | None = None,
    classes: tuple[str, ...] | None = None,
) -> tuple[xgboost.XGBClassifier, dict]:
    """Gradient-boosted trees on the train split, early stopping on validation AUC (the test split is not used).

    ``scale_pos_weight`` (NORMAL / COVID in train) balances the classes. ``n_jobs``: CPU threads (None: all);
    on a CPU shared with other work, ``n_jobs=1`` can be many times faster for small feature tables.
    ``classes`` (a task's, 3 or more): the ``multi:softprob`` objective, balanced sample weights,
    early stopping on the validation log loss (``info["val_mlogloss"]``).
    """
    X_train, y_train = features.split("train", classes)
    X_val, y_val = features.split("val", classes)
    device = device or default_device()
    objective = ({"eval_metric": "auc", "scale_pos_weight": _pos_weight(y_train)} if classes is None else
                 {"objective": "multi:softprob", "num_class": len(classes), "eval_metric": "mlogloss"})
    model = xgboost.XGBClassifier(
        tree_method="hist", device=device, n_estimators=n_estimators, learning_rate=learning_rate,
        max_depth=max_depth, early_stopping_rounds=early_stopping_rounds, random_state=seed, n_jobs=n_jobs,
        **objective,
    )
    weights = None if classes is None else compute_sample_weight("balanced", y_train)
    started = time.perf_counter()
    model.fit(X_train, y_train, sample_weight=weights, eval_set=[(X_val, y_val)], verbose=False)
    info = {"seconds": round(time.perf_counter() - started, 2), "best_iteration": int(model.best_iteration),
            f"val_{objective['eval_metric']}": float(model.best_score), "device": device,
            "n_features": features.n_features,
            "rounds": int(model.get_booster().num_boosted_rounds())}
    return model, info


def _pos_weight(y: np.ndarray) -> float:
    positives = int(np.sum(y))
    return float((len(y) - positives) / positives) if positives else 1.0


def train_logistic(
    features: Features, *, Cs: tuple[float, ...] = LOGISTIC_CS, max_iter: int = 2000, seed: int = 42,
    classes: tuple[str, ...] | None = None,
) -> tuple[Pipeline, dict]:
    """Logistic regression on standardized features, ``C`` chosen by validation AUC (balanced class weights).

    ``classes`` (3 or more): multinomial (softmax) regression, ``C`` chosen by macro one-vs-rest AUC.
    """
    X_train, y_train = features.split("train", classes)
    X_val, y_val = features.split("val", classes)
    started = time.perf_counter()
    best, scores = None, {}
    for C in Cs:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter,
                                                                   random_state=seed))
        model.fit(X_train, y_train)
        prob = model.predict_proba(X_val)
        scores[C] = float(roc_auc_score(y_val, prob[:, 1]) if classes is None else
                          roc_auc_score(y_val, prob, multi_class="ovr", average="macro"))
        if best is None or scores[C] > scores[best[0]]:
            best = (C, model)
    info = {"seconds": round(time.perf_counter() - started, 2), "C": best[0], "val_auc": scores[best[0]],
            "val_auc_by_C": scores, "n_features": features.n_features}
    return best[1], info


def _kind(model) -> str:
    return "xgboost" if isinstance(model, xgboost.XGBClassifier) else "logistic"


@dataclass
class Hybrid:
    """A saved hybrid: the extractor's settings (``spec``) and the classifier on top."""

    spec: dict
    classifier: xgboost.XGBClassifier | Pipeline
    _extractor: keras.Model | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return _kind(self.classifier)

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Probability of COVID for feature rows, as float64: ``predictions.csv`` then round-trips exactly.

        A multi-class classifier: N x classes probabilities (class-index order).
        """
        prob = self.classifier.predict_proba(X).astype(np.float64)
        return prob[:, 1] if prob.shape[1] == 2 else prob

    def predict(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """Probability of COVID for grayscale images (N x size x size uint8, the spec's size)."""
        if self._extractor is None:
            s = self.spec
            self._extractor, _ = feature_extractor(s["backbone"], size=s["size"], weights=s["weights"],
                                                   pooling=s["pooling"], strict=True, seed=s["seed"])
        return self.predict_features(backbone_features(self._extractor, images, batch_size=batch_size))


def save_hybrid(
    name: str, model, features: Features, dataset, *, info: dict | None = None, params: dict | None = None,
) -> dict:
    """Write the classifier and ``features.json``, then predict val and test and write the run (``save_run``).

    ``model`` is what :func:`train_xgboost` or :func:`train_logistic` returned. The
    probabilities come from the model reloaded with :func:`load_hybrid`, so a
    reloaded model predicts exactly what ``predictions.csv`` records.
    """
    folder = run_dir(dataset.name, run_name(name, getattr(dataset, "task", DEFAULT_TASK)))
    kind = _kind(model)
    write_text(folder / "features.json", json.dumps({**features.spec(), "classifier": kind}, indent=2))
    file = folder / CLASSIFIER_FILES[kind]
    with atomic_path(file, suffix=file.suffix) as part:  # XGBoost chooses its format by the file's extension
        if kind == "xgboost":
            model.save_model(part)
        else:
            joblib.dump(model, part)
    hybrid = load_hybrid(folder)
    probabilities = {s: hybrid.predict_features(features.split(s)[0]) for s in ("val", "test")}
    info = info or {}
    return save_run(
        name, dataset=dataset,
        predictions=predictions_frame(features, probabilities, classes=getattr(dataset, "classes", None)),
        history=({f"val_{metric}": values for metric, values in model.evals_result()["validation_0"].items()}
                 if kind == "xgboost" else {}),
        train_seconds=info.get("seconds", 0.0), weights=features.weights or "random", img_size=features.size,
        n_parameters=_n_parameters(model), params={**_params(model), **(params or {})},
        extra={"classifier": kind, "features": features.spec(), "extract_seconds": features.seconds, "info": info},
    )


def _params(model) -> dict:
    if _kind(model) == "xgboost":
        keep = ("tree_method", "device", "n_estimators", "learning_rate", "max_depth", "early_stopping_rounds",
                "scale_pos_weight", "eval_metric", "random_state", "n_jobs")
        return {k: model.get_params()[k] for k in keep}
    return {"C": float(model[-1].C), "class_weight": model[-1].class_weight, "standardized": True}


def _n_parameters(model) -> int:
    """Trainable numbers of the classifier: leaves of the trees used, or coefficients plus intercept."""
    if _kind(model) == "logistic":
        return int(model[-1].coef_.size + model[-1].intercept_.size)
    trees = model.get_booster().trees_to_dataframe()
    used = trees[trees["Tree"] < (model.best_iteration + 1)]
    return int((used["Feature"] == "Leaf").sum())


def load_hybrid(folder: Path | str) -> Hybrid:
    """Reload what :func:`save_hybrid` wrote: the classifier and the settings of its feature extractor.

    The logistic regression is unpickled (joblib): only load folders the course wrote (module docstring).
    """
    folder = Path(folder)
    spec = json.loads((folder / "features.json").read_text())
    if spec.get("feature_version") != FEATURE_VERSION:
        raise ValueError(f"{folder}: features version {spec.get('feature_version')} does not match this course's "
                         f"{FEATURE_VERSION}; train the model again")
    file = folder / CLASSIFIER_FILES[spec["classifier"]]
    if not file.is_file():  # e.g. a logistic regression saved as model.json before the course used joblib
        raise ValueError(f"{folder}: no {file.name} beside features.json; train the model again")
    if spec["classifier"] == "xgboost":
        classifier = xgboost.XGBClassifier()
        classifier.load_model(file)
        classifier.set_params(device="cpu")  # it may come from a GPU machine; the same trees give the same sums
    else:
        classifier = joblib.load(file)
    return Hybrid(spec, classifier)


def results_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per saved hybrid: features, test metrics and where the time went."""
    rows = []
    for m in metrics:
        spec, test = m["features"], m["test"]
        rows.append({
            "model": m["model"], "pooling": spec["pooling"], "n_features": spec["n_features"],
            "weights": m["weights"] or "random", "test AUC": test["auc"], "test accuracy": test["accuracy"],
            "sensitivity": test["sensitivity"], "specificity": test["specificity"],
            "extraction s": m["extract_seconds"], "training s": m["train_seconds"],
        })
    return pd.DataFrame(rows).set_index("model")
