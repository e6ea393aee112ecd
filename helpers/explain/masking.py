"""Lung masking: does the model look at the lungs, or at everything around them?

Maguolo & Nanni (2021) and DeGrave et al. (2021) blacked out the lungs of chest X-rays and found
that COVID-19 classifiers still told the classes apart: they read the hospital (text, borders,
devices, body habitus), not the disease. The experiment needs a lung mask per image; the COVID-19
Radiography Database ships one (manifest column ``mask``), and so does the synthetic generator.

- :func:`load_lung_masks` reads the masks of an :class:`~helpers.images.ImageSet`'s rows at the
  images' size (resized like the images, binarised); rows without a mask, or whose mask cannot
  be read, are printed and left out, never dropped silently.
- :func:`mask_lungs` is the experiment itself, three lines of numpy: ``keep="outside"`` blacks
  the lungs out, ``keep="lungs"`` blacks out everything else.
- :func:`masking_experiment` scores one model on the same test images as they are, with the
  lungs removed and with only the lungs kept, at one threshold chosen on the validation split.

The mask is **dilated** by a few pixels (:func:`dilate`, ``scipy.ndimage.binary_dilation``;
by default 2% of the image side, at least 1 px) before it is used in either direction, so that
the lung edges (blurred by the resize, or a mask drawn a little tight) do not leak disease into
"lungs removed". The two conditions stay complementary: every pixel is kept in exactly one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from helpers.evaluation import choose_threshold, format_interval, metrics_with_ci, to_binary
from helpers.images import ImageError, ImageSet, read_image, resize
from helpers.plots.masking import plot_masking

__all__ = [
    "CONDITIONS", "LungMasks", "as_predict_fn", "best_predictor", "dilate", "example_rows", "format_masking",
    "has_masks", "load_lung_masks", "mask_lungs", "masking_conditions", "masking_experiment", "masking_figure",
    "run_predictor",
]

# condition -> what :func:`mask_lungs` keeps (None: the image as it is)
CONDITIONS = {"as is": None, "lungs removed": "outside", "only the lungs": "lungs"}
DILATION = 0.02  # of the image side, in pixels at the model's size (at least 1 px)


@dataclass
class LungMasks:
    """Binary lung masks (``True`` inside the lungs) for some rows of an image set."""

    masks: np.ndarray  # bool, N x size x size
    rows: np.ndarray  # their row numbers in the image set: masks[i] belongs to image_set.images[rows[i]]
    missing: list[tuple[str, str]] = field(default_factory=list)  # (image path, why) of rows left out

    def __len__(self) -> int:
        return len(self.masks)


def has_masks(manifest: pd.DataFrame) -> bool:
    """Whether any row of ``manifest`` names a lung mask (column ``mask``, non-empty)."""
    return "mask" in manifest and bool(_mask_paths(manifest).ne("").any())


def _mask_paths(manifest: pd.DataFrame) -> pd.Series:
    if "mask" not in manifest:
        return pd.Series("", index=manifest.index)
    return manifest["mask"].fillna("").astype(str).str.strip()


def load_lung_masks(root, image_set: ImageSet, *, split: str | None = "test", verbose: bool = True) -> LungMasks:
    """The lung masks of ``image_set``'s rows in ``split`` (None: all rows), at the images' size.

    ``root`` is the dataset (or its ``root`` folder): masks are read with :func:`read_image` from
    ``root / row.mask``, resized like the images and binarised at half intensity. Rows without a
    mask or with an unreadable one are left out and listed in ``missing`` (and printed).
    """
    root = Path(getattr(root, "root", root))
    size = image_set.images.shape[1]
    manifest = image_set.manifest
    wanted = np.flatnonzero(np.ones(len(manifest), bool) if split is None else (manifest["split"] == split).to_numpy())
    paths = _mask_paths(manifest)
    masks, rows, missing = [], [], []
    for row in wanted:
        rel = paths.iloc[row]
        if not rel:
            missing.append((manifest["path"].iloc[row], "no lung mask"))
            continue
        try:
            gray = read_image(root / rel, name=rel, reduce_to=size)
        except ImageError as error:
            missing.append((manifest["path"].iloc[row], f"mask unreadable: {error}"))
            continue
        masks.append(resize(gray, size) >= 128)
        rows.append(row)
    found = LungMasks(np.array(masks, bool).reshape(-1, size, size), np.asarray(rows, np.int64), missing)
    if verbose:
        where = "" if split is None else f"{split} "
        left_out = f"; {len(missing)} left out ({_examples(missing)})" if missing else ""
        print(f"lung masks: {len(found)} of {len(wanted)} {where}images have one{left_out}")
    return found


def _examples(missing: list[tuple[str, str]], n: int = 3) -> str:
    shown = "; ".join(f"{path}: {why}" for path, why in missing[:n])
    return shown + (f"; and {len(missing) - n} more" if len(missing) > n else "")


def dilate(masks: np.ndarray, pixels: int | None = None) -> np.ndarray:
    """``masks`` (H x W or N x H x W, bool) grown by ``pixels`` (default: 2% of the side, >= 1) in-plane."""
    masks = np.asarray(masks, bool)
    pixels = max(1, round(DILATION * masks.shape[-1])) if pixels is None else int(pixels)
    if pixels <= 0:
        return masks.copy()
    structure = np.zeros((3,) * masks.ndim, bool)
    structure[(1,) * (masks.ndim - 2)] = ndimage.generate_binary_structure(2, 1)  # never across images
    return ndimage.binary_dilation(masks, structure=structure, iterations=pixels)


def mask_lungs(images: np.ndarray, masks: np.ndarray, keep: str = "outside", *, dilation: int | None = None,
               value: int = 0) -> np.ndarray:
    """A copy of ``images`` with the lungs (``keep="outside"``) or all but the lungs (``keep="lungs"``) set to ``value``.

    ``images`` and ``masks`` are ``H x W`` or ``N x H x W`` (masks: True or non-zero inside the
    lungs). The mask is dilated first (:func:`dilate`; ``dilation=0`` uses it as it is).
    """
    images, lungs = np.asarray(images), dilate(np.asarray(masks) > 0, dilation)
    if images.shape != lungs.shape:
        raise ValueError(f"images {images.shape} and masks {lungs.shape} differ: load the masks at the images' size")
    if keep not in ("outside", "lungs"):
        raise ValueError(f"keep must be 'outside' (lungs removed) or 'lungs' (only the lungs), not {keep!r}")
    blacked = lungs if keep == "outside" else ~lungs
    masked = images.copy()
    masked[blacked] = value
    return masked


def masking_conditions(images: np.ndarray, masks: np.ndarray, *, dilation: int | None = None) -> dict:
    """``{condition: images}`` for :data:`CONDITIONS`: as is, lungs removed, only the lungs."""
    return {name: images if keep is None else mask_lungs(images, masks, keep, dilation=dilation)
            for name, keep in CONDITIONS.items()}


# ---------------------------------------------------------------------- the experiment


def as_predict_fn(model, *, batch_size: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``images (N x H x W uint8) -> probabilities of COVID`` from a Keras model, a hybrid or a function.

    Models go through :func:`helpers.explain.external.covid_probability` (a three-class model: its COVID column);
    a function's output is read the same way.
    """
    from helpers.explain.external import covid_column, covid_probability

    if hasattr(model, "predict_features") or hasattr(model, "layers"):  # a hybrid or a Keras model
        return lambda images: covid_probability(model, images, batch_size=batch_size)
    if callable(model):
        return lambda images: covid_column(model(images))
    raise TypeError(f"expected a Keras model, a hybrid or a function images -> probabilities, not {type(model)}")


