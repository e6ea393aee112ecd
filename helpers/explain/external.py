"""External validation: a trained model on another source's images, its threshold fixed on its own validation split.

:func:`external_validation` applies a trained model to images from another source (a "second
hospital") and writes ``outputs/<trained_on>/external/<model>-on-<external>.json`` for the report.
:func:`external_dataset` picks that source: ``actualmed`` for real X-ray models, ``ieee8023-ct``
for real CT models, and for synthetic data the same test patients imaged by a device with the
opposite tagging habit (``synthetic-marker`` <-> ``synthetic``), which is a stand-in, not real
external validation. Keras is imported by the functions that load or run a model.

Every kind of run is scored: a Keras model (CNN, transfer) and a VGG16 hybrid. A hybrid goes through
:meth:`helpers.models.hybrid.Hybrid.predict`, the call the demo and ``helpers predict`` make
(``helpers.app.predict.ModelInfo.probabilities``; ``helpers.app`` sits above this package, so the
shared function below it is called, not the app's wrapper). A Keras model goes through
:func:`helpers.models.train.predict`, the path its ``predictions.csv`` came from; the demo calls the
same model on the same 0..255 three-channel input (preprocessing is inside the model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import paths
from helpers.data import SourceUnavailable, base_name, get_source, marker_variant
from helpers.data.dataset import Dataset, course_dataset
from helpers.data.download import DownloadError
from helpers.evaluation import format_interval
from helpers.explain.overlap import Overlap, external_overlap, external_scores
from helpers.images import ImageSet, load_images
from helpers.runs import Run, read_metrics, save_external

EXTERNAL_FOR = {"xray": "actualmed", "ct": "ieee8023-ct"}
EXTERNAL_ALTERNATIVE = {"actualmed": "ieee8023", "ieee8023-ct": "covid-ct"}  # when the model trained on it


def external_dataset_name(dataset: Dataset) -> str:
    """The "second hospital" for models trained on ``dataset`` (see the module docstring)."""
    base, tagged = base_name(dataset.name)
    if get_source(base).synthetic:
        return base if tagged else marker_variant(base)
    external = EXTERNAL_FOR[dataset.modality]
    return EXTERNAL_ALTERNATIVE.get(external, external) if dataset.name == external else external


def external_dataset(
    dataset: Dataset, *, smoke: bool = False, max_per_class: int | None = None, **options,
) -> tuple[Dataset, str | None] | None:
    """The external dataset for ``dataset`` and the split to evaluate (None: every image), or None.

    Synthetic: the same generator with the tag switched, its **test** split (the test patients
    of ``dataset``, never trained on). Real: the other source, every image, loaded strictly
    (no synthetic fallback); None with a printed reason when it cannot be fetched or shares a
    source with ``dataset``.
    """
    name = external_dataset_name(dataset)
    if get_source(base_name(name)[0]).synthetic:
        external = course_dataset(name, smoke=smoke, max_per_class=max_per_class, **options)
        if set(external.split("test")["patient_id"]) != set(dataset.split("test")["patient_id"]):
            print(f"External validation skipped: {name!r} was generated with other options than {dataset.name!r} "
                  "(its test patients differ); pass the same options.")
            return None
        return external, "test"
    try:
        external = course_dataset(name, smoke=smoke, strict=True, max_per_class=max_per_class, **options)
    except (SourceUnavailable, DownloadError) as error:
        print(f"External validation skipped: could not load {name!r} ({error}).")
        return None
    shared = set(external.manifest["source"]) & set(dataset.manifest["source"])
    if shared:
        print(f"External validation skipped: {name!r} shares the source(s) {sorted(shared)} with {dataset.name!r}.")
        return None
    return external, None


def _stored_metrics(trained_on: str, name: str) -> dict:
    """``metrics.json`` of the run ``outputs/<trained_on>/<name>/``, or ``{}`` when there is no such run."""
    folder = paths.output_dir() / trained_on / name
    return read_metrics(folder) if folder.is_dir() else {}


def _rows(image_set: ImageSet, split: str | None) -> tuple[np.ndarray, pd.DataFrame]:
    if split is None:
        return image_set.images, image_set.manifest
    mask = (image_set.manifest["split"] == split).to_numpy()
    return image_set.images[mask], image_set.manifest[mask]


def load_run_model(run: Run):
    """A run's model, loaded as the demo loads it: the Keras model, or the hybrid (:func:`~helpers.models.hybrid.load_hybrid`)."""
    if run.kind == "hybrid":
        from helpers.models.hybrid import load_hybrid

        return load_hybrid(run.path)
    return run.keras_model()


def _is_hybrid(model) -> bool:
    """A :class:`helpers.models.hybrid.Hybrid` (or anything that predicts as one: images -> P(COVID))."""
    return hasattr(model, "predict_features")


def model_size(model) -> int:
    """The input size (px) of a Keras model or a hybrid."""
    from helpers.models import input_size

    return int(model.spec["size"]) if _is_hybrid(model) else input_size(model)


