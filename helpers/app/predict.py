"""Predict single images with any trained model of the course: shared by the command line, the upload demo and the tests.

>>> info = load_model("outputs/synthetic/cnn")              # doctest: +SKIP
>>> result = predict_image(info, "chest.png")               # doctest: +SKIP
>>> result.label, result.probability, result.warnings       # doctest: +SKIP
>>> result.probabilities                                    # doctest: +SKIP
{'NORMAL': 0.21, 'PNEUMONIA': 0.62, 'COVID': 0.17}

``load_model`` takes a run folder ``outputs/<dataset>/<model>/`` of either kind:
a Keras model (``model.keras``: the CNN of notebook 02, the transfer models of
notebook 03) or a VGG16-features hybrid of notebook 04 (``features.json`` and
``model.ubj`` for XGBoost or ``model.joblib`` for logistic regression: features
from the stored VGG16 settings, then the stored classifier), read through
:mod:`helpers.runs`, the one owner of run folders. ``metrics.json``
gives the threshold chosen on validation data, whether the data were synthetic,
the modality, the task and its classes (``task``, ``classes``; a run saved
before tasks is ``covid-vs-normal``, NORMAL and COVID). A bare ``.keras`` file
works too: its threshold is then 0.5, its classes those of its output units (1:
NORMAL, COVID; 3: NORMAL, PNEUMONIA, COVID), and whether it came from synthetic
data is known only when it is a copy of a run folder's model (the note says which). Models are cached by path and
modification time, so the demo never reloads one per upload and a retrained
model is picked up.

``predict_image`` reads the image with the course's robust reader (its doubts,
such as a blank or multi-page image, become warnings), resizes it
to the model's input size (preprocessing is inside the model, exactly as in
training), explains the score (Grad-CAM for Keras models, occlusion
sensitivity for hybrids, which have no gradient) and adds *warnings*: simple
heuristics that the image may not be what the model was trained on. The
result (:class:`helpers.app.calls.Prediction`) carries the probability of COVID,
the call at the run's threshold (:func:`helpers.app.calls.decide`) and, for a
three-class model, every class's probability in class order (NORMAL,
PNEUMONIA, COVID) and the most probable class.

Calibration: a binary run's stored temperature (fitted on val) is applied to the
probability of COVID and to the threshold (the call is unchanged). A three-class
run's scores are the model's own softmax, *not calibrated*: its stored
temperature was fitted for P(COVID) against the rest, and applying it to one
class would break the sum to 1; the notes and the demo card say so.

Command line, one JSON line per image on stdout and a readable summary on stderr::

    python -m helpers predict --model outputs/synthetic/cnn image1.png image2.dcm

The line's binary fields (``probability`` of COVID, ``label``, ``threshold``,
``margin``, ``calibrated``, ``warnings``) are the same for every task; a
three-class model adds ``probabilities`` ({class: p}, summing to 1) and
``most_probable``.

Exit status: 0 every file predicted, 1 some files failed (each has an ``error``
line, the others are still predicted), 2 no usable model (nothing predicted).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers import runs
from helpers.app.calls import Prediction, decide, describe_call, describe_classes
from helpers.app.checks import image_warnings
from helpers.app.explanations import covid_score_model, explain
from helpers.constants import LABELS
from helpers.data.tasks import DEFAULT_TASK, TASKS
from helpers.evaluation.recalibration import Calibration
from helpers.images import ImageError, Source, read_image, resize, to_rgb

DEFAULT_THRESHOLD = 0.5
MULTICLASS_THRESHOLD = ("the COVID call compares P(COVID) with the run's threshold, chosen on the validation "
                        "split for COVID against the other classes (the temperature stored with the run was fitted "
                        "for that binary probability and is not applied to the three scores)")
HINT = ("expected a model folder such as outputs/synthetic/cnn or outputs/synthetic/vgg16-xgboost (with metrics.json) "
        "or a .keras file; train one with notebook 02_cnn_from_scratch, 03_transfer_learning or 04_vgg16_xgboost_hybrid")


class ModelError(ValueError):
    """A model path that cannot be used; the message says what was expected and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model (Keras or hybrid) and what its ``metrics.json`` says about it."""

    model: object  # keras.Model, or helpers.models.hybrid.Hybrid when kind == "hybrid"
    path: Path
    name: str
    dataset: str
    threshold: float
    img_size: int
    gradcam_layer: str | None  # None for a hybrid
    synthetic: bool | None  # None: unknown (a bare .keras file)
    modality: str
    threshold_note: str  # where the threshold comes from, in words
    kind: str = "keras"  # "keras" or "hybrid"
    metrics: dict = field(default_factory=dict, repr=False)
    classes: tuple[str, ...] = LABELS  # class-index order; COVID, the positive class, last
    gradcam_model: object = field(default=None, repr=False)  # what Grad-CAM explains (helpers.app.explanations)

    @property
    def task(self) -> str:
        """The task whose classes these are (:mod:`helpers.data.tasks`)."""
        return next((t.name for t in TASKS.values() if t.classes == self.classes), " / ".join(self.classes))

    @property
    def multiclass(self) -> bool:
        return len(self.classes) > 2

    @property
    def label(self) -> str:
        """``dataset / run`` with the classes of a task other than the default and a ``SYNTHETIC`` mark."""
        return (f"{self.dataset} / {self.name}" + ("" if self.task == DEFAULT_TASK else f" ({' / '.join(self.classes)})")
                + (" (SYNTHETIC data)" if self.synthetic else ""))

    @property
    def explanation(self) -> str:
        return "Grad-CAM" if self.kind == "keras" else "occlusion sensitivity"

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``N x classes`` probabilities in class order for ``N x size x size`` uint8 images (binary: ``[1 - p, p]``)."""
        if self.kind == "hybrid":
            out = np.asarray(self.model.predict(images), np.float64)
        else:
            batch = np.stack([to_rgb(image) for image in images]).astype(np.float32)
            out = np.asarray(self.model(batch, training=False), np.float64)
        if out.ndim == 1 or out.shape[-1] == 1:
            covid = out.reshape(-1)
            out = np.stack([1 - covid, covid], axis=1)
        if out.shape[1] != len(self.classes):
            raise ModelError(f"{self.path}: the model gives {out.shape[1]} probabilities per image but its run has "
                             f"{len(self.classes)} classes {list(self.classes)}; train it again")
        return out