def run_predictor(run) -> tuple[Callable[[np.ndarray], np.ndarray], int] | None:
    """The prediction function of a saved run (Keras or hybrid, :mod:`helpers.runs`) and its input size; or None."""
    from helpers.runs import MODEL_FILES, model_file

    file = model_file(Path(run.path))
    if file is None:
        return None
    if MODEL_FILES[file.name] == "keras":
        import keras

        from helpers.models import input_size  # also registers the course's custom layers for loading

        model = run.keras_model() if hasattr(run, "keras_model") else keras.models.load_model(file, compile=False)
        return as_predict_fn(model), input_size(model)
    from helpers.models.hybrid import load_hybrid

    hybrid = load_hybrid(file.parent)
    return as_predict_fn(hybrid), int(hybrid.spec["size"])


def best_predictor(runs) -> tuple | None:
    """``(run, predict_fn, size)`` of the run with the highest **validation** AUC that has a saved model; or None."""
    from helpers.runs import model_file

    saved = [run for run in runs if model_file(Path(run.path)) is not None]
    if not saved:
        return None
    best = max(saved, key=lambda run: (run.metrics.get("val") or {}).get("auc") or 0.0)
    return (best, *run_predictor(best))


def _check_size(model, image_set: ImageSet) -> None:
    if hasattr(model, "layers"):
        from helpers.models import input_size

        if input_size(model) != image_set.images.shape[1]:
            raise ValueError(f"the model takes {input_size(model)}px images, these are "
                             f"{image_set.images.shape[1]}px: load_images(dataset, {input_size(model)})")


