"""Shortcut learning and external validation: does the model read the disease or the hospital?

The synthetic set ``synthetic-marker`` burns a ``PORTABLE`` tag into the top-right
corner of most COVID images and of few NORMAL ones, as a hospital's portable device
might (DeGrave et al. 2021 found models reading such text). :func:`mask_marker`
blanks that corner, :func:`paste_marker` copies a tag onto other images, and
:func:`shortcut_experiment` scores one model with the tag as is, masked, and pasted
onto every NORMAL image: a model that learned the disease barely moves, a model
that learned the tag collapses.

:func:`external_validation` applies a trained model to images from another source
(a "second hospital") with the threshold chosen on its own validation split, and
writes ``outputs/<trained_on>/external/<model>-on-<external>.json`` for the report.
:func:`external_dataset` picks that source: ``actualmed`` for real X-ray models,
``ieee8023-ct`` for real CT models, and for synthetic data the same test patients
imaged by a device with the opposite tagging habit (``synthetic-marker`` <->
``synthetic``), which is a stand-in, not real external validation.

The last section holds the few steps of notebook 05 that are more than one call:
the runs to evaluate (or a quick CNN when there are none), operating points,
and Grad-CAM over correct and wrong calls and over the tag.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from helpers import explain, paths
from helpers.data import SourceUnavailable, base_name, get_source, marker_variant
from helpers.data.dataset import Dataset, course_dataset
from helpers.data.download import DownloadError
from helpers.evaluation import (
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
    format_interval,
    metrics_with_ci,
    to_binary,
)
from helpers.images import ImageSet, load_images
from helpers.models import BACKBONES, input_size
from helpers.models.pipeline import split_arrays
from helpers.models.train import predict
from helpers.runs import Run, quick_cnn, read_runs

# The synthetic tag sits at x 62-96 %, y 4-12 % of the image (helpers.data.synthetic._add_marker). The box
# adds a margin: resizing blurs the tag's edges, and on small images its text runs past the tag.
MARKER_BOX = (0.60, 0.02, 1.00, 0.15)  # x0, y0, x1, y1 as fractions of the width and height
# Where Grad-CAM's heat counts as "on the tag": the tag's corner widened, because the last convolution's
# grid is coarse (8 x 8 cells at 64 px) and the heat of a tag spreads into the cells below it.
ATTENTION_BOX = (0.50, 0.00, 1.00, 0.35)
# The lesson's dataset: the tag on 95 % of COVID and 5 % of NORMAL images, opacities at a fifth of their
# usual strength (a subtle disease, a loud tag), so that a quick CNN learns the tag rather than the disease.
# With the tag masked its test AUC falls from about 0.95-1.0 to 0.45-0.7 (tests/test_shortcut.py).
SHORTCUT_OPTIONS = {"marker_rate": 0.95, "severity_scale": 0.2}
EXTERNAL_FOR = {"xray": "actualmed", "ct": "ieee8023-ct"}
EXTERNAL_ALTERNATIVE = {"actualmed": "ieee8023", "ieee8023-ct": "covid-ct"}  # when the model trained on it

# ------------------------------------------------------------------------------ the tag


def marker_region(shape, *, box=MARKER_BOX) -> tuple[slice, slice]:
    """Rows and columns of ``box`` in an image whose last two dimensions are ``shape[-2:]`` (H, W)."""
    height, width = shape[-2:]
    x0, y0, x1, y1 = box
    rows = slice(int(y0 * height), int(np.ceil(y1 * height)))
    return rows, slice(int(x0 * width), int(np.ceil(x1 * width)))


def mask_marker(images: np.ndarray, *, box=MARKER_BOX, value: int = 0) -> np.ndarray:
    """A copy of ``images`` (H x W or N x H x W grayscale) with the marker corner set to ``value``."""
    masked = np.array(images, copy=True)
    rows, cols = marker_region(masked.shape, box=box)
    masked[..., rows, cols] = value
    return masked


def paste_marker(images: np.ndarray, donor: np.ndarray, *, box=MARKER_BOX) -> np.ndarray:
    """A copy of ``images`` with the marker corner of ``donor`` (one tagged H x W image) pasted in."""
    pasted = np.array(images, copy=True)
    rows, cols = marker_region(pasted.shape, box=box)
    if donor.shape != pasted.shape[-2:]:
        raise ValueError(f"the donor image is {donor.shape}, the images are {pasted.shape[-2:]}: use one size")
    pasted[..., rows, cols] = donor[rows, cols]
    return pasted


def tagged_donor(image_set: ImageSet, *, split: str = "train") -> np.ndarray | None:
    """One image of ``split`` that carries the tag (manifest column ``marker``), or None."""
    if "marker" not in image_set.manifest:
        return None
    tagged = np.flatnonzero(
        (image_set.manifest["split"] == split).to_numpy() & image_set.manifest["marker"].astype(bool).to_numpy()
    )
    return image_set.images[tagged[0]] if len(tagged) else None


def marker_attention(heatmaps: np.ndarray, *, box=ATTENTION_BOX) -> np.ndarray:
    """Share of each Grad-CAM map's total heat inside ``box`` (default: the tag's corner, widened)."""
    heatmaps = np.asarray(heatmaps, float)
    rows, cols = marker_region(heatmaps.shape, box=box)
    total = heatmaps.sum(axis=(-2, -1))
    inside = heatmaps[..., rows, cols].sum(axis=(-2, -1))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


# ---------------------------------------------------------------------- the experiment


def shortcut_dataset(*, smoke: bool = False, **options) -> Dataset:
    """``synthetic-marker`` with :data:`SHORTCUT_OPTIONS` (the tag on most COVID images, a faint disease)."""
    return course_dataset("synthetic", smoke=smoke, marker=True, **{**SHORTCUT_OPTIONS, **options})


def _tag_shares(tagged: np.ndarray, y: np.ndarray) -> dict:
    """Share of COVID and of NORMAL images that carry the tag."""
    return {
        "tagged COVID": float(tagged[y == 1].mean()) if (y == 1).any() else np.nan,
        "tagged NORMAL": float(tagged[y == 0].mean()) if (y == 0).any() else np.nan,
    }


def _split_tags(image_set: ImageSet, split: str) -> np.ndarray:
    rows = image_set.manifest[image_set.manifest["split"] == split]
    return rows["marker"].astype(bool).to_numpy() if "marker" in rows else np.full(len(rows), np.nan)


def val_threshold(model: keras.Model, image_set: ImageSet, *, batch_size: int = 64) -> float:
    """Youden's threshold on the validation split, images as they are."""
    images, labels = split_arrays(image_set, "val")
    return choose_threshold(labels, predict(model, images, batch_size=batch_size))


