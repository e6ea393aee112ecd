"""Predict single images with a trained model: shared by the command line, the upload demo and the tests.

>>> info = load_model("outputs/synthetic/cnn")              # doctest: +SKIP
>>> result = predict_image(info, "chest.png")               # doctest: +SKIP
>>> result.label, result.probability, result.warnings       # doctest: +SKIP

``load_model`` takes a model folder ``outputs/<dataset>/<model>/`` (it reads
``model.keras`` and ``metrics.json``: the threshold chosen on validation data,
the input size, the Grad-CAM layer, whether the data were synthetic) or a
``.keras`` file (threshold 0.5 then, and the result says so). Models are
cached by path and modification time, so the demo never reloads one per
upload and a retrained model is picked up.

``predict_image`` reads the image with the course's robust reader, resizes it
to the model's input size on three channels (preprocessing is inside the
model, exactly as in training) and adds *warnings*: simple heuristics that the
image may not be what the model was trained on. They are hints, not checks.

Command line (one JSON line per image; exit status 1 if any image failed, 2 for a bad model path)::

    python -m helpers predict --model outputs/synthetic/cnn image1.png image2.dcm
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.images import ImageError, Source, read_image, resize, to_rgb

DEFAULT_THRESHOLD = 0.5
MAX_ASPECT = 1.5  # frontal chest X-rays and CT slices are roughly square
MIN_SIDE = 128  # pixels
COLOUR_FRACTION = 0.05  # share of clearly coloured pixels above which an image looks like a photo or figure
WHAT = {"xray": "a frontal chest X-ray", "ct": "an axial chest CT slice"}


class ModelError(ValueError):
    """A model path that cannot be used; the message says what was expected and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model and what its ``metrics.json`` says about it."""

    model: object  # keras.Model
    path: Path
    name: str
    dataset: str
    threshold: float
    img_size: int
    gradcam_layer: str
    synthetic: bool
    modality: str
    threshold_note: str  # where the threshold comes from, in words
    metrics: dict = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """``dataset / model`` with a ``SYNTHETIC`` mark, for pickers and titles."""
        return f"{self.dataset} / {self.name}" + (" (SYNTHETIC data)" if self.synthetic else "")


@dataclass
class Prediction:
    """The result for one image. ``probability`` is the model's probability of COVID."""

    file: str
    probability: float
    label: str  # "COVID" or "NORMAL" at ``threshold``
    threshold: float
    image: np.ndarray = field(repr=False)  # the decoded 2-D uint8 image, original size
    heatmap: np.ndarray | None = field(default=None, repr=False)  # Grad-CAM, same size as ``image``
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"file": self.file, "probability": round(self.probability, 4), "label": self.label,
                "threshold": round(self.threshold, 4), "warnings": self.warnings}


# ---------------------------------------------------------------- loading


def load_model(path: str | os.PathLike) -> ModelInfo:
    """Load a model folder (``model.keras`` + ``metrics.json``) or a ``.keras`` file, cached; raises ``ModelError``."""
    folder, file = _model_files(Path(path).expanduser().resolve())
    metrics = folder / "metrics.json" if folder else None
    stamp = tuple(p.stat().st_mtime_ns for p in (file, metrics) if p is not None)
    return _load(file, metrics, stamp)


def _model_files(path: Path) -> tuple[Path | None, Path]:
    """``(folder with metrics.json or None, model file)`` for a folder or a ``.keras`` file."""
    hint = ("expected a model folder such as outputs/synthetic/cnn (with model.keras and metrics.json) or a .keras "
            "file; train one with notebook 02_cnn_from_scratch or 03_transfer_learning")
    if path.is_dir():
        if not (path / "model.keras").is_file():
            other = " (an XGBoost hybrid: predict works with Keras models only)" if (path / "model.ubj").exists() else ""
            raise ModelError(f"{path}: no model.keras in this folder{other}; {hint}")
        return (path if (path / "metrics.json").is_file() else None), path / "model.keras"
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder; {hint}")
    if path.suffix != ".keras":
        raise ModelError(f"{path}: not a .keras file; {hint}")
    return (path.parent if (path.parent / "metrics.json").is_file() and path.name == "model.keras" else None), path


@functools.lru_cache(maxsize=8)
def _load(file: Path, metrics_file: Path | None, stamp: tuple) -> ModelInfo:  # stamp: mtimes, part of the cache key
    import keras

    import helpers.models as models  # registers the course's custom layers for deserialisation

    try:
        model = keras.models.load_model(file, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        raise ModelError(f"{file}: cannot load this Keras model ({type(exc).__name__}: {exc})") from exc
    metrics = json.loads(metrics_file.read_text()) if metrics_file else {}
    threshold = metrics.get("threshold")
    note = (f"{metrics.get('threshold_rule') or 'chosen on the validation split'}" if threshold is not None else
            "no metrics.json next to the model: the default 0.5, not a threshold chosen on validation data")
    return ModelInfo(
        model=model, path=metrics_file.parent if metrics_file else file, name=metrics.get("model", model.name),
        dataset=metrics.get("dataset", "unknown"), threshold=float(DEFAULT_THRESHOLD if threshold is None else threshold),
        img_size=models.input_size(model), gradcam_layer=metrics.get("gradcam_layer") or models.gradcam_layer(model),
        synthetic=bool(metrics.get("synthetic", False)), modality=metrics.get("modality") or "xray",
        threshold_note=note, metrics=metrics,
    )


# ---------------------------------------------------------------- predicting


def predict_image(model_info: ModelInfo, source: Source, *, name: str | None = None,
                  with_gradcam: bool = True) -> Prediction:
    """Predict one image (a path or the file's bytes); raises ``helpers.images.ImageError`` when it cannot be read."""
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    gray = read_image(source, name=name)
    batch = to_rgb(resize(gray, model_info.img_size))[None].astype(np.float32)
    probability = float(np.asarray(model_info.model(batch, training=False)).reshape(-1)[0])
    heatmap = None
    if with_gradcam:
        from helpers.explain import gradcam

        heatmap = gradcam(model_info.model, gray[None], layer=model_info.gradcam_layer)[0]
    return Prediction(
        file=name, probability=probability, label="COVID" if probability >= model_info.threshold else "NORMAL",
        threshold=model_info.threshold, image=gray, heatmap=heatmap,
        warnings=image_warnings(source, gray, modality=model_info.modality),
    )


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


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers predict --model PATH IMAGE...``: one JSON line per image on stdout."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        info = load_model(args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if info.synthetic:
        print(f"note: model {info.label} was trained on SYNTHETIC data; its outputs mean nothing for real patients",
              file=sys.stderr)
    failed = False
    for image in args.images:
        try:
            line = predict_image(info, image, with_gradcam=False).to_json()
        except ImageError as exc:
            line, failed = {"file": image, "error": str(exc)}, True
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers predict",
        description="Probability of COVID for each image, one JSON line per image. Teaching material, not a "
                    "diagnostic device.",
    )
    parser.add_argument("--model", required=True, help="a model folder (outputs/<dataset>/<model>) or a .keras file")
    parser.add_argument("images", nargs="+", help="image files: PNG, JPEG, TIFF, BMP or DICOM")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
