"""The report's Grad-CAM sanity check (Adebayo et al. 2018), per dataset and task.

The best Keras model by validation AUC explains a few test images (:data:`PER_CLASS` of each class, the
first patients by path: the same images every time); next to its maps, those of the same network with its
top layers re-initialised, all on one colour scale, with their rank correlation
(:func:`helpers.explain.sanity.sanity_check`). A three-class model is explained on its COVID unit (the score
before the softmax): its maps are COVID against the rest, and P(COVID) decides which of the two a map shows.
The outputs record image paths relative to the dataset's folder, not the folder itself: it is looked for under
the data folder, and a folder counts only when its images give the predictions the run stored (so a changed or
regenerated file is never explained). Whatever is missing (no Keras model, no images) becomes a sentence, never
an error. TensorFlow is imported only when there is a model to explain.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import paths
from helpers.app.report_parts import best_by_val_auc, figure
from helpers.constants import POSITIVE
from helpers.images import ImageError, read_image, resize

PER_CLASS = 2  # test images of each class explained
SEARCH_DEPTH = 3  # levels of folders under the data folder where a dataset's root may be
AGREEMENT = 0.01  # largest difference from the stored probabilities for the files to count as the ones scored

TEXT = {
    "no_keras": "No Keras model among these runs (a VGG16 + XGBoost or logistic hybrid has no gradient from its "
                "classifier to the image): no Grad-CAM to check.",
    "multiclass": "; a {n}-class model, so the maps explain {positive} against the rest (its {positive} unit's score "
                  "before the softmax); the map of an image called {other} shows the evidence against it",
}
OTHER = f"not {POSITIVE}"  # a three-class model's map of a call other than COVID


def sanity_section(runs: list, *, label: str, key: str, files: Path, seed: int = 0) -> dict:
    """``{"model", "figure", "similarity", "message"}`` for the best Keras run of ``runs`` (one dataset and task:
    ``label`` in the caption, ``key`` in the file name)."""
    run = best_by_val_auc([run for run in runs if run.kind == "keras"])
    if run is None:
        return {"model": None, "figure": None, "similarity": None, "message": TEXT["no_keras"]}
    shown = {"model": run.model, "figure": None, "similarity": None, "message": None}
    rows = chosen_rows(run)
    if rows.empty:
        return {**shown, "message": f"{run.model} has no test predictions to explain."}
    from helpers.explain.sanity import sanity_check
    from helpers.plots.review import plot_sanity_check

    check = None
    try:
        model = run.keras_model()
        images, problem = scored_images(model, rows)
        if images is not None:
            check = sanity_check(model, images, seed=seed, threshold=run.threshold)
    except (OSError, ValueError) as error:  # RunError is a ValueError; so is a model Grad-CAM cannot read
        problem = str(error).rstrip(".")
    if check is None:
        return {**shown, "message": f"No sanity check for {run.model}: {problem}."}
    if run.multiclass:  # the map of a call other than COVID is the evidence against COVID, whatever the class
        check["original"] = replace(check["original"], classes=[c if c == POSITIVE else OTHER
                                                                for c in check["original"].classes])
    titles = [f"truth {truth}\np({POSITIVE}) = {p:.3f} (threshold {run.threshold:.3f})"
              for truth, p in zip(rows["label"], rows["probability"], strict=True)]
    fig = plot_sanity_check(images, check, titles=titles, synthetic=run.synthetic, panel_size=2.0)
    caption = (f"{label}: Grad-CAM of {run.model} (best validation AUC) on {len(rows)} test images, trained and with "
               f"{', '.join(check['layers'])} re-initialised, on one colour scale")
    if run.multiclass:
        caption += TEXT["multiclass"].format(n=len(run.classes), positive=POSITIVE, other=OTHER)
    similarity = ", ".join("n/a" if np.isnan(s) else f"{s:.2f}" for s in check["similarity"])
    return {**shown, "figure": figure(fig, f"sanity_{key}", caption, files), "similarity": similarity}


def chosen_rows(run, per_class: int = PER_CLASS) -> pd.DataFrame:
    """The first ``per_class`` test patients of each class (by path), one image each: the same every time.

    COVID first; then the rest (binary), or each other class in class order (three classes)."""
    test = run.split("test").sort_values("path").drop_duplicates("patient_id")
    others = [test["label"] == c for c in run.classes[:-1]] if run.multiclass else [test["y_true"] == 0]
    return pd.concat([test[chosen].head(per_class) for chosen in [test["y_true"] == 1, *others]], ignore_index=True)


def scored_images(model, rows: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """The images of ``rows`` at the model's input size, read from the folder whose files give the stored
    probabilities; else ``(None, why not)``."""
    from helpers.models import input_size

    size, wanted = input_size(model), rows["probability"].to_numpy(float)
    roots = candidate_roots([Path(p) for p in rows["path"]])
    if not roots:
        return None, (f"its test images (e.g. {rows['path'].iloc[0]}) are not on disk under {paths.data_dir()} "
                      "(prepare the dataset again to see them)")
    for root in roots:
        try:
            images = np.stack([resize(read_image(root / p, reduce_to=size), size)  # as load_images reads them
                               for p in rows["path"]])
        except ImageError:
            continue
        predicted = np.asarray(model.predict(np.repeat(images[..., None], 3, axis=3).astype(np.float32), verbose=0))
        if np.abs(predicted[:, -1] - wanted).max() <= AGREEMENT:
            return images, None
    return None, (f"the files found under {', '.join(map(str, roots[:3]))} do not give the predictions the run "
                  "stored (the images changed since it was scored)")


def candidate_roots(relative: list[Path]) -> list[Path]:
    """Folders (the data folder and those below it, :data:`SEARCH_DEPTH` levels deep) holding every file;
    for absolute paths, the file system's root when every file is there."""
    if all(p.is_absolute() for p in relative):
        return [Path(relative[0].anchor)] if all(p.is_file() for p in relative) else []
    level, found = [paths.data_dir()], []
    for _ in range(SEARCH_DEPTH + 1):
        found += [root for root in level if all((root / p).is_file() for p in relative)]
        level = [child for folder in level for child in _subfolders(folder)]
    return found


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    except OSError:
        return []
