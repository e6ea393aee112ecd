"""Training and the artifact contract shared by every model of the course.

``fit`` trains on the train split and selects on the validation split only
(early stopping and best-weights restore on validation AUC); ``save_run``
predicts val and test, chooses the decision threshold on val, and writes
``outputs/<dataset>/<model>/``: ``model.keras``, ``history.json``,
``predictions.csv`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from helpers import paths
from helpers.environment import strategy_scope, versions
from helpers.evaluation import binary_metrics, choose_threshold
from helpers.images import ImageSet
from helpers.models.pipeline import labels_of, make_pipeline, split_arrays, split_pipeline


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss (``n / (2 * n_class)``)."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2)
    return {k: float(len(labels) / (2 * counts[k])) if counts[k] else 0.0 for k in (0, 1)}


def fit(
    model: keras.Model, image_set: ImageSet, *, epochs: int = 10, batch_size: int = 32,
    learning_rate: float = 1e-3, patience: int = 5, seed: int = 42, verbose: int | str = "auto",
    history: dict | None = None,
) -> dict:
    """Train ``model`` on the train split, select on val; returns the history (appended to ``history``).

    Adam with a cosine-decayed learning rate, class weights for imbalance, early
    stopping on validation AUC with the best weights restored. The test split is
    not touched here.
    """
    train = split_pipeline(image_set, "train", batch_size=batch_size, training=True, seed=seed)
    val = split_pipeline(image_set, "val", batch_size=batch_size)
    steps = max(1, epochs * int(np.ceil((image_set.manifest["split"] == "train").sum() / batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
    with strategy_scope():
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        )
    stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=patience, restore_best_weights=True)
    started = time.perf_counter()
    result = model.fit(
        train, validation_data=val, epochs=epochs, callbacks=[stop], shuffle=False,  # the pipeline shuffles
        class_weight=class_weights(labels_of(image_set, "train")), verbose=verbose,
    )
    merged = {k: list(v) for k, v in (history or {}).items()}
    for name, values in result.history.items():
        merged.setdefault(name, []).extend(float(v) for v in values)
    merged.setdefault("seconds", []).append(round(time.perf_counter() - started, 2))
    return merged


def predict(model: keras.Model, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Probabilities of COVID for ``images`` (N x size x size uint8)."""
    if len(images) == 0:
        return np.zeros(0, np.float32)
    return model.predict(make_pipeline(images, batch_size=batch_size), verbose=0).reshape(-1).astype(np.float32)


def predictions_frame(image_set: ImageSet, probabilities: dict[str, np.ndarray]) -> pd.DataFrame:
    """``path, patient_id, split, label, y_true, probability`` for the splits given."""
    parts = []
    for split, prob in probabilities.items():
        rows = image_set.manifest[image_set.manifest["split"] == split]
        parts.append(rows[["path", "patient_id", "split", "label"]].assign(
            y_true=(rows["label"] == "COVID").astype(int).to_numpy(),
            probability=np.asarray(prob, np.float64)))  # float64: the CSV round trip keeps every value exact
    return pd.concat(parts, ignore_index=True)


