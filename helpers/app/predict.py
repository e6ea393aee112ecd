"""Predict single images with any trained model of the course: shared by the command line, the upload demo and the tests.

>>> info = load_model("outputs/synthetic/cnn")              # doctest: +SKIP
>>> result = predict_image(info, "chest.png")               # doctest: +SKIP
>>> result.label, result.probability, result.warnings       # doctest: +SKIP

``load_model`` takes a run folder ``outputs/<dataset>/<model>/`` of either kind:
a Keras model (``model.keras``: the CNN of notebook 02, the transfer models of
notebook 03) or a VGG16-features hybrid of notebook 04 (``features.json`` and
``model.ubj`` for XGBoost or ``model.joblib`` for logistic regression: features
from the stored VGG16 settings, then the stored classifier), read through
:mod:`helpers.runs`, the one owner of run folders. ``metrics.json``
gives the threshold chosen on validation data, whether the data were synthetic
and the modality. A bare ``.keras`` file works too: its threshold is then 0.5,
and whether it came from synthetic data is known only when it is a copy of a
run folder's model (the note says which). Models are cached by path and
modification time, so the demo never reloads one per upload and a retrained
model is picked up.

``predict_image`` reads the image with the course's robust reader (its doubts,
such as a blank or multi-page image, become warnings), resizes it
to the model's input size (preprocessing is inside the model, exactly as in
training), explains the score (Grad-CAM for Keras models, occlusion
sensitivity for hybrids, which have no gradient) and adds *warnings*: simple
heuristics that the image may not be what the model was trained on.

Command line, one JSON line per image on stdout and a readable summary on stderr::

    python -m helpers predict --model outputs/synthetic/cnn image1.png image2.dcm

Exit status: 0 every file predicted, 1 some files failed (each has an ``error``
line, the others are still predicted), 2 no usable model (nothing predicted).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import runs
from helpers.evaluation.recalibration import Calibration
from helpers.images import ImageError, Source, read_image, resize, to_rgb

DEFAULT_THRESHOLD = 0.5
MAX_ASPECT = 1.5  # frontal chest X-rays and CT slices are roughly square
MIN_SIDE = 128  # pixels
COLOUR_FRACTION = 0.05  # share of clearly coloured pixels above which an image looks like a photo or figure
OCCLUSION_GRID = 5  # the hybrid's explanation covers 5 x 5 squares in turn
WHAT = {"xray": "a frontal chest X-ray", "ct": "an axial chest CT slice"}
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

    @property
    def label(self) -> str:
        """``dataset / model`` with a ``SYNTHETIC`` mark, for pickers and titles."""
        return f"{self.dataset} / {self.name}" + (" (SYNTHETIC data)" if self.synthetic else "")

    @property
    def explanation(self) -> str:
        return "Grad-CAM" if self.kind == "keras" else "occlusion sensitivity"

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Probability of COVID for ``N x size x size`` uint8 grayscale images."""
        if self.kind == "hybrid":
            return np.asarray(self.model.predict(images), np.float64).reshape(-1)
        batch = np.stack([to_rgb(image) for image in images]).astype(np.float32)
        return np.asarray(self.model(batch, training=False), np.float64).reshape(-1)


@dataclass
class Prediction:
    """The result for one image. ``probability`` is the model's probability of COVID."""

    file: str
    probability: float
    label: str  # "COVID" or "NORMAL" at ``threshold``
    threshold: float
    image: np.ndarray = field(repr=False)  # the decoded 2-D uint8 image, original size
    heatmap: np.ndarray | None = field(default=None, repr=False)  # explanation map, same size as ``image``
    explanation: str = "Grad-CAM"
    warnings: list[str] = field(default_factory=list)
    calibrated: bool = False  # probability and threshold through the run's temperature (fitted on val)

    @property
    def margin(self) -> float:
        return self.probability - self.threshold

    def to_json(self) -> dict:
        return {"file": self.file, "probability": round(self.probability, 6), "label": self.label,
                "threshold": round(self.threshold, 6), "margin": round(self.margin, 6), "calibrated": self.calibrated,
                "warnings": self.warnings}


def readable(probability: float, threshold: float) -> tuple[str, str]:
    """Both numbers with as many decimals (2 to 8) as it takes for them not to look equal when they differ."""
    for digits in range(2, 9):
        shown = f"{probability:.{digits}f}", f"{threshold:.{digits}f}"
        if shown[0] != shown[1]:
            return shown
    return shown


