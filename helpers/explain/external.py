"""External validation: a trained model on another source's images, its threshold fixed on its own validation split.

:func:`external_validation` applies a trained model to images from another source (a "second
hospital") and writes ``outputs/<trained_on>/external/<model>-on-<external>.json`` for the report.
:func:`external_dataset` picks that source: ``actualmed`` for real X-ray models, ``ieee8023-ct``
for real CT models, and for synthetic data the same test patients imaged by a device with the
opposite tagging habit (``synthetic-marker`` <-> ``synthetic``), which is a stand-in, not real
external validation. Keras is imported by the functions that load or run a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import paths
from helpers.data import SourceUnavailable, base_name, get_source, marker_variant
from helpers.data.dataset import Dataset, course_dataset
from helpers.data.download import DownloadError
from helpers.evaluation import binary_metrics, bootstrap_ci, to_binary
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


def external_validation(
    model, external: Dataset, image_set: ImageSet, *, trained_on: str | Dataset | None = None,
    name: str | None = None, split: str | None = None, threshold: float | None = None, n_boot: int = 1000,
    batch_size: int = 64, write: bool = True,
) -> dict:
    """Score a trained model on another source's images; write the record the report reads.

    ``model`` is a :class:`helpers.runs.Run` or a Keras model (whose run, if saved, is found
    by ``trained_on`` and ``name``). The threshold is the one chosen on the model's own
    validation split (from its ``metrics.json``): nothing is tuned on the external images. ``split`` limits the external
    images to one split (None: all of them). Returns ``model, trained_on, evaluated_on, auc,
    sensitivity, specificity, n`` plus the AUC's patient-bootstrap interval, and writes it to
    ``outputs/<trained_on>/external/<model>-on-<external>.json`` when ``write``.
    """
    from helpers.models import input_size
    from helpers.models.train import predict

    keras_model, metrics = (model.keras_model(), model.metrics) if isinstance(model, Run) else (model, {})
    name = name or metrics.get("model") or keras_model.name
    trained_on = getattr(trained_on, "name", trained_on) or metrics.get("dataset")
    if trained_on is None:
        raise ValueError("say which dataset the model was trained on: trained_on='...'")
    if threshold is None:
        threshold = (metrics or _stored_metrics(trained_on, name)).get("threshold")
        threshold = 0.5 if threshold is None else threshold
    if image_set.images.shape[1] != input_size(keras_model):
        raise ValueError(
            f"{name} takes {input_size(keras_model)}px images, these are {image_set.images.shape[1]}px: "
            f"load_images(external, {input_size(keras_model)})"
        )
    images, rows = _rows(image_set, split)
    prob = predict(keras_model, images, batch_size=batch_size)
    scores = binary_metrics(rows["label"], prob, threshold)
    low, high = (np.nan, np.nan)
    if scores["auc"] is not None:
        frame = pd.DataFrame({"y_true": to_binary(rows["label"]), "probability": prob,
                              "patient_id": rows["patient_id"].to_numpy()})
        low, high = bootstrap_ci(frame, "auc", n_boot=n_boot)
    record = {
        "model": name, "trained_on": trained_on, "evaluated_on": external.name,
        **{k: scores[k] for k in ("auc", "sensitivity", "specificity", "n")},
        "auc_low": None if np.isnan(low) else low, "auc_high": None if np.isnan(high) else high,
        "n_patients": int(rows["patient_id"].nunique()), "images": f"{split} split" if split else "all",
        "threshold": float(threshold), "synthetic": bool(external.synthetic),
    }
    if write:
        save_external(record)
    return record


def external_summary(records: list[dict]) -> pd.DataFrame:
    """Internal test AUC next to the external AUC for each record, and the drop between them."""
    rows = []
    for record in records:
        internal = (_stored_metrics(record["trained_on"], record["model"]).get("test") or {}).get("auc")
        external = record["auc"]
        rows.append({
            "model": record["model"], "trained on": record["trained_on"],
            "evaluated on": f"{record['evaluated_on']} ({record['images']})",
            "internal test AUC": internal, "external AUC": external,
            "AUC drop": internal - external if internal is not None and external is not None else np.nan,
            "sensitivity": record["sensitivity"], "specificity": record["specificity"], "n": record["n"],
        })
    return pd.DataFrame(rows)


def validate_runs_externally(
    runs: list[Run], external: Dataset, *, split: str | None = None, n_boot: int = 1000,
) -> list[dict]:
    """:func:`external_validation` of every Keras run at its own input size (hybrids are left out)."""
    from helpers.models import input_size

    records = []
    for run in runs:
        if run.kind != "keras":
            print(f"{run.model}: no Keras model (a hybrid?), left out of external validation")
            continue
        image_set = load_images(external, input_size(run.keras_model()), progress=False)
        records.append(external_validation(run, external, image_set, split=split, n_boot=n_boot))
    return records
