"""Training shared by every Keras model of the course.

``fit`` trains on the train split and selects on the validation split only
(early stopping and best-weights restore on validation AUC); ``evaluate_and_save``
predicts val and test and writes the run's artifacts with :func:`helpers.runs.save_run`
(the threshold is chosen on val there).
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from helpers.environment import strategy_scope
from helpers.images import ImageSet
from helpers.models.pipeline import labels_of, make_pipeline, split_arrays, split_pipeline
from helpers.runs import predictions_frame, save_run


def class_weights(labels: np.ndarray, n_classes: int = 2) -> dict[int, float]:
    """Weights that make all classes count equally in the loss (``n / (k * n_class)``; 0 for an absent class)."""
    labels = np.asarray(labels).astype(int)
    present = np.unique(labels)
    balanced = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=labels), strict=True))
    return {k: float(balanced.get(k, 0.0)) for k in range(n_classes)}


def _objective(model: keras.Model) -> tuple[str, list, str, str]:
    """Loss, metrics and what early stopping watches: AUC for one sigmoid, the loss for a softmax."""
    if model.output_shape[-1] == 1:
        return ("binary_crossentropy", [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
                "val_auc", "max")
    return "sparse_categorical_crossentropy", [keras.metrics.SparseCategoricalAccuracy(name="accuracy")], "val_loss", "min"


def fit(
    model: keras.Model, image_set: ImageSet, *, epochs: int = 10, batch_size: int = 32,
    learning_rate: float = 1e-3, patience: int = 5, seed: int = 42, verbose: int | str = "auto",
    history: dict | None = None, classes: tuple[str, ...] | None = None,
) -> dict:
    """Train ``model`` on the train split, select on val; returns the history (appended to ``history``).

    Adam with a cosine-decayed learning rate, class weights for imbalance, early
    stopping on validation AUC with the best weights restored. The test split is
    not touched here. A softmax model needs ``classes`` (the task's, in class-index order):
    sparse categorical cross-entropy, early stopping on the validation loss.
    """
    if (model.output_shape[-1] > 1) != (classes is not None) or (classes and len(classes) != model.output_shape[-1]):
        raise ValueError(f"a model with {model.output_shape[-1]} output(s) needs classes= of that many (or none for 1)")
    train = split_pipeline(image_set, "train", batch_size=batch_size, training=True, seed=seed, classes=classes)
    val = split_pipeline(image_set, "val", batch_size=batch_size, classes=classes)
    steps = max(1, epochs * int(np.ceil((image_set.manifest["split"] == "train").sum() / batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
    loss, metrics, monitor, mode = _objective(model)
    with strategy_scope():
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=metrics)
    stop = keras.callbacks.EarlyStopping(monitor, mode=mode, patience=patience, restore_best_weights=True)
    started = time.perf_counter()
    result = model.fit(
        train, validation_data=val, epochs=epochs, callbacks=[stop], shuffle=False,  # the pipeline shuffles
        class_weight=class_weights(labels_of(image_set, "train", classes), len(classes or (0, 1))), verbose=verbose,
    )
    merged = {k: list(v) for k, v in (history or {}).items()}
    for name, values in result.history.items():
        merged.setdefault(name, []).extend(float(v) for v in values)
    merged.setdefault("seconds", []).append(round(time.perf_counter() - started, 2))
    return merged


def predict(model: keras.Model, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Probabilities of COVID for ``images`` (N x size x size uint8); a softmax model: N x classes."""
    units = model.output_shape[-1]
    if len(images) == 0:
        return np.zeros((0,) if units == 1 else (0, units), np.float32)
    out = model.predict(make_pipeline(images, batch_size=batch_size), verbose=0).astype(np.float32)
    return out.reshape(-1) if units == 1 else out


def evaluate_and_save(
    model: keras.Model, image_set: ImageSet, dataset, *, name: str | None = None, history: dict | None = None,
    weights: str | None = "scratch", params: dict | None = None, batch_size: int = 64, output_dir: Path | None = None,
) -> dict:
    """Predict val and test with a trained Keras model and write its artifacts (:func:`helpers.runs.save_run`).

    A softmax model's N x classes probabilities are saved per class (the dataset's classes, in order).
    """
    from helpers.models import gradcam_layer, input_size

    probabilities = {s: predict(model, split_arrays(image_set, s)[0], batch_size=batch_size) for s in ("val", "test")}
    return save_run(
        name or model.name, dataset=dataset,
        predictions=predictions_frame(image_set, probabilities, classes=getattr(dataset, "classes", None)),
        history=history, model=model, train_seconds=sum((history or {}).get("seconds", [])), weights=weights,
        img_size=input_size(model), gradcam_layer=gradcam_layer(model), params=params, output_dir=output_dir,
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