# ---------------------------------------------------------------- loading


def load_model(path: str | os.PathLike) -> ModelInfo:
    """Load a run folder (Keras or hybrid) or a ``.keras`` file, cached; raises ``ModelError``."""
    kind, folder, files = _run_files(Path(path).expanduser().resolve())
    stamp = tuple(p.stat().st_mtime_ns if p.exists() else None for p in files)
    return _load(kind, folder, files, stamp)


def _run_files(path: Path) -> tuple[str, Path | None, tuple[Path, ...]]:
    """``(kind, run folder or None, the files the model is made of)`` for a folder or a ``.keras`` file."""
    if path.is_dir():
        file = runs.model_file(path)
        if file is None:
            missing = " but no model.ubj or model.joblib" if (path / "features.json").is_file() else ""
            raise ModelError(f"{path}: no model in this folder (model.keras, or features.json{missing} for a "
                             f"hybrid); {HINT}")
        kind = runs.MODEL_FILES[file.name]
        parts = [path / "features.json"] if kind == "hybrid" else []
        return kind, path, (file, *parts, path / "metrics.json", path / "predictions.csv")
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder; {HINT}")
    if not path.is_file() or path.suffix != ".keras":
        raise ModelError(f"{path}: not a .keras file; {HINT}")
    if path.name == "model.keras" and (path.parent / "metrics.json").is_file():
        return _run_files(path.parent)
    return "keras", None, (path,)


def _read_run(folder: Path) -> runs.Run:
    """The run in ``folder`` through :func:`helpers.runs.read_run`; ``ModelError`` when it cannot be used."""
    try:
        return runs.read_run(folder)
    except runs.RunError as exc:
        raise ModelError(str(exc)) from None