def describe_call(probability: float, threshold: float) -> str:
    """``probability 0.987 < threshold 0.990`` with the margin: the words every output uses for one call."""
    p, t = readable(probability, threshold)
    sign = ">=" if probability >= threshold else "<"
    return f"probability of COVID {p} {sign} threshold {t}, margin {probability - threshold:+.{len(p) - 2}f}"


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
    return ModelInfo(
        model=model, path=folder or files[0], name=str(metrics.get("model") or getattr(model, "name", "model")),
        dataset=str(metrics.get("dataset", "unknown")), threshold=float(threshold), img_size=size,
        gradcam_layer=metrics.get("gradcam_layer") or layer, synthetic=synthetic,
        modality=str(metrics.get("modality") or "xray"), threshold_note=note, kind=kind, metrics=metrics,
    )


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
    """What a user must know before reading the numbers: synthetic data, a default threshold."""
    notes = []
    if info.synthetic:
        notes.append(f"model {info.label} was trained on SYNTHETIC data; its outputs mean nothing for real patients")
    elif info.synthetic is None:
        notes.append(f"{info.path}: whether this model was trained on synthetic data is unknown (no metrics.json)")
    if info.metrics.get("threshold") is None:
        notes.append(f"threshold {info.threshold:.4f}: {info.threshold_note}")
    calibration = Calibration.from_dict(info.metrics.get("calibration"))
    if calibration is None:
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
    score = float(model_info.probabilities(small[None])[0])
    heatmap = explain(model_info, gray, small, score) if with_gradcam else None
    calibration = Calibration.from_dict(model_info.metrics.get("calibration"))
    # The temperature keeps the order, so the call at the calibrated threshold is the call at the stored one.
    probability, threshold = ((score, model_info.threshold) if calibration is None else
                              (float(calibration.apply(score)), float(calibration.apply(model_info.threshold))))
    return Prediction(
        file=name, probability=probability, label="COVID" if score >= model_info.threshold else "NORMAL",
        threshold=threshold, image=gray, heatmap=heatmap, explanation=model_info.explanation,
        warnings=[w.removeprefix(f"{name}: ") for w in doubts] + image_warnings(source, gray,
                                                                                modality=model_info.modality),
        calibrated=calibration is not None,
    )


def explain(info: ModelInfo, gray: np.ndarray, small: np.ndarray, probability: float) -> np.ndarray:
    """A 0..1 map at ``gray``'s size: Grad-CAM for a Keras model, occlusion sensitivity for a hybrid."""
    if info.kind == "keras":
        from helpers.explain import gradcam

        return gradcam(info.model, gray[None], layer=info.gradcam_layer)[0]
    return occlusion(info, small, probability, out_shape=gray.shape)


def occlusion(info: ModelInfo, small: np.ndarray, probability: float, *, out_shape: tuple[int, int],
              grid: int = OCCLUSION_GRID) -> np.ndarray:
    """How much the COVID score drops when each of ``grid x grid`` squares is covered with the mean gray."""
    size = small.shape[0]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    covered = []
    for row in range(grid):
        for col in range(grid):
            image = small.copy()
            image[edges[row]:edges[row + 1], edges[col]:edges[col + 1]] = int(small.mean())
            covered.append(image)
    drop = np.clip(probability - info.probabilities(np.stack(covered)), 0, None).reshape(grid, grid)
    drop = drop / drop.max() if drop.max() > 0 else drop
    square = Image.fromarray(drop.astype(np.float32)).resize((out_shape[1], out_shape[0]), Image.Resampling.NEAREST)
    return np.asarray(square, np.float32)


def image_warnings(source: Source, gray: np.ndarray, *, modality: str = "xray") -> list[str]:
    """Hints that an image may not be what the model was trained on (never certain: they are heuristics)."""
    what = WHAT.get(modality, WHAT["xray"])
    found = []
    height, width = gray.shape
    if max(height, width) / min(height, width) > MAX_ASPECT:
        found.append(f"The image is {width}x{height} pixels, far from square; {what} is roughly square. It may be "
                     "cropped, a multi-panel figure or another kind of image, and it is squeezed to a square here.")
    if min(height, width) < MIN_SIDE:
        found.append(f"The image is small ({width}x{height} pixels): fine detail is missing.")
    coloured = colour_fraction(source)
    if coloured > COLOUR_FRACTION:
        found.append(f"{coloured:.0%} of the pixels are clearly coloured, but {what} is grayscale: this may be a "
                     "photo, a screenshot or an annotated figure. The model never saw such images.")
    return found


def colour_fraction(source: Source) -> float:
    """Share of clearly coloured pixels (HSV saturation > 0.3 and value > 0.15) in the file, before gray conversion.

    The file is opened a second time with Pillow (the course's reader returns
    grayscale only), reduced to about 256 px; anything Pillow cannot open
    (DICOM, which is grayscale here) counts as 0.
    """
    try:
        with Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source) as image:
            image.draft("RGB", (256, 256))
            if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "F"):
                return 0.0
            image.thumbnail((256, 256))
            hsv = np.asarray(image.convert("RGB").convert("HSV"))
    except Exception:  # noqa: BLE001 - not readable by Pillow: no colour to measure
        return 0.0
    return float(np.mean((hsv[..., 1] > 0.3 * 255) & (hsv[..., 2] > 0.15 * 255)))


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
        summary.append(line.get("error") or
                       f"{line['file']}: {line['label']} ({describe_call(line['probability'], line['threshold'])})"
                       + "".join(f"; warning: {w}" for w in line["warnings"]))
    print(f"summary: {len(args.images) - failed} of {len(args.images)} file(s) predicted with {info.label}",
          *summary, sep="\n  ", file=sys.stderr)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers predict",
        description="Probability of COVID for each image, one JSON line per image. Exit status 0: every file "
                    "predicted; 1: some files failed (each has an error line); 2: no usable model. Teaching "
                    "material, not a diagnostic device.",
    )
    parser.add_argument("--model", required=True,
                        help="a run folder (outputs/<dataset>/<model>, Keras or VGG16 hybrid) or a .keras file")
    parser.add_argument("images", nargs="+", help="image files: PNG, JPEG, TIFF, BMP or DICOM")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
