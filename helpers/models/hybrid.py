"""VGG16 as a fixed feature extractor, XGBoost (or logistic regression) on top.

The hybrid in three steps, each cheap to repeat:

1. :func:`extract_features`: a frozen ImageNet backbone (VGG16 by default)
   turns every image into a vector, either the 512 global-average-pooled
   channels of its last block (``pooling="avg"``) or the whole last feature map
   flattened (``pooling="flatten"``: 7 x 7 x 512 = 25,088 values at 224 px).
   Features are cached under ``cache_dir("features")``; the file name holds
   everything they depend on, so a stale cache is never read.
2. :func:`train_xgboost` / :func:`train_logistic`: fit on the train split,
   choose (early stopping, ``C``) on the validation split only.
3. :func:`save_hybrid` writes the course's artifacts through
   :func:`helpers.runs.save_run`, plus the classifier in a portable format
   (``model.ubj`` for XGBoost, ``model.json`` for logistic regression, never
   pickle) and ``features.json``; :func:`load_hybrid` reloads both halves.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xgboost
from keras import layers
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as sk_pipeline
from sklearn.preprocessing import StandardScaler

from helpers.files import atomic_write
from helpers.images import READER_VERSION, ImageSet
from helpers.models import Preprocess, backbone_spec, with_weights_fallback
from helpers.models.pipeline import make_pipeline
from helpers.paths import cache_file, run_dir
from helpers.plots import synthetic_title
from helpers.runs import predictions_frame, save_run

FEATURE_VERSION = 1  # bump whenever the extractor's output changes: old feature caches are then ignored
POOLINGS = ("avg", "flatten")
LOGISTIC_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


# ------------------------------------------------------------------------------ features


@dataclass
class Features:
    """Backbone features of an ImageSet: ``X[i]`` belongs to ``manifest.iloc[i]``.

    ``seconds`` is the time the extraction took when it ran (kept in the cache,
    so a cache hit still reports what extracting costs); ``weights`` are the
    weights actually used (``None``: random, seeded by ``seed``).
    """

    X: np.ndarray  # float32, N x D
    manifest: pd.DataFrame
    seconds: float
    from_cache: bool
    weights: str | None
    backbone: str = "vgg16"
    pooling: str = "avg"
    size: int = 224
    seed: int = 42
    shape: tuple[int, ...] = ()  # one image's features before flattening: (C,) or (H, W, C)
    path: Path | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and 0/1 labels (1 = COVID) of one split."""
        mask = (self.manifest["split"] == name).to_numpy()
        return self.X[mask], (self.manifest.loc[mask, "label"] == "COVID").to_numpy(np.int32)

    def spec(self) -> dict:
        """What rebuilds the extractor (``features.json``)."""
        return {"backbone": self.backbone, "pooling": self.pooling, "size": self.size, "weights": self.weights,
                "seed": self.seed, "shape": list(self.shape), "n_features": self.n_features,
                "feature_version": FEATURE_VERSION}


def feature_cache_path(dataset, *, backbone: str, size: int, weights: str | None, pooling: str,
                       seed: int = 42) -> Path:
    """The cache file: named from the dataset's name and key, backbone, size, pooling, weights and versions."""
    init = weights or f"random{seed}"
    return cache_file("features", dataset.name, dataset.key, backbone, f"{size}px", pooling, init,
                      f"f{FEATURE_VERSION}", f"r{READER_VERSION}")