def save_run(
    name: str, *, dataset, predictions: pd.DataFrame, history: dict | None = None, model: keras.Model | None = None,
    train_seconds: float = 0.0, weights: str | None = None, img_size: int | None = None,
    gradcam_layer: str | None = None, n_parameters: int | None = None, params: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Choose the threshold on val, compute val and test metrics, write every artifact; returns metrics.json."""
    folder = paths.run_dir(dataset.name, name)
    val, test = (predictions[predictions["split"] == s] for s in ("val", "test"))
    threshold = choose_threshold(val["y_true"], val["probability"], rule="youden")
    counts = dataset.manifest["split"].value_counts()
    metrics = {
        "model": name,
        "dataset": dataset.name,
        "synthetic": bool(dataset.synthetic),
        "modality": dataset.modality,
        "weights": weights,
        "threshold": float(threshold),
        "threshold_rule": "youden (validation split)",
        "img_size": img_size,
        "gradcam_layer": gradcam_layer,
        "val": binary_metrics(val["y_true"], val["probability"], threshold),
        "test": binary_metrics(test["y_true"], test["probability"], threshold),
        "train_seconds": round(float(train_seconds), 2),
        "n_images": {s: int(counts.get(s, 0)) for s in ("train", "val", "test")},
        "epochs": len((history or {}).get("loss", [])),
        "n_parameters": n_parameters if n_parameters is not None else (model.count_params() if model else None),
        "params": params or {},
        "environment": versions(),
        **(extra or {}),
    }
    if model is not None:
        model.save(folder / "model.keras")
    (folder / "history.json").write_text(json.dumps(history or {}, indent=1))
    predictions.to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


def evaluate_and_save(
    model: keras.Model, image_set: ImageSet, dataset, *, name: str | None = None, history: dict | None = None,
    weights: str | None = "scratch", params: dict | None = None, batch_size: int = 64,
) -> dict:
    """Predict val and test with a trained Keras model and write its artifacts (see ``save_run``)."""
    from helpers.models import gradcam_layer, input_size

    probabilities = {s: predict(model, split_arrays(image_set, s)[0], batch_size=batch_size) for s in ("val", "test")}
    return save_run(
        name or model.name, dataset=dataset, predictions=predictions_frame(image_set, probabilities),
        history=history, model=model, train_seconds=sum((history or {}).get("seconds", [])), weights=weights,
        img_size=input_size(model), gradcam_layer=gradcam_layer(model), params=params,
    )


def summary_line(metrics: dict) -> str:
    t = metrics["test"]
    return (f"{metrics['model']}: test AUC {t['auc']:.3f} | sensitivity {t['sensitivity']:.2f} | "
            f"specificity {t['specificity']:.2f} at threshold {metrics['threshold']:.2f} (chosen on val) | "
            f"{metrics['train_seconds']:.0f} s training")


def train_transfer(
    backbone: str, dataset, *, img_size: int | None = None, weights: str | None = "imagenet", epochs: int = 10,
    fine_tune_epochs: int = 5, fine_tune_fraction: float = 0.2, batch_size: int = 32, learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-5, strict: bool = False, verbose: int | str = 2,
) -> tuple[keras.Model, dict]:
    """Feature extraction, then fine-tuning, then artifacts: the recipe of notebook 03 for one backbone.

    Phase 1 trains only the new head on a frozen ImageNet backbone. Phase 2
    unfreezes the top ``fine_tune_fraction`` of the backbone (batch norm stays
    frozen) and continues with a learning rate 100x lower, so the pretrained
    features are adjusted, not destroyed. Phase 2 is kept only if its best
    validation AUC beats phase 1's; otherwise the phase-1 weights (and the frozen
    backbone) are restored. ``params`` in the metrics record ``fine_tune_start``
    (the epochs of phase 1) and ``fine_tune_kept``. Returns ``(model, metrics)``.
    """
    from helpers.images import load_images
    from helpers.models import backbone_spec, build_transfer, freeze_backbone, unfreeze_top

    size = img_size or backbone_spec(backbone).size
    image_set = load_images(dataset, size)
    model, used = build_transfer(backbone, size=size, weights=weights, strict=strict)
    print(f"{backbone}: phase 1, frozen backbone ({epochs} epochs at {size}px, weights={used})")
    history = fit(model, image_set, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                  verbose=verbose) if epochs else {}
    fine_tune_start, kept = len(history.get("loss", [])), None
    if fine_tune_epochs:
        phase_one = max(history.get("val_auc", []), default=float("-inf"))
        phase_one_weights = model.get_weights()
        n = unfreeze_top(model, fine_tune_fraction)
        print(f"{backbone}: phase 2, fine-tuning the top {n} layers ({fine_tune_epochs} epochs)")
        history = fit(model, image_set, epochs=fine_tune_epochs, batch_size=batch_size,
                      learning_rate=fine_tune_learning_rate, verbose=verbose, history=history)
        phase_two = max(history.get("val_auc", [])[fine_tune_start:], default=float("-inf"))
        kept = phase_two > phase_one
        if not kept:
            freeze_backbone(model)  # the trainable flags of phase 1 first: the weights' order follows them
            model.set_weights(phase_one_weights)
        print(f"{backbone}: best validation AUC {phase_one:.3f} in phase 1, {phase_two:.3f} in phase 2: "
              + ("fine-tuned weights kept" if kept else "phase-1 weights restored (fine-tuning did not help)"))
    params = {"epochs": epochs, "fine_tune_epochs": fine_tune_epochs, "fine_tune_fraction": fine_tune_fraction,
              "img_size": size, "batch_size": batch_size, "fine_tune_start": fine_tune_start,
              "fine_tune_kept": kept}
    trainable = int(sum(keras.ops.size(w) for w in model.trainable_weights))
    metrics = evaluate_and_save(model, image_set, dataset, name=backbone, history=history, weights=used or "random",
                                params={**params, "trainable_parameters": trainable})
    return model, metrics


def load_history(folder: Path) -> dict:
    return json.loads((Path(folder) / "history.json").read_text())


def train_quick_cnn(
    dataset, image_set: ImageSet, *, epochs: int = 4, batch_size: int = 32, learning_rate: float = 1e-3,
    name: str = "cnn", seed: int = 42, save: bool = True, verbose: int | str = 0,
) -> tuple[keras.Model, dict]:
    """A small CNN trained with ``fit``, for notebooks whose earlier model is missing; saved when ``save``.

    Returns the model and its ``metrics.json`` content (just the history when not saved).
    """
    from helpers.environment import seed_everything
    from helpers.models import build_cnn

    seed_everything(seed)
    model = build_cnn(image_set.images.shape[1], seed=seed)
    history = fit(model, image_set, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                  verbose=verbose)
    if not save:
        return model, {"history": history}
    metrics = evaluate_and_save(model, image_set, dataset, name=name, history=history, weights="scratch",
                                params={"epochs": epochs, "batch_size": batch_size, "quick": True})
    return model, metrics