@functools.lru_cache(maxsize=8)
def _load(kind: str, folder: Path | None, files: tuple[Path, ...], stamp: tuple) -> ModelInfo:  # stamp: cache key
    run = _read_run(folder) if folder else None
    model, size, layer = _load_hybrid(folder) if kind == "hybrid" else _load_keras(files[0])
    metrics = run.metrics if run else {}
    if run:
        threshold, note, synthetic = run.threshold, run.threshold_rule, run.synthetic
    else:
        threshold, synthetic = DEFAULT_THRESHOLD, _copy_of_run(files[0])
        note = "no metrics.json next to the model: the default 0.5, not a threshold chosen on validation data"
    classes = _classes(run.classes if run else None, None if kind == "hybrid" else int(model.output_shape[-1]),
                       folder or files[0])
    explained = None if kind == "hybrid" else covid_score_model(model) if len(classes) > 2 else model
    return ModelInfo(
        model=model, path=folder or files[0], name=run.name if run else str(getattr(model, "name", "model")),
        dataset=str(metrics.get("dataset", "unknown")), threshold=float(threshold), img_size=size,
        gradcam_layer=metrics.get("gradcam_layer") or layer, synthetic=synthetic,
        modality=str(metrics.get("modality") or "xray"), threshold_note=note, kind=kind, metrics=metrics,
        classes=classes, gradcam_model=explained,
    )


def _classes(stored: tuple[str, ...] | None, outputs: int | None, where: Path) -> tuple[str, ...]:
    """The run's classes (:attr:`helpers.runs.Run.classes`); a bare ``.keras`` file: those of the task its
    ``outputs`` answer (3 units: three-class, 1: the default task)."""
    classes = stored or next((t.classes for t in TASKS.values() if len(t.classes) == outputs), LABELS)
    if outputs is not None and outputs != (1 if len(classes) == 2 else len(classes)):
        raise ModelError(f"{where}: the model has {outputs} output unit(s) but its run has the classes "
                         f"{list(classes)} (1 sigmoid unit for two classes, one softmax unit per class otherwise); "
                         "train it again")
    return classes


def _load_keras(file: Path):
    import keras

    import helpers.models as models  # registers the course's custom layers for deserialisation

    try:
        model = keras.models.load_model(file, compile=False)
        return model, models.input_size(model), models.gradcam_layer(model)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        raise ModelError(f"{file}: cannot load this Keras model ({type(exc).__name__}: {exc})") from exc


def _load_hybrid(folder: Path):
    from helpers.models.hybrid import load_hybrid

    try:
        hybrid = load_hybrid(folder)
        return hybrid, int(hybrid.spec["size"]), None
    except Exception as exc:  # a damaged booster, JSON or spec: the folder cannot be used
        raise ModelError(f"{folder}: cannot load this hybrid ({type(exc).__name__}: {exc}); train it again") from exc


def _copy_of_run(file: Path) -> bool | None:
    """Whether a bare ``.keras`` file is a byte copy of a run's synthetic model; None when no run matches."""
    try:
        size, digest = file.stat().st_size, None
        for folder in runs.run_folders(kind="keras"):
            candidate = folder / "model.keras"
            if candidate.stat().st_size == size:
                digest = digest or _sha256(file)
                if _sha256(candidate) == digest:
                    return bool(runs.read_metrics(folder).get("synthetic"))
    except (OSError, runs.RunError):
        return None
    return None


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def model_notes(info: ModelInfo) -> list[str]:
    """What a user must know before reading the numbers: synthetic data, a default threshold, calibration."""
    notes = []
    if info.synthetic:
        notes.append(f"model {info.label} was trained on SYNTHETIC data; its outputs mean nothing for real patients")
    elif info.synthetic is None:
        notes.append(f"{info.path}: whether this model was trained on synthetic data is unknown (no metrics.json)")
    if info.metrics.get("threshold") is None:
        notes.append(f"threshold {info.threshold:.4f}: {info.threshold_note}")
    calibration = Calibration.from_dict(info.metrics.get("calibration"))
    if info.multiclass:
        notes.append(f"{len(info.classes)} classes ({', '.join(info.classes)}): the probabilities are the model's own "
                     f"softmax scores, not calibrated; {MULTICLASS_THRESHOLD}")
    elif calibration is None:
        notes.append("the probability is the model's own score, not calibrated (no temperature stored with the run)")
    elif calibration.note:
        notes.append(f"calibration: {calibration.note}")
    return notes