def extract_features(
    dataset, image_set: ImageSet, *, backbone: str = "vgg16", weights: str | None = "imagenet",
    pooling: str = "avg", batch_size: int = 32, strict: bool = False, seed: int = 42, refresh: bool = False,
) -> Features:
    """Features of every image of ``image_set`` (the images of ``dataset``), from the cache when possible.

    If the ImageNet weights cannot be downloaded and ``strict`` is false, the
    backbone starts from random weights (seeded by ``seed``) with a loud
    warning, and ``Features.weights`` is ``None``.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    size = int(image_set.images.shape[1])
    settings = dict(backbone=backbone, size=size, pooling=pooling, seed=seed)
    cached = None if refresh else _read_cache(feature_cache_path(dataset, weights=weights, **settings), image_set)
    if cached is not None:
        return cached
    extractor, used = feature_extractor(backbone, size=size, weights=weights, pooling=pooling, strict=strict,
                                        seed=seed)
    path = feature_cache_path(dataset, weights=used, **settings)
    cached = None if refresh or used == weights else _read_cache(path, image_set)
    if cached is not None:
        return cached
    started = time.perf_counter()
    X = _predict(extractor, image_set.images, batch_size=batch_size)
    features = Features(X, image_set.manifest, round(time.perf_counter() - started, 2), False, used,
                        shape=_feature_shape(extractor), path=path, **settings)
    _write_cache(features)
    print(f"features: extracted {X.shape[0]} x {X.shape[1]} {backbone} features ({pooling}, {size}px, weights "
          f"{used}) in {features.seconds:.1f} s; cached to {path.name}")
    return features


def feature_extractor(
    backbone: str = "vgg16", *, size: int | None = None, weights: str | None = "imagenet", pooling: str = "avg",
    strict: bool = False, seed: int = 42,
) -> tuple[keras.Model, str | None]:
    """The frozen backbone with the course's preprocessing inside; returns ``(model, weights actually used)``.

    Built in float32 even under mixed precision, so features do not depend on the device.
    """
    spec = backbone_spec(backbone)
    size = size or spec.size
    model, weights = with_weights_fallback(
        lambda w: _build_extractor(spec, size, w, pooling), weights, name=backbone, strict=strict
    )
    if weights is None:
        _seeded_init(model, seed)
    model.trainable = False
    return model, weights


@contextlib.contextmanager
def _float32_policy():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build_extractor(spec, size: int, weights: str | None, pooling: str) -> keras.Model:
    with _float32_policy():
        inputs = keras.Input((size, size, 3), name="image")
        x = Preprocess(spec.mode, name="preprocess")(inputs)
        base = getattr(keras.applications, spec.application)(include_top=False, weights=weights, input_tensor=x)
        head = layers.GlobalAveragePooling2D if pooling == "avg" else layers.Flatten
        return keras.Model(inputs, head(name="features")(base.output), name=f"{spec.application.lower()}_features")


def _feature_shape(extractor: keras.Model) -> tuple[int, ...]:
    """One image's features before pooling or flattening: ``(C,)`` for avg, ``(H, W, C)`` for flatten."""
    head = extractor.get_layer("features")
    shape = head.output.shape if isinstance(head, layers.GlobalAveragePooling2D) else head.input.shape
    return tuple(int(d) for d in shape[1:])


def _seeded_init(model: keras.Model, seed: int) -> None:
    """Re-draw every kernel from a seeded Glorot-uniform: random features that are the same on every run."""
    kernels = [w for w in model.weights if w.name == "kernel"]
    for i, kernel in enumerate(kernels):
        kernel.assign(keras.initializers.GlorotUniform(seed=seed + i)(kernel.shape, kernel.dtype))


def _predict(extractor: keras.Model, images: np.ndarray, *, batch_size: int) -> np.ndarray:
    if len(images) == 0:
        return np.zeros((0, int(np.prod(extractor.output.shape[1:]))), np.float32)
    return np.asarray(extractor.predict(make_pipeline(images, batch_size=batch_size), verbose=0), np.float32)


def _write_cache(features: Features) -> None:
    """Write under a temporary name, then rename: a crash never leaves a half file."""
    with atomic_write(features.path) as file:
        np.savez(file, X=features.X, paths=np.asarray(features.manifest["path"], dtype=str),
                 spec=json.dumps({**features.spec(), "seconds": features.seconds}))


