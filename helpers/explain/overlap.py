"""External validation without overlap, and honest numbers when the external set lacks a class.

Different source names do not make different images: public COVID collections copy from each
other, resized and recompressed. :func:`external_overlap` compares every external image with the
train and val images by the course's 256-bit perceptual hash (:func:`helpers.images.near_duplicate_groups`,
at most 32 bits apart) and drops the external images that look like one the model was trained or
tuned on, with a count. :func:`external_scores` scores what is left; when it holds one class only
(``ieee8023-ct`` has almost no NORMAL images) it says that AUC and the other class's rate are
undefined and reports the one rate that is defined, with its patient-bootstrap interval.
No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.constants import NEGATIVE, POSITIVE
from helpers.evaluation import binary_metrics, metrics_with_ci, to_binary
from helpers.images import near_duplicate_groups

SEEN_SPLITS = ("train", "val")


@dataclass
class Overlap:
    """External rows split into ``kept`` and ``dropped`` (with ``matches``: the train/val images they look like)."""

    kept: pd.DataFrame
    dropped: pd.DataFrame
    n_compared: int  # train + val images compared against
    max_distance: int

    @property
    def n_dropped(self) -> int:
        return len(self.dropped)

    @property
    def note(self) -> str:
        total = len(self.kept) + len(self.dropped)
        if not self.n_dropped:
            return (f"none of the {total} external images is a near-duplicate (<= {self.max_distance} of 256 hash bits) "
                    f"of the {self.n_compared} train and val images")
        return (f"{self.n_dropped} of {total} external images look like train or val images (<= {self.max_distance} "
                f"of 256 hash bits) and were dropped before scoring; {len(self.kept)} remain")


def external_overlap(
    external, seen, *, split: str | None = None, max_distance: int = 32, workers: int | None = None
) -> Overlap:
    """Which images of ``external`` (a Dataset; its ``split`` rows, or all) near-duplicate a train or val image
    of ``seen`` (the Dataset the model was trained on).

    External images linked to a train or val image through a chain of near-duplicates count as
    well (the components of :func:`helpers.images.near_duplicate_groups`). Unreadable files match nothing.
    """
    rows = external.manifest if split is None else external.manifest[external.manifest["split"] == split]
    rows = rows.reset_index(drop=True)
    trained = seen.manifest[seen.manifest["split"].isin(SEEN_SPLITS)].reset_index(drop=True)
    files = [str(Path(seen.root) / rel) for rel in trained["path"]] + [str(Path(external.root) / rel) for rel in rows["path"]]
    matches: dict[int, list[str]] = {}
    for group in near_duplicate_groups(Path("/"), files, max_distance=max_distance, workers=workers):
        known = [trained["path"][i] for i in group if i < len(trained)]
        if known:
            matches.update({i - len(trained): known for i in group if i >= len(trained)})
    dropped = rows.loc[sorted(matches)].assign(matches=[matches[i] for i in sorted(matches)])
    return Overlap(kept=rows.drop(index=list(matches)), dropped=dropped, n_compared=len(trained),
                   max_distance=max_distance)


def single_class_note(y_true) -> str | None:
    """What cannot be measured on a one-class set, or ``None`` when both classes are present."""
    y = to_binary(y_true)
    if len(y) == 0:
        return "no images: nothing can be measured"
    if 0 < y.sum() < len(y):
        return None
    present, absent = (POSITIVE, NEGATIVE) if y.all() else (NEGATIVE, POSITIVE)
    rate, undefined = ("sensitivity", "specificity") if y.all() else ("specificity", "sensitivity")
    return (f"the set holds {present} images only (no {absent}): AUC and {undefined} are undefined, "
            f"so only {rate} is reported, with its interval")


def external_scores(
    y_true, prob, patient_id, *, threshold: float, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """AUC, sensitivity and specificity with patient-bootstrap intervals; ``None`` with ``note`` where undefined.

    Keys: ``auc, sensitivity, specificity`` and their ``_low``/``_high``, ``n``, ``n_patients``,
    ``n_positive``, ``threshold`` and ``note`` (None when every metric is defined).
    """
    y, prob = to_binary(y_true), np.asarray(prob, float)
    note = single_class_note(y)
    record = {"n": len(y), "n_positive": int(y.sum()), "n_patients": int(pd.Series(patient_id).nunique()),
              "threshold": float(threshold), "note": note}
    if len(y) == 0:
        return record | {f"{m}{s}": None for m in ("auc", "sensitivity", "specificity") for s in ("", "_low", "_high")}
    frame = pd.DataFrame({"y_true": y, "probability": prob, "patient_id": np.asarray(patient_id).astype(str)})
    point = binary_metrics(y, prob, threshold)
    table = metrics_with_ci(frame, threshold, metrics=("auc", "sensitivity", "specificity"), n_boot=n_boot,
                            seed=seed, alpha=alpha)
    for metric, values in table.iterrows():
        defined = point[metric] is not None
        record[metric] = point[metric]
        record[f"{metric}_low"] = float(values["low"]) if defined else None
        record[f"{metric}_high"] = float(values["high"]) if defined else None
    return record