def shortcut_conditions(image_set: ImageSet, *, split: str = "test", paste: bool = True, box=MARKER_BOX) -> dict:
    """``{condition: (images, tagged)}``: the split as is, with the corner masked, with a tag on every NORMAL."""
    images, labels = split_arrays(image_set, split)
    tagged = _split_tags(image_set, split)
    conditions = {"marker as is": (images, tagged), "marker masked": (mask_marker(images, box=box), tagged * 0)}
    donor = tagged_donor(image_set) if paste else None
    if donor is not None:
        normal = labels == 0
        pasted = images.copy()
        pasted[normal] = paste_marker(images[normal], donor, box=box)
        conditions["marker on every NORMAL"] = (pasted, np.where(normal, 1.0, tagged))
    return conditions


def shortcut_experiment(
    model: keras.Model, image_set: ImageSet, *, split: str = "test", threshold: float | None = None,
    paste: bool = True, box=MARKER_BOX, batch_size: int = 64,
) -> pd.DataFrame:
    """AUC, sensitivity and specificity of ``model`` on ``split`` with the tag as is, masked, and pasted.

    ``threshold`` defaults to Youden's J on the validation split (tag as is): the model's
    operating point is fixed before anything is changed. ``paste`` adds a row where every
    NORMAL image carries a tag copied from a tagged training image (needs column ``marker``).
    """
    threshold = val_threshold(model, image_set, batch_size=batch_size) if threshold is None else threshold
    labels = split_arrays(image_set, split)[1].astype(int)
    rows = []
    for condition, (images, tagged) in shortcut_conditions(image_set, split=split, paste=paste, box=box).items():
        metrics = binary_metrics(labels, predict(model, images, batch_size=batch_size), threshold)
        rows.append({
            "condition": condition, **{k: metrics[k] for k in ("auc", "sensitivity", "specificity")},
            **_tag_shares(tagged, labels), "n": metrics["n"],
        })
    table = pd.DataFrame(rows).set_index("condition")
    table.attrs.update(threshold=float(threshold), split=split)
    return table


# ----------------------------------------------------------------- external validation


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


def _load(model) -> tuple[keras.Model, dict]:
    """A Keras model and its run's metrics.json (empty when a model object or a bare file is given)."""
    if isinstance(model, keras.Model):
        return model, {}
    path = Path(model)
    folder = path if path.is_dir() else path.parent
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return keras.models.load_model(folder / "model.keras" if path.is_dir() else path), metrics