def _read_cache(path: Path, image_set: ImageSet) -> Features | None:
    """The cached features, or None when absent, unreadable or not for these images."""
    if not path.exists():
        return None
    try:
        with np.load(path) as npz:
            X, paths, spec = npz["X"], npz["paths"].tolist(), json.loads(str(npz["spec"]))
    except Exception:  # noqa: BLE001 - any damage means: extract again
        return None
    if paths != image_set.manifest["path"].tolist() or len(X) != len(image_set.images):
        return None
    features = Features(X, image_set.manifest, spec["seconds"], True, spec["weights"], backbone=spec["backbone"],
                        pooling=spec["pooling"], size=spec["size"], seed=spec["seed"], shape=tuple(spec["shape"]),
                        path=path)
    print(f"features: loaded {X.shape[0]} x {X.shape[1]} cached features (cache hit) from {path.name}; "
          f"extracting them took {features.seconds:.1f} s")
    return features


# ------------------------------------------------------------------------------ classifiers


def default_device() -> str:
    """``"cuda"`` when XGBoost was built with CUDA and TensorFlow sees a GPU, else ``"cpu"``."""
    import tensorflow as tf

    cuda = str(xgboost.build_info().get("USE_CUDA", False)).upper() in ("TRUE", "ON", "1")
    return "cuda" if cuda and tf.config.list_physical_devices("GPU") else "cpu"


def train_xgboost(
    features: Features, *, device: str | None = None, n_estimators: int = 2000, learning_rate: float = 0.05,
    max_depth: int = 4, early_stopping_rounds: int = 50, seed: int = 42, n_jobs: int | None = None,
) -> tuple[xgboost.XGBClassifier, dict]:
    """Gradient-boosted trees on the train split, early stopping on validation AUC (the test split is not used).

    ``scale_pos_weight`` (NORMAL / COVID in train) balances the classes. ``n_jobs``: CPU threads (None: all);
    on a CPU shared with other work, ``n_jobs=1`` can be many times faster for small feature tables.
    """
    X_train, y_train = features.split("train")
    X_val, y_val = features.split("val")
    device = device or default_device()
    model = xgboost.XGBClassifier(
        tree_method="hist", device=device, n_estimators=n_estimators, learning_rate=learning_rate,
        max_depth=max_depth, eval_metric="auc", early_stopping_rounds=early_stopping_rounds, random_state=seed,
        scale_pos_weight=_pos_weight(y_train), n_jobs=n_jobs,
    )
    started = time.perf_counter()
    model.fit(X_train, y_train, eval_set=[(X_val, y_val)], verbose=False)
    info = {"seconds": round(time.perf_counter() - started, 2), "best_iteration": int(model.best_iteration),
            "val_auc": float(model.best_score), "device": device, "n_features": features.n_features,
            "rounds": int(model.get_booster().num_boosted_rounds())}
    return model, info


def _pos_weight(y: np.ndarray) -> float:
    positives = int(np.sum(y))
    return float((len(y) - positives) / positives) if positives else 1.0


def train_logistic(
    features: Features, *, Cs: tuple[float, ...] = LOGISTIC_CS, max_iter: int = 2000, seed: int = 42,
) -> tuple[Pipeline, dict]:
    """Logistic regression on standardized features, ``C`` chosen by validation AUC (balanced class weights)."""
    X_train, y_train = features.split("train")
    X_val, y_val = features.split("val")
    started = time.perf_counter()
    best, scores = None, {}
    for C in Cs:
        model = sk_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter,
                                                                 random_state=seed))
        model.fit(X_train, y_train)
        scores[C] = float(roc_auc_score(y_val, model.predict_proba(X_val)[:, 1]))
        if best is None or scores[C] > scores[best[0]]:
            best = (C, model)
    info = {"seconds": round(time.perf_counter() - started, 2), "C": best[0], "val_auc": scores[best[0]],
            "val_auc_by_C": scores, "n_features": features.n_features}
    return best[1], info


# ------------------------------------------------------------------------------ saving and reloading


