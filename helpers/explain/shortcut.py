"""Shortcut learning: does the model read the disease, or a tag the hospital printed on the image?

The synthetic set ``synthetic-marker`` burns a ``PORTABLE`` tag into the top-right corner of most
COVID images and of few NORMAL ones, as a hospital's portable device might (DeGrave et al. 2021
found models reading such text). :func:`mask_marker` blanks that corner, :func:`paste_marker`
copies a tag onto other images, and :func:`shortcut_experiment` scores one model with the tag as
is, masked, and pasted onto every NORMAL image: a model that learned the disease barely moves, a
model that learned the tag collapses. :func:`tag_gradcam` gives the Grad-CAM maps of tagged images
with and without the tag (the figure: ``helpers.plots.plot_shortcut_gradcam``).

The masking helpers need only NumPy and pandas; the functions that run a model import
TensorFlow when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from helpers.data.dataset import Dataset, course_dataset
from helpers.evaluation import binary_metrics, choose_threshold
from helpers.images import ImageSet

if TYPE_CHECKING:
    import keras

# The synthetic tag sits at x 62-96 %, y 4-12 % of the image (helpers.data.synthetic._add_marker). The box
# adds a margin: resizing blurs the tag's edges, and on small images its text runs past the tag.
MARKER_BOX = (0.60, 0.02, 1.00, 0.15)  # x0, y0, x1, y1 as fractions of the width and height
# Where Grad-CAM's heat counts as "on the tag": the tag's corner widened, because the last convolution's
# grid is coarse (8 x 8 cells at 64 px) and the heat of a tag spreads into the cells below it.
ATTENTION_BOX = (0.50, 0.00, 1.00, 0.35)
# The lesson's dataset: the tag on 95 % of COVID and 5 % of NORMAL images, opacities at a fifth of their
# usual strength (a subtle disease, a loud tag), so that a quick CNN learns the tag rather than the disease.
# With the tag masked its test AUC falls from about 0.95-1.0 to 0.45-0.7 (tests/explain/test_shortcut.py).
SHORTCUT_OPTIONS = {"marker_rate": 0.95, "severity_scale": 0.2}


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
    from helpers.models.pipeline import split_arrays
    from helpers.models.train import predict

    images, labels = split_arrays(image_set, "val")
    return choose_threshold(labels, predict(model, images, batch_size=batch_size))


def shortcut_conditions(image_set: ImageSet, *, split: str = "test", paste: bool = True, box=MARKER_BOX) -> dict:
    """``{condition: (images, tagged)}``: the split as is, with the corner masked, with a tag on every NORMAL."""
    from helpers.models.pipeline import split_arrays

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
    from helpers.models.pipeline import split_arrays
    from helpers.models.train import predict

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


def tagged_examples(image_set: ImageSet, *, n: int = 4, split: str = "test") -> np.ndarray:
    """Row numbers of up to ``n`` tagged images of ``split``, one per patient: COVID ones and one NORMAL if any."""
    rows = image_set.manifest[(image_set.manifest["split"] == split) & image_set.manifest["marker"].astype(bool)]
    rows = rows.drop_duplicates("patient_id")
    normal = rows[rows["label"] == "NORMAL"].head(1)
    covid = rows[rows["label"] == "COVID"].head(n - len(normal))
    return pd.concat([covid, normal]).index.to_numpy()


@dataclass
class TagView:
    """Tagged images shown one way (as they are, or masked): their Grad-CAM maps and scores."""

    images: np.ndarray  # N x H x W, what the model was shown
    heatmaps: np.ndarray  # N x H x W in 0..1
    probability: np.ndarray  # of COVID
    tag_heat: np.ndarray  # share of each map's heat in the tag's corner (marker_attention)


def tag_gradcam(
    model: keras.Model, image_set: ImageSet, *, n: int = 4, split: str = "test", box=MARKER_BOX,
) -> tuple[np.ndarray, dict[str, TagView]]:
    """Grad-CAM of ``n`` tagged images (:func:`tagged_examples`) with the tag and with the corner masked.

    Returns the images' labels and ``{"with tag": TagView, "corner masked": TagView}``.
    """
    from helpers.explain.gradcam import gradcam
    from helpers.models.train import predict

    index = tagged_examples(image_set, n=n, split=split)
    images = image_set.images[index]
    shown = {"with tag": images, "corner masked": mask_marker(images, box=box)}
    probabilities = np.split(predict(model, np.concatenate(list(shown.values()))), len(shown))
    views = {}
    for (kind, batch), probability in zip(shown.items(), probabilities, strict=True):
        heatmaps = gradcam(model, batch)
        views[kind] = TagView(batch, heatmaps, probability, marker_attention(heatmaps))
    return image_set.manifest["label"].to_numpy()[index], views