def covid_probability(model, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """P(COVID) for ``N x size x size`` uint8 images, from a Keras model or a hybrid (see the module docstring).

    A multi-class model gives its COVID column (the last: COVID is always the last class).
    """
    if _is_hybrid(model):
        prob = model.predict(images)
    else:
        from helpers.models.train import predict

        prob = predict(model, images, batch_size=batch_size)
    return covid_column(prob)


def covid_column(prob) -> np.ndarray:
    """P(COVID) from a model's output: the vector itself, or a softmax's last column (COVID is every task's last class)."""
    prob = np.asarray(prob, np.float64)
    return prob[:, -1] if prob.ndim == 2 else prob.reshape(-1)


def external_validation(
    model, external: Dataset, image_set: ImageSet, *, trained_on: str | Dataset | None = None,
    name: str | None = None, split: str | None = None, threshold: float | None = None, n_boot: int = 1000,
    batch_size: int = 64, write: bool = True, overlap: Overlap | None = None,
) -> dict:
    """Score a trained model on another source's images; write the record the report reads.

    ``model`` is a :class:`helpers.runs.Run` (Keras or hybrid), a Keras model or a loaded
    :class:`helpers.models.hybrid.Hybrid` (whose run, if saved, is found by ``trained_on`` and
    ``name``). The threshold is the one chosen on the model's own validation split (from its
    ``metrics.json``): nothing is tuned on the external images. ``split`` limits the external
    images to one split (None: all of them). ``overlap`` (:func:`helpers.explain.overlap.external_overlap`)
    drops the external images that near-duplicate a train or val image before scoring. Returns ``model,
    trained_on, evaluated_on, auc, sensitivity, specificity, n`` with their patient-bootstrap intervals
    (``None`` where one class is missing, and ``note`` says why), ``near_duplicates_dropped``, and writes
    it to ``outputs/<trained_on>/external/<model>-on-<external>.json`` when ``write``.
    """
    if isinstance(model, Run):
        loaded, metrics, name = load_run_model(model), model.metrics, name or model.name  # the folder: cnn-three-class
    else:
        loaded, metrics, name = model, {}, name or getattr(model, "name", None)
    trained_on = getattr(trained_on, "name", trained_on) or metrics.get("dataset")
    if name is None or trained_on is None:
        raise ValueError("say which model this is and which dataset it was trained on: name='...', trained_on='...'")
    if threshold is None:
        threshold = (metrics or _stored_metrics(trained_on, name)).get("threshold")
        threshold = 0.5 if threshold is None else threshold
    size = model_size(loaded)
    if image_set.images.shape[1] != size:
        raise ValueError(f"{name} takes {size}px images, these are {image_set.images.shape[1]}px: "
                         f"load_images(external, {size})")
    images, rows = _rows(image_set, split)
    if overlap is not None:
        keep = rows["path"].isin(overlap.kept["path"]).to_numpy()
        images, rows = images[keep], rows[keep]
        print(f"{external.name}: {overlap.note}")
    prob = covid_probability(loaded, images, batch_size=batch_size)
    scores = external_scores(rows["label"], prob, rows["patient_id"], threshold=float(threshold), n_boot=n_boot)
    if scores["note"]:
        print(f"{name} on {external.name}: {scores['note']}")
    record = {
        "model": name, "trained_on": trained_on, "evaluated_on": external.name, **scores,
        "images": f"{split} split" if split else "all", "synthetic": bool(external.synthetic),
        "near_duplicates_dropped": None if overlap is None else overlap.n_dropped,
    }
    if write:
        save_external(record)
    return record


def external_summary(records: list[dict]) -> pd.DataFrame:
    """Internal test AUC next to the external AUC for each record, the drop between them, and the external
    sensitivity and specificity with their 95% intervals (``undefined`` where the external set lacks a class)."""
    rows = []
    for record in records:
        internal = (_stored_metrics(record["trained_on"], record["model"]).get("test") or {}).get("auc")
        external = record["auc"]
        rows.append({
            "model": record["model"], "trained on": record["trained_on"],
            "evaluated on": f"{record['evaluated_on']} ({record['images']})",
            "internal test AUC": internal, "external AUC": external,
            "AUC drop": internal - external if internal is not None and external is not None else np.nan,
            **{f"{metric} (95% CI)": _with_interval(record, metric) for metric in ("sensitivity", "specificity")},
            "n": record["n"], "near-duplicates dropped": record.get("near_duplicates_dropped"),
        })
    return pd.DataFrame(rows)


def _with_interval(record: dict, metric: str) -> str:
    if record.get(metric) is None:
        return "undefined"
    low, high = (record.get(f"{metric}{end}") for end in ("_low", "_high"))
    return format_interval(record[metric], np.nan if low is None else low, np.nan if high is None else high)


def validate_runs_externally(
    runs: list[Run], external: Dataset, *, split: str | None = None, n_boot: int = 1000, seen: Dataset | None = None,
) -> list[dict]:
    """:func:`external_validation` of every run with a model (Keras or hybrid), each at its own input size.

    ``seen``: the dataset the runs were trained on; external images that near-duplicate one of its
    train or val images are dropped first (compared once for all runs, whatever their kind). Not for a
    synthetic stand-in: its images are the test patients by construction, and generated chests all hash alike.
    """
    overlap = external_overlap(external, seen, split=split) if seen is not None and not external.synthetic else None
    records = []
    for run in runs:
        if run.kind is None:
            print(f"{run.model}: no model file in {run.path}, left out of external validation")
            continue
        model = load_run_model(run)
        image_set = load_images(external, model_size(model), progress=False)
        records.append(external_validation(model, external, image_set, trained_on=run.dataset, name=run.name,
                                           split=split, threshold=run.threshold, n_boot=n_boot, overlap=overlap))
    return records