def masking_experiment(
    model, image_set: ImageSet, masks: LungMasks, threshold: float | None = None, *, dilation: int | None = None,
    n_boot: int = 1000, seed: int = 0,
) -> pd.DataFrame:
    """AUC (95% patient-bootstrap CI), sensitivity and specificity as is, lungs removed, only the lungs.

    ``model`` is a Keras model, a hybrid or a function ``images -> probabilities``; ``masks``
    comes from :func:`load_lung_masks` and decides which rows are scored (the same rows in every
    condition). ``threshold`` defaults to Youden's J on the **validation** split, images as they
    are: the operating point is fixed before anything is masked. ``auc drop`` is the AUC as is
    minus the AUC of the condition. ``attrs`` hold the threshold, the rows left out and the dilation.
    """
    _check_size(model, image_set)
    predict_fn = as_predict_fn(model)
    if threshold is None:
        val = (image_set.manifest["split"] == "val").to_numpy()
        threshold = choose_threshold(image_set.manifest["label"][val], predict_fn(image_set.images[val]))
    rows = image_set.manifest.iloc[masks.rows]
    labels = to_binary(rows["label"])
    conditions = masking_conditions(image_set.images[masks.rows], masks.masks, dilation=dilation)
    probabilities = np.split(predict_fn(np.concatenate(list(conditions.values()))), len(conditions))  # one call
    table = []
    for condition, probability in zip(conditions, probabilities, strict=True):
        frame = pd.DataFrame({"y_true": labels, "probability": probability,
                              "patient_id": rows["patient_id"].to_numpy()})
        scores = metrics_with_ci(frame, threshold, metrics=("auc", "sensitivity", "specificity"), n_boot=n_boot,
                                 seed=seed)
        table.append({
            "condition": condition, "auc": scores.loc["auc", "estimate"], "auc low": scores.loc["auc", "low"],
            "auc high": scores.loc["auc", "high"], "sensitivity": scores.loc["sensitivity", "estimate"],
            "specificity": scores.loc["specificity", "estimate"], "n": len(frame),
            "patients": int(frame["patient_id"].nunique()),
        })
    table = pd.DataFrame(table).set_index("condition")
    table.insert(3, "auc drop", table.loc["as is", "auc"] - table["auc"])
    table.attrs.update(threshold=float(threshold), left_out=len(masks.missing), n_boot=n_boot,
                       dilation=dilation if dilation is not None else max(1, round(DILATION * image_set.images.shape[1])))
    return table


def format_masking(tables: dict[str, pd.DataFrame], *, digits: int = 2) -> pd.DataFrame:
    """The tables of several models in one, for display: ``AUC (95% CI)`` as a string, rows (model, condition)."""
    parts = []
    for model, table in tables.items():
        parts.append(pd.DataFrame({
            "AUC (95% CI)": [format_interval(*row, digits=digits)
                             for row in table[["auc", "auc low", "auc high"]].itertuples(index=False)],
            "AUC drop": table["auc drop"].round(digits).to_numpy(),
            "sensitivity": table["sensitivity"].round(digits).to_numpy(),
            "specificity": table["specificity"].round(digits).to_numpy(),
            "threshold (val)": round(table.attrs["threshold"], 3),
            "images": table["n"].to_numpy(), "patients": table["patients"].to_numpy(),
        }, index=pd.MultiIndex.from_product([[model], table.index], names=["model", "condition"])))
    return pd.concat(parts) if parts else pd.DataFrame()


def example_rows(image_set: ImageSet, masks: LungMasks, *, per_class: int = 1) -> np.ndarray:
    """Positions in ``masks`` of ``per_class`` COVID, then NORMAL images, one per patient.

    With a ``marker`` column, tagged COVID and untagged NORMAL images come first: the typical case.
    """
    rows = image_set.manifest.iloc[masks.rows].reset_index(drop=True)
    typical = rows["marker"].astype(bool) == (rows["label"] == "COVID") if "marker" in rows else True
    rows = rows.assign(typical=typical).sort_values("typical", ascending=False, kind="stable")
    rows = rows.drop_duplicates("patient_id")
    return np.concatenate([rows.index[rows["label"] == label][:per_class] for label in ("COVID", "NORMAL")])


def masking_figure(
    image_set: ImageSet, masks: LungMasks, tables: dict[str, pd.DataFrame], *, per_class: int = 1,
    synthetic: bool = False, dilation: int | None = None, title: str | None = None,
):
    """:func:`~helpers.plots.masking.plot_masking` for example test images of ``image_set`` and each model's table."""
    chosen = example_rows(image_set, masks, per_class=per_class)
    rows = image_set.manifest.iloc[masks.rows[chosen]]
    labels = [f"{row.label}" + (f", {'tag' if row.marker else 'no tag'}" if "marker" in rows else "")
              for row in rows.itertuples()]
    conditions = masking_conditions(image_set.images[masks.rows[chosen]], masks.masks[chosen], dilation=dilation)
    return plot_masking(conditions, tables, labels, synthetic=synthetic,
                        title=title or "lung masking: test AUC as is, without the lungs, with only the lungs")
