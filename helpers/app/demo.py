"""The upload demo: an ipywidgets app that predicts uploaded chest images and shows Grad-CAM.

>>> app = UploadDemo()          # doctest: +SKIP
>>> display(app.widget)         # doctest: +SKIP

It lists every trained model under ``outputs/<dataset>/<model>/`` (a
``model.keras`` with its ``metrics.json``), predicts each uploaded file with
:func:`helpers.app.predict.predict_image` and shows, per file, the image next to
its Grad-CAM overlay, the probability on a bar with the threshold marked, what
that threshold means, warnings about the image, and a loud note when the model
was trained on synthetic data. Uploads are processed in memory and never
written to disk; a file that is too large, empty or not an image gives a
message in the widget, never a traceback.

The callbacks are plain methods (``on_upload(change)``, ``process(files)``) so
tests and headless notebook runs can drive them without a browser. Works with
ipywidgets 7 (Colab) and 8 (see :func:`uploaded_files`).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from helpers import paths
from helpers.app.predict import ModelError, ModelInfo, Prediction, load_model, predict_image
from helpers.constants import DISCLAIMER
from helpers.images import ImageError

ACCEPT = ".png,.jpg,.jpeg,.dcm,.dicom,.tif,.tiff,.bmp"
DISPLAY_SIDE = 512  # longest side of the images drawn in a result card
THRESHOLD_MEANING = ("chosen on the validation split to balance sensitivity and specificity; "
                     "above it the model calls the image COVID")
GRADCAM_MEANING = ("Grad-CAM colours the regions that pushed the score towards COVID (red: most). It shows where "
                   "the model looked, not where disease is; colour on the borders, corners or text is a warning sign.")
SYNTHETIC_WARNING = ("SYNTHETIC MODEL: trained on generated cartoon images, not real patients. "
                     "Its output on a real image means nothing.")
NO_MODEL = ("No trained model found under {folder}. Run notebook 02_cnn_from_scratch (a small CNN, a few minutes) or "
            "03_transfer_learning first, then run this notebook again.")
COLOURS = {"COVID": "#c0392b", "NORMAL": "#2e7d32"}


# ---------------------------------------------------------------- uploads and models


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each file in a ``FileUpload.value``, for ipywidgets 7 and 8.

    ipywidgets 7: a dict ``name -> {"metadata": {"name", "type", "size", ...}, "content": bytes}``.
    ipywidgets 8: a tuple of dicts with ``name``, ``type``, ``size``, ``content`` (a memoryview).
    """
    if isinstance(value, dict):
        return [(item.get("metadata", {}).get("name", name), bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value or ()]


def find_models(output_dir: str | Path | None = None) -> list[Path]:
    """Model folders under ``output_dir`` (default ``outputs/``): ``<dataset>/<model>/`` with metrics.json and model.keras."""
    root = Path(output_dir) if output_dir else paths.output_dir()
    return sorted(p.parent for p in root.glob("*/*/metrics.json") if (p.parent / "model.keras").is_file())


def model_folder(dataset: str, model: str = "cnn", *, output_dir: str | Path | None = None) -> Path | None:
    """``outputs/<dataset>/<model>/`` if a Keras model was saved there, else None."""
    folder = (Path(output_dir) if output_dir else paths.output_dir()) / dataset / model
    return folder if (folder / "metrics.json").is_file() and (folder / "model.keras").is_file() else None


def _metrics(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _folder_label(folder: Path) -> str:
    synthetic = " (SYNTHETIC)" if _metrics(folder).get("synthetic") else ""
    return f"{folder.parent.name} / {folder.name}{synthetic}"


# ---------------------------------------------------------------- the app


class UploadDemo:
    """Upload chest images, pick a trained model, see its prediction and Grad-CAM; display ``app.widget``.

    ``model`` preselects a model folder; ``max_bytes`` is the largest upload
    accepted (checked before decoding); ``with_gradcam=False`` skips Grad-CAM.
    """

    def __init__(self, output_dir: str | Path | None = None, *, max_bytes: int = 20_000_000,
                 model: str | Path | None = None, with_gradcam: bool = True):
        self.output_dir = Path(output_dir) if output_dir else paths.output_dir()
        self.max_bytes, self.with_gradcam = max_bytes, with_gradcam
        self.models = find_models(self.output_dir)
        self.upload = widgets.FileUpload(accept=ACCEPT, multiple=True, description="Upload images")
        self.picker = widgets.Dropdown(
            options=[(_folder_label(f), str(f)) for f in self.models], description="Model",
            value=self._initial(model), disabled=not self.models, layout=widgets.Layout(width="480px"),
        )
        self.header = widgets.HTML(_box(f"<b>{html.escape(DISCLAIMER)}</b>", "#fff3cd", "#856404"))
        self.model_note = widgets.HTML(self.model_html())
        self.help = widgets.HTML(
            f"<p>Upload one or more images ({ACCEPT.replace(',', ' ')}, up to {max_bytes / 1e6:.0f} MB each). "
            "They are processed in memory and never saved.</p>")
        self.results = widgets.VBox()
        self.widget = widgets.VBox([self.header, self.picker, self.model_note, self.upload, self.help, self.results])
        self.upload.observe(self.on_upload, names="value")
        self.picker.observe(self.on_pick, names="value")

    def _initial(self, model: str | Path | None) -> str | None:
        """The folder to preselect: ``model`` when it is one of the listed folders, else the first."""
        wanted = Path(model).resolve() if model is not None else None
        matches = [folder for folder in self.models if folder.resolve() == wanted]
        return str((matches or self.models)[0]) if self.models else None

    # callbacks ----------------------------------------------------

    def on_upload(self, change: dict) -> None:
        """``FileUpload`` observer: process the files of the new value."""
        self.process(uploaded_files(change["new"]))

    def on_pick(self, change: dict) -> None:
        """``Dropdown`` observer: describe the chosen model."""
        self.model_note.value = self.model_html()

    def process(self, files: list[tuple[str, bytes]]) -> list[str]:
        """Predict each ``(name, bytes)`` and show one card per file; returns the cards' HTML."""
        if files:
            self.results.children = (widgets.HTML(f"<p>Working on {len(files)} file(s)...</p>"),)
        cards = [self.card(name, data) for name, data in files]
        self.results.children = tuple(widgets.HTML(card) for card in cards)
        return cards

    # content ------------------------------------------------------

    def card(self, name: str, data: bytes) -> str:
        """The HTML card of one upload: the result, or a friendly message saying what went wrong."""
        problem = self._problem(data)
        if problem:
            return message_card(name, problem)
        try:
            info = load_model(self.picker.value)
            prediction = predict_image(info, data, name=name, with_gradcam=self.with_gradcam)
        except (ImageError, ModelError) as exc:
            return message_card(name, str(exc).removeprefix(f"{name}: "))
        except Exception as exc:  # noqa: BLE001 - a widget shows a message, never a traceback
            return message_card(name, f"unexpected problem ({type(exc).__name__}: {exc}); try another file")
        return result_card(prediction, info)

    def _problem(self, data: bytes) -> str | None:
        if not self.models:
            return NO_MODEL.format(folder=self.output_dir)
        if not data:
            return "the file is empty (0 bytes); choose it again, or check that it opens on your computer"
        if len(data) > self.max_bytes:
            return (f"the file is {len(data) / 1e6:.1f} MB, above the limit of {self.max_bytes / 1e6:.0f} MB; "
                    "export a smaller PNG or JPEG (1024 px is plenty)")
        return None

    def model_html(self) -> str:
        """What the chosen model is, its threshold, and the synthetic warning where it applies."""
        if not self.models:
            return _box(html.escape(NO_MODEL.format(folder=self.output_dir)), "#f8d7da", "#721c24")
        metrics = _metrics(Path(self.picker.value))
        auc = (metrics.get("test") or {}).get("auc")
        threshold = metrics.get("threshold")
        text = (f"Model <b>{html.escape(str(metrics.get('model', '?')))}</b> trained on "
                f"<b>{html.escape(str(metrics.get('dataset', '?')))}</b> ({metrics.get('modality', 'xray')}), "
                f"input {metrics.get('img_size', '?')} px" + (f", test AUC {auc:.2f}" if auc is not None else "")
                + (f". Threshold {threshold:.2f}: {THRESHOLD_MEANING}." if threshold is not None else "."))
        warning = _box(f"<b>{SYNTHETIC_WARNING}</b>", "#f8d7da", "#721c24") if metrics.get("synthetic") else ""
        return f"<p>{text}</p>{warning}"

    def show(self, files: list[tuple[str, bytes]]):
        """``process(files)``, returned as static HTML too: for headless runs and viewers where widgets do not render."""
        from IPython.display import HTML

        return HTML("".join(self.process(files)))


# ---------------------------------------------------------------- HTML pieces


def result_card(prediction: Prediction, info: ModelInfo) -> str:
    """Image and Grad-CAM on the left; the probability bar, the threshold and what it means, warnings on the right."""
    p, colour = prediction, COLOURS[prediction.label]
    details = [
        probability_bar(p.probability, p.threshold, colour=colour),
        f"<p>Threshold {p.threshold:.2f}: {_threshold_meaning(info)}.</p>",
        f"<p style='color:#555'>{GRADCAM_MEANING}</p>" if p.heatmap is not None else "",
        _warnings_html(p.warnings),
    ]
    return _card(
        f"<b>{html.escape(p.file)}</b>: the model says <b style='color:{colour}'>{p.label}</b> "
        f"(probability of COVID {p.probability:.2f})"
        + (_box(f"<b>{SYNTHETIC_WARNING}</b>", "#f8d7da", "#721c24") if info.synthetic else "")
        + "<div style='display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start'>"
        f"<img src='data:image/jpeg;base64,{_figure_jpeg(p)}' style='max-width:100%'>"
        f"<div style='flex:1;min-width:260px'>{''.join(details)}</div></div>"
    )


def message_card(name: str, message: str) -> str:
    """A friendly message for an upload that could not be predicted."""
    return _card(f"<b>{html.escape(name)}</b>: could not use this file.<br>{html.escape(message)}", border="#c0392b")


def probability_bar(probability: float, threshold: float, *, colour: str = "#555") -> str:
    """A horizontal bar filled to ``probability`` with a dashed line at ``threshold``."""
    return (
        "<div style='position:relative;height:18px;background:#eee;border-radius:3px;margin:6px 0'>"
        f"<div style='width:{100 * probability:.1f}%;height:100%;background:{colour};border-radius:3px'></div>"
        f"<div title='threshold' style='position:absolute;left:{100 * threshold:.1f}%;top:-4px;bottom:-4px;"
        "border-left:2px dashed #000'></div></div>"
        "<div style='display:flex;justify-content:space-between;font-size:80%;color:#555'>"
        f"<span>0 (NORMAL)</span><span>dashed line: threshold {threshold:.2f}</span><span>1 (COVID)</span></div>"
    )


def _threshold_meaning(info: ModelInfo) -> str:
    if info.metrics.get("threshold") is None:
        return f"{info.threshold_note}; above it the model calls the image COVID"
    return THRESHOLD_MEANING


def _warnings_html(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return _box(f"<b>Is this the right kind of image?</b><ul style='margin:4px 0'>{items}</ul>", "#fff3cd", "#856404")


def _figure_jpeg(prediction: Prediction) -> str:
    """The image next to its Grad-CAM overlay, as a base64 JPEG drawn in memory (at most DISPLAY_SIDE px)."""
    from helpers.plots import plot_gradcam_grid

    image = Image.fromarray(prediction.image)
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    gray = np.asarray(image)
    size = f"uploaded ({prediction.image.shape[1]}x{prediction.image.shape[0]} px)"
    if prediction.heatmap is None:
        fig = plot_gradcam_grid([gray], [None], [size])
    else:
        fig = plot_gradcam_grid([gray, gray], [None, prediction.heatmap], [size, "Grad-CAM"])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=80, pil_kwargs={"quality": 85})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _box(content: str, background: str, colour: str) -> str:
    return (f"<div style='background:{background};color:{colour};padding:6px 10px;border-radius:4px;margin:4px 0'>"
            f"{content}</div>")


def _card(content: str, *, border: str = "#bbb") -> str:
    return (f"<div style='border:1px solid {border};border-radius:6px;padding:8px 12px;margin:8px 0;"
            f"max-width:920px'>{content}</div>")


# ---------------------------------------------------------------- for the notebook


def _sample_rows(dataset, n: int, split: str):
    """``n`` rows of ``split``, half COVID and half NORMAL, one image per patient."""
    rows = dataset.split(split).drop_duplicates("patient_id")
    return rows.groupby("label", group_keys=False).head(max(1, n // 2)).head(n)


def sample_files(dataset, *, n: int = 4, split: str = "test") -> list[Path]:
    """``n`` image files of ``split``, half COVID and half NORMAL (never seen in training or threshold choice)."""
    return [Path(dataset.root) / rel for rel in _sample_rows(dataset, n, split)["path"]]


def sample_uploads(dataset, *, n: int = 4, split: str = "test") -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of :func:`sample_files` as an upload gives them; the name tells the true label."""
    rows = _sample_rows(dataset, n, split)
    return [(f"{Path(rel).name} (true label: {label})", (Path(dataset.root) / rel).read_bytes())
            for rel, label in zip(rows["path"], rows["label"], strict=True)]


def train_quick_model(dataset, *, name: str = "cnn", img_size: int = 64, epochs: int = 8,
                      learning_rate: float = 3e-3) -> Path:
    """Train a small CNN on ``dataset`` and save it to ``outputs/<dataset>/<name>/`` (for SMOKE runs without one)."""
    from helpers.images import load_images
    from helpers.runs import quick_cnn

    print(f"training a quick {img_size}px CNN on {dataset.name} ({epochs} epochs) for the demo ...")
    return quick_cnn(dataset, load_images(dataset, img_size, progress=False), epochs=epochs, batch_size=16,
                     learning_rate=learning_rate, name=name).path