def _stored_run(trained_on: str, name: str) -> dict:
    """``metrics.json`` of ``outputs/<trained_on>/<name>/`` if it exists, else ``{}``."""
    path = paths.output_dir() / trained_on / name / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


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

    ``model`` is a Keras model, a run folder (``outputs/<dataset>/<model>/``) or a ``.keras``
    file. The threshold is the one chosen on the model's own validation split (from its
    ``metrics.json``): nothing is tuned on the external images. ``split`` limits the external
    images to one split (None: all of them). Returns ``model, trained_on, evaluated_on, auc,
    sensitivity, specificity, n`` plus the AUC's patient-bootstrap interval, and writes it to
    ``outputs/<trained_on>/external/<model>-on-<external>.json`` when ``write``.
    """
    keras_model, metrics = _load(model)
    name = name or metrics.get("model") or keras_model.name
    trained_on = getattr(trained_on, "name", trained_on) or metrics.get("dataset")
    if trained_on is None:
        raise ValueError("say which dataset the model was trained on: trained_on='...'")
    if threshold is None:
        threshold = (metrics or _stored_run(trained_on, name)).get("threshold")
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
        folder = paths.output_dir() / trained_on / "external"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}-on-{external.name}.json").write_text(json.dumps(record, indent=2))
    return record


def external_summary(records: list[dict]) -> pd.DataFrame:
    """Internal test AUC next to the external AUC for each record, and the drop between them."""
    rows = []
    for record in records:
        internal = (_stored_run(record["trained_on"], record["model"]).get("test") or {}).get("auc")
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
    """:func:`external_validation` of every Keras run (``model.keras``) at its own input size."""
    records = []
    for run in runs:
        if not (run.path / "model.keras").is_file():
            print(f"{run.model}: no model.keras (not a Keras model), left out of external validation")
            continue
        size = run.metrics.get("img_size") or input_size(keras.models.load_model(run.path / "model.keras"))
        image_set = load_images(external, int(size), progress=False)
        records.append(external_validation(run.path, external, image_set, split=split, n_boot=n_boot))
    return records


# ------------------------------------------------------------------ notebook 05 steps


def runs_or_quick_cnn(dataset: Dataset, *, img_size: int = 128, epochs: int = 10, batch_size: int = 32) -> list[Run]:
    """Every trained model of ``dataset`` under ``outputs/``; when there is none, train ``cnn-quick`` first."""
    runs = read_runs(dataset=dataset.name)
    if runs:
        return runs
    print(
        f"No trained models under {paths.output_dir() / dataset.name}. For the full comparison run notebooks "
        f"02 (CNN), 03 (transfer learning) and 04 (VGG16 + XGBoost) first with DATASET={dataset.requested!r}.\n"
        f"Training a quick CNN now ({epochs} epochs at {img_size}px) so that this notebook runs on its own."
    )
    image_set = load_images(dataset, img_size)
    return [quick_cnn(dataset, image_set, epochs=epochs, batch_size=batch_size, name="cnn-quick", verbose=2)]


def gradcam_runs(runs: list[Run]) -> list[Run]:
    """The first CNN and the first transfer model with a saved Keras model (hybrids have none)."""
    saved = [run for run in runs if (run.path / "model.keras").is_file()]
    cnn = [run for run in saved if run.model.startswith("cnn")]
    transfer = [run for run in saved if run.model in BACKBONES]
    return cnn[:1] + transfer[:1]


def best_run(runs: list[Run]) -> Run:
    """The run with the highest **validation** AUC (the test split is never used to choose)."""
    return max(runs, key=lambda run: (run.metrics.get("val") or {}).get("auc") or 0.0)


def operating_points(run: Run, thresholds: dict[str, float], *, n_boot: int = 1000) -> pd.DataFrame:
    """Validation and test sensitivity/specificity (test with patient-bootstrap CIs) at each named threshold."""
    val, test = run.split("val"), run.split("test")
    rows = {}
    for name, threshold in thresholds.items():
        on_val = binary_metrics(val["y_true"], val["probability"], threshold)
        on_test = metrics_with_ci(test, threshold, metrics=("sensitivity", "specificity", "ppv", "npv"),
                                  n_boot=n_boot)
        rows[name] = {
            "threshold": f"{threshold:.3f}",
            "val sensitivity": f"{on_val['sensitivity']:.2f}", "val specificity": f"{on_val['specificity']:.2f}",
            **{f"test {metric}": format_interval(*values) for metric, values in on_test.iterrows()},
        }
    return pd.DataFrame(rows).T


def outcome_examples(run: Run, *, n: int = 2, split: str = "test") -> pd.DataFrame:
    """Up to ``n`` rows of each outcome (true/false positive/negative), the most confident calls first."""
    rows = run.split(split)
    called = rows["probability"] >= run.threshold
    truth = rows["y_true"] == 1
    outcome = np.select([truth & called, truth & ~called, ~truth & called], ["TP", "FN", "FP"], "TN")
    rows = rows.assign(outcome=outcome, margin=(rows["probability"] - run.threshold).abs())
    rows = rows.sort_values("margin", ascending=False).groupby("outcome").head(n)
    order = {"TP": 0, "FN": 1, "FP": 2, "TN": 3}
    return rows.sort_values("outcome", key=lambda column: column.map(order))


def gradcam_examples(run: Run, dataset: Dataset, *, n: int = 2, size: int | None = None):
    """Grad-CAM of a run's model over correct and wrong test calls: image and overlay side by side."""
    model = keras.models.load_model(run.path / "model.keras")
    image_set = load_images(dataset, size or input_size(model), progress=False)
    where = pd.Series(np.arange(len(image_set)), index=image_set.manifest["path"])
    examples = outcome_examples(run, n=n)
    examples = examples[examples["path"].isin(where.index)]
    images = image_set.images[where[examples["path"]].to_numpy()]
    heatmaps = explain.gradcam(model, images)
    panels, maps, titles = [], [], []
    for image, heatmap, (_, row) in zip(images, heatmaps, examples.iterrows(), strict=True):
        panels += [image, image]
        maps += [None, heatmap]
        titles += [f"{row['outcome']}: {row['label']}", f"p(COVID) = {row['probability']:.3f}"]
    return explain.plot_gradcam_grid(
        panels, maps, titles, ncols=4, synthetic=run.synthetic, panel_size=2.4,
        title=f"{run.dataset}/{run.model}: Grad-CAM on test images (threshold {run.threshold:.3f})",
    )