@dataclass
class Hybrid:
    """A saved hybrid: the extractor's settings (``spec``) and the classifier on top."""

    spec: dict
    classifier: xgboost.XGBClassifier | dict  # a dict holds a logistic regression: mean, scale, coef, intercept
    _extractor: keras.Model | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "xgboost" if isinstance(self.classifier, xgboost.XGBClassifier) else "logistic"

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Probability of COVID for feature rows, as float64: ``predictions.csv`` then round-trips exactly."""
        if self.kind == "xgboost":
            return self.classifier.predict_proba(X)[:, 1].astype(np.float64)
        p = self.classifier
        z = np.sum((np.asarray(X, np.float64) - p["mean"]) / p["scale"] * p["coef"], axis=1) + p["intercept"]
        return 1.0 / (1.0 + np.exp(-z))  # row by row (no BLAS): an image's probability does not depend on its batch

    def predict(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """Probability of COVID for grayscale images (N x size x size uint8, the spec's size)."""
        if self._extractor is None:
            s = self.spec
            self._extractor, _ = feature_extractor(s["backbone"], size=s["size"], weights=s["weights"],
                                                   pooling=s["pooling"], strict=True, seed=s["seed"])
        return self.predict_features(_predict(self._extractor, images, batch_size=batch_size))


def save_hybrid(
    name: str, model, features: Features, dataset, *, info: dict | None = None, params: dict | None = None,
) -> dict:
    """Write the classifier and ``features.json``, then predict val and test and write the run (``save_run``).

    ``model`` is what :func:`train_xgboost` or :func:`train_logistic` returned. The
    probabilities come from the model reloaded with :func:`load_hybrid`, so a
    reloaded model predicts exactly what ``predictions.csv`` records.
    """
    folder = run_dir(dataset.name, name)
    kind = "xgboost" if isinstance(model, xgboost.XGBClassifier) else "logistic"
    (folder / "features.json").write_text(json.dumps({**features.spec(), "classifier": kind}, indent=2))
    if kind == "xgboost":
        model.save_model(folder / "model.ubj")
    else:
        (folder / "model.json").write_text(json.dumps(_logistic_params(model)))
    hybrid = load_hybrid(folder)
    probabilities = {s: hybrid.predict_features(features.split(s)[0]) for s in ("val", "test")}
    info = info or {}
    return save_run(
        name, dataset=dataset, predictions=predictions_frame(features, probabilities),
        history={"val_auc": model.evals_result()["validation_0"]["auc"]} if kind == "xgboost" else {},
        train_seconds=info.get("seconds", 0.0), weights=features.weights or "random", img_size=features.size,
        n_parameters=_n_parameters(hybrid), params={**_params(model), **(params or {})},
        extra={"classifier": kind, "features": features.spec(), "extract_seconds": features.seconds, "info": info},
    )


def _logistic_params(model: Pipeline) -> dict:
    """A (StandardScaler, LogisticRegression) pipeline as plain numbers: mean, scale, coef, intercept."""
    scaler, logistic = model[0], model[-1]
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": logistic.coef_[0].tolist(),
            "intercept": float(logistic.intercept_[0])}


def _params(model) -> dict:
    if isinstance(model, xgboost.XGBClassifier):
        keep = ("tree_method", "device", "n_estimators", "learning_rate", "max_depth", "early_stopping_rounds",
                "scale_pos_weight", "eval_metric", "random_state", "n_jobs")
        return {k: model.get_params()[k] for k in keep}
    return {"C": float(model[-1].C), "class_weight": model[-1].class_weight, "standardized": True}


def _n_parameters(hybrid: Hybrid) -> int:
    """Trainable numbers of the classifier: leaves of the trees used, or coefficients plus intercept."""
    if hybrid.kind == "logistic":
        return len(hybrid.classifier["coef"]) + 1
    trees = hybrid.classifier.get_booster().trees_to_dataframe()
    used = trees[trees["Tree"] < (hybrid.classifier.best_iteration + 1)]
    return int((used["Feature"] == "Leaf").sum())