# ---------------------------------------------------------------- predicting


def predict_image(model_info: ModelInfo, source: Source, *, name: str | None = None,
                  with_gradcam: bool = True) -> Prediction:
    """Predict one image (a path or the file's bytes); raises ``helpers.images.ImageError`` when it cannot be read.

    ``with_gradcam=False`` skips the explanation (Grad-CAM, or occlusion sensitivity for a hybrid).
    """
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    doubts: list[str] = []
    gray = read_image(source, name=name, warnings=doubts)
    small = resize(gray, model_info.img_size)
    scores = model_info.probabilities(small[None])[0]
    score = float(scores[-1])
    heatmap = explain(model_info, gray, small, score) if with_gradcam else None
    # Three classes: the softmax as it is (module docstring). Two: the temperature keeps the order,
    # so the call at the calibrated threshold is the call at the stored one.
    calibration = None if model_info.multiclass else Calibration.from_dict(model_info.metrics.get("calibration"))
    probability, threshold = ((score, model_info.threshold) if calibration is None else
                              (float(calibration.apply(score)), float(calibration.apply(model_info.threshold))))
    return Prediction(
        file=name, probability=probability, label=decide(scores, model_info.threshold, model_info.classes),
        threshold=threshold, image=gray, heatmap=heatmap, explanation=model_info.explanation,
        warnings=[w.removeprefix(f"{name}: ") for w in doubts] + image_warnings(source, gray,
                                                                                modality=model_info.modality),
        calibrated=calibration is not None, classes=model_info.classes,
        probabilities=dict(zip(model_info.classes, map(float, scores), strict=True)) if model_info.multiclass else None,
    )


# ---------------------------------------------------------------- command line


def predict_file(info: ModelInfo, image: str) -> dict:
    """The JSON line of one file: its prediction, or its error whatever went wrong (one file never ends a batch)."""
    try:
        return predict_image(info, image, with_gradcam=False).to_json()
    except ImageError as exc:
        return {"file": image, "error": str(exc)}
    except MemoryError:
        return {"file": image, "error": f"{image}: not enough memory to read this image; downscale it first"}
    except Exception as exc:  # noqa: BLE001 - any reader or model failure is this file's error, not the batch's
        return {"file": image, "error": f"{image}: could not predict ({type(exc).__name__}: {exc})"}


def summary_line(line: dict) -> str:
    """``file: LABEL (class probabilities; the COVID call)`` and the warnings: stderr's words for one JSON line."""
    classes = f"{describe_classes(line['probabilities'])}; " if "probabilities" in line else ""
    return (f"{line['file']}: {line['label']} ({classes}{describe_call(line['probability'], line['threshold'])})"
            + "".join(f"; warning: {w}" for w in line["warnings"]))


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers predict --model PATH IMAGE...``: one JSON line per image on stdout; see the exit codes above."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        info = load_model(args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in model_notes(info):
        print(f"note: {note}", file=sys.stderr)
    summary, failed = [], 0
    for image in args.images:
        line = predict_file(info, image)
        print(json.dumps(line), flush=True)
        failed += "error" in line
        summary.append(line.get("error") or summary_line(line))
    print(f"summary: {len(args.images) - failed} of {len(args.images)} file(s) predicted with {info.label}",
          *summary, sep="\n  ", file=sys.stderr)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers predict",
        description="Probability of COVID for each image (and every class's probability for a three-class "
                    "model), one JSON line per image. Exit status 0: every file "
                    "predicted; 1: some files failed (each has an error line); 2: no usable model. Teaching "
                    "material, not a diagnostic device.",
    )
    parser.add_argument("--model", required=True,
                        help="a run folder (outputs/<dataset>/<model>, Keras or VGG16 hybrid) or a .keras file")
    parser.add_argument("images", nargs="+", help="image files: PNG, JPEG, TIFF, BMP or DICOM")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