def tagged_examples(image_set: ImageSet, *, n: int = 4, split: str = "test") -> np.ndarray:
    """Row numbers of up to ``n`` tagged images of ``split``, one per patient: COVID ones and one NORMAL if any."""
    rows = image_set.manifest[(image_set.manifest["split"] == split) & image_set.manifest["marker"].astype(bool)]
    rows = rows.drop_duplicates("patient_id")
    normal = rows[rows["label"] == "NORMAL"].head(1)
    covid = rows[rows["label"] == "COVID"].head(n - len(normal))
    return pd.concat([covid, normal]).index.to_numpy()


def _call(prob: float, threshold: float | None) -> str:
    return "" if threshold is None else (" -> COVID" if prob >= threshold else " -> NORMAL")


def shortcut_gradcam(
    model: keras.Model, image_set: ImageSet, *, n: int = 4, split: str = "test", threshold: float | None = None,
    box=MARKER_BOX,
):
    """For ``n`` tagged images: the image, Grad-CAM with the tag, Grad-CAM with the corner masked.

    Titles give the probability of COVID (and the call at ``threshold``) and the share of the
    map's heat in the tag's corner (:func:`marker_attention`).
    """
    index = tagged_examples(image_set, n=n, split=split)
    images, labels = image_set.images[index], image_set.manifest["label"].to_numpy()[index]
    views = {"with tag": images, "corner masked": mask_marker(images, box=box)}
    probabilities = np.split(predict(model, np.concatenate(list(views.values()))), len(views))
    results = {
        kind: (explain.gradcam(model, batch), prob) for (kind, batch), prob in zip(views.items(), probabilities)
    }
    panels, maps, titles = [], [], []
    for i, label in enumerate(labels):
        panels.append(images[i])
        maps.append(None)
        titles.append(f"{label}, tagged")
        for kind, (heat, prob) in results.items():
            panels.append(views[kind][i])
            maps.append(heat[i])
            titles.append(f"{kind}: p(COVID)={prob[i]:.3f}{_call(prob[i], threshold)}\n"
                          f"{float(marker_attention(heat[i])):.0%} of the heat in the tag's corner")
    shown = "" if threshold is None else f" (threshold {threshold:.3f})"
    return explain.plot_gradcam_grid(
        panels, maps, titles, ncols=3, synthetic=True, panel_size=3.0,
        title=f"shortcut model, with and without the tag{shown}",
    )