def load_hybrid(folder: Path | str) -> Hybrid:
    """Reload what :func:`save_hybrid` wrote: the classifier and the settings of its feature extractor."""
    folder = Path(folder)
    spec = json.loads((folder / "features.json").read_text())
    if spec.get("feature_version") != FEATURE_VERSION:
        raise ValueError(f"{folder}: features version {spec.get('feature_version')} does not match this course's "
                         f"{FEATURE_VERSION}; train the model again")
    if spec["classifier"] == "xgboost":
        classifier = xgboost.XGBClassifier()
        classifier.load_model(folder / "model.ubj")
        classifier.set_params(device="cpu")  # it may come from a GPU machine; the same trees give the same sums
    else:
        classifier = {k: np.asarray(v, np.float64) for k, v in json.loads((folder / "model.json").read_text()).items()}
        classifier["intercept"] = float(classifier["intercept"])
    return Hybrid(spec, classifier)


# ------------------------------------------------------------------------------ tables and figures


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



def feature_name(index: int, shape: tuple[int, ...]) -> str:
    """``"ch 123"`` for a pooled feature, ``"ch 123 @ (row 5, col 2)"`` for a flattened one."""
    if len(shape) == 3:
        row, col, channel = np.unravel_index(index, shape)
        return f"ch {channel} @ (row {row}, col {col})"
    return f"ch {index}"


def importances(model, n_features: int) -> np.ndarray:
    """Total gain of each feature in an XGBoost model (zeros for features no tree uses)."""
    scores = model.get_booster().get_score(importance_type="total_gain")
    values = np.zeros(n_features)
    for key, value in scores.items():
        values[int(key[1:])] = value
    return values


def plot_feature_importance(model, features: Features, *, top_k: int = 15, synthetic: bool = False):
    """Horizontal bars of the ``top_k`` features by total gain, as shares of the model's total."""
    gain = importances(model, features.n_features)
    order = np.argsort(gain)[::-1][:top_k]
    share = gain[order] / max(gain.sum(), 1e-12)
    fig, ax = plt.subplots(figsize=(7, 0.3 * top_k + 1.2))
    ax.barh([feature_name(i, features.shape) for i in order][::-1], share[::-1], color="tab:blue")
    ax.set_xlabel("share of total gain")
    used = int(np.sum(gain > 0))
    synthetic_title(ax, f"{features.backbone} {features.pooling} features: top {top_k} of {used} used "
               f"({features.n_features} available)", synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_importance_map(model, features: Features, *, image: np.ndarray | None = None, synthetic: bool = False):
    """Total gain per position of the last feature map (flattened features only), over an example image."""
    if len(features.shape) != 3:
        raise ValueError("an importance map needs flattened features (pooling='flatten')")
    grid = importances(model, features.n_features).reshape(features.shape).sum(axis=2)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    extent = (0, features.size, features.size, 0)
    if image is not None:
        ax.imshow(image, cmap="gray", extent=extent)
    shown = ax.imshow(grid / max(grid.sum(), 1e-12), cmap="magma", alpha=0.55 if image is not None else 1.0,
                      extent=extent)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of total gain")
    ax.set_axis_off()
    synthetic_title(ax, f"where the trees look ({features.shape[0]} x {features.shape[1]} grid)", synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_boosting(models: dict, *, synthetic: bool = False):
    """Validation AUC after each boosting round, the kept round marked: what early stopping saw."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, model in models.items():
        curve = model.evals_result()["validation_0"]["auc"]
        line, = ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
        ax.axvline(model.best_iteration + 1, color=line.get_color(), linestyle=":")
    ax.set(xlabel="boosting round (trees)", ylabel="validation AUC")
    ax.grid(alpha=0.3)
    ax.legend()
    synthetic_title(ax, "early stopping on the validation split (dotted: round kept)", synthetic=synthetic)
    fig.tight_layout()
    return fig


def plot_time_breakdown(table: pd.DataFrame, *, synthetic: bool = False):
    """Stacked bars of feature extraction and classifier training seconds per model (a ``results_table``)."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.5))
    names = list(table.index)
    ax.barh(names, table["extraction s"], color="tab:gray", label="feature extraction")
    ax.barh(names, table["training s"], left=table["extraction s"], color="tab:orange", label="classifier training")
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.legend(loc="lower right")
    synthetic_title(ax, "where the time goes", synthetic=synthetic)
    fig.tight_layout()
    return fig
