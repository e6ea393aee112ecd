"""The upload demo: an ipywidgets app that predicts uploaded chest images with any trained model and explains them.

>>> app = UploadDemo()          # doctest: +SKIP
>>> display(app.widget)         # doctest: +SKIP

It lists every run folder under ``outputs/<dataset>/<run>/`` that holds a
model (the CNN, the transfer models, the VGG16 + XGBoost / logistic hybrids),
of every task (a run of a task other than ``covid-vs-normal`` is labelled with
its classes, e.g. ``synthetic / cnn-three-class (NORMAL / PNEUMONIA / COVID)``),
predicts each uploaded file with :func:`helpers.app.predict.predict_image` and
shows one card per file (see :mod:`helpers.app.cards`). Choosing another model
predicts the files on display again; uploading the same file again predicts it
again. Uploads are processed in memory and never written to disk; a file that
is too large, empty or not an image gives a message in the widget, never a
traceback. Opening the demo writes nothing: it reads the models and
predictions that exist (:func:`choose_model`, :func:`sample_uploads`), and
only when there is no model at all :func:`quick_model` trains one into its own
folder ``outputs/demo/``.

``make demo`` serves notebook 06 with Voilà (see the Makefile): its websocket
accepts messages above :data:`MAX_BYTES`, so the app's own size message can
appear. The callbacks are plain methods (``on_upload(change)``,
``process(files)``) so tests and headless runs can drive them without a
browser. Works with ipywidgets 7 (Colab) and 8 (see :func:`uploaded_files`).
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import warnings
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd

from helpers import paths, runs
from helpers.app.cards import RED, SYNTHETIC_WARNING, THRESHOLD_MEANING, YELLOW, box, message_card, result_card
from helpers.app.predict import ModelError, load_model, predict_image
from helpers.constants import DISCLAIMER
from helpers.data.tasks import DEFAULT_TASK, get_task
from helpers.images import ImageError

ACCEPT = ".png,.jpg,.jpeg,.dcm,.dicom,.tif,.tiff,.bmp"
MAX_BYTES = 20_000_000  # the largest upload accepted; `make demo` lets the websocket carry more than this
MODEL_VARIABLE = "COURSE_DEMO_MODEL"  # a run folder to preselect (`make demo MODEL=...`)
QUICK_FOLDER = "demo"  # outputs/demo/<dataset>/<model>/: the quick model trained when there is none
NO_MODEL = ("No trained model found under {folder}. Run notebook 02_cnn_from_scratch (a small CNN, a few minutes), "
            "03_transfer_learning or 04_vgg16_xgboost_hybrid first, then open this demo again.")


# ---------------------------------------------------------------- uploads and models


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each file in a ``FileUpload.value``, for ipywidgets 7 and 8.

    ipywidgets 7: a dict ``name -> {"metadata": {"name", "type", "size", ...}, "content": bytes}``.
    ipywidgets 8: a tuple of dicts with ``name``, ``type``, ``size``, ``content`` (a memoryview).
    """
    if isinstance(value, dict):
        return [(item.get("metadata", {}).get("name", name), bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value or ()]


def run_folders(output_dir: str | Path | None = None) -> list[Path]:
    """Run folders under ``output_dir`` that hold a model (Keras or hybrid): :func:`helpers.runs.run_folders`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a broken run is left out of the picker; `helpers predict` says why
        return runs.run_folders(Path(output_dir) if output_dir else None)


def _metrics(folder: Path) -> dict:
    try:
        return runs.read_metrics(folder)
    except runs.RunError:
        return {}


def _is_hybrid(folder: Path) -> bool:
    file = runs.model_file(folder)
    return file is not None and runs.MODEL_FILES[file.name] == "hybrid"


def task_of(metrics: dict) -> tuple[str, tuple[str, ...]]:
    """A run's task and classes from its ``metrics.json`` (a run saved before tasks: the default task)."""
    task = str(metrics.get("task") or DEFAULT_TASK)
    return task, tuple(metrics.get("classes") or get_task(task).classes)


def folder_label(folder: Path) -> str:
    """``dataset / run``, the kind, the classes of a task other than the default, the synthetic mark."""
    metrics = _metrics(folder)
    kind = " (VGG16 features hybrid)" if _is_hybrid(folder) else ""
    task, classes = task_of(metrics)
    classes = "" if task == DEFAULT_TASK else f" ({' / '.join(classes)})"
    return f"{folder.parent.name} / {folder.name}{classes}{kind}" + (" (SYNTHETIC)" if metrics.get("synthetic") else "")


def best_model(folders: list[Path], *, task: str = DEFAULT_TASK) -> Path | None:
    """The folder of ``task`` whose model did best on its validation split, models of real data before synthetic
    ones; of any task only when ``task`` has none (validation AUCs of two tasks answer different questions)."""
    def score(folder: Path) -> tuple:
        metrics = _metrics(folder)
        auc = (metrics.get("val") or {}).get("auc")
        return (not metrics.get("synthetic", True), auc if isinstance(auc, (int, float)) else -1.0)

    same_task = [folder for folder in folders if task_of(_metrics(folder))[0] == task]
    return max(same_task or folders, key=score) if folders else None


def fallback_note(folder: Path | None, task: str = DEFAULT_TASK) -> str | None:
    """The sentence to show when :func:`best_model` had to take ``folder`` of another task than ``task``."""
    found = task_of(_metrics(folder))[0] if folder is not None else task
    return None if found == task else (f"No {task} model found: preselected the {found} model of best validation "
                                       "AUC (another task: its numbers answer another question).")


def choose_model(dataset: str | None = None, model: str | None = None, *, task: str = DEFAULT_TASK,
                 output_dir: str | Path | None = None) -> Path | None:
    """The model to preselect: ``$COURSE_DEMO_MODEL``, else ``outputs/<dataset>/<run_name(model, task)>/``,
    else :func:`best_model` of ``task`` (printing :func:`fallback_note` when it is of another task)."""
    root = Path(output_dir) if output_dir else paths.output_dir()
    wanted = [Path(os.environ[MODEL_VARIABLE])] if os.environ.get(MODEL_VARIABLE) else []
    wanted += [root / dataset / runs.run_name(model, task)] if dataset and model else []
    for folder in wanted:
        if folder.resolve() in [f.resolve() for f in run_folders(folder.parent.parent)]:
            return folder.resolve()
    chosen = best_model(run_folders(root), task=task)
    if note := fallback_note(chosen, task):
        print(note)
    return chosen


def quick_model(dataset: str, *, smoke: bool = True, strict: bool = False, name: str = "cnn-quick",
                task: str = DEFAULT_TASK) -> Path:
    """Train a small CNN for ``task`` into ``outputs/demo/<dataset>/<run_name(name, task)>/``: the course's own
    data and runs stay untouched."""
    from helpers.data import course_dataset
    from helpers.images import load_images

    folder = paths.output_dir() / QUICK_FOLDER
    with _output_dir(folder):  # the dataset's record goes beside the quick model, not over the course's
        data = course_dataset(dataset, smoke=smoke, strict=strict, task=task)
        print(f"No trained model yet: a quick 64px CNN on {data.name} for the demo, in {folder} (its predictions "
              "are close to guesses) ...")
        run = runs.quick_cnn(data, load_images(data, 64, progress=False), output_dir=folder, name=name, epochs=8,
                             batch_size=16, learning_rate=3e-3)
    return run.path


@contextlib.contextmanager
def _output_dir(folder: Path):
    previous = os.environ.get("COURSE_OUTPUT_DIR")
    os.environ["COURSE_OUTPUT_DIR"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("COURSE_OUTPUT_DIR")
        else:
            os.environ["COURSE_OUTPUT_DIR"] = previous


def task_html(metrics: dict, task: str, classes: tuple[str, ...]) -> str:
    """Nothing for the default task; else the task, its classes and (three classes) the test macro AUC and accuracy."""
    if task == DEFAULT_TASK:
        return ""
    test = ((metrics.get("multiclass") or {}).get("test")) or {}
    scores = "".join(f", test {name} {test[key]:.3f}" for key, name in (("macro_auc", "macro one-vs-rest AUC"),
                                                                      ("accuracy", "accuracy"))
                     if isinstance(test.get(key), int | float) and math.isfinite(test[key]))
    return f", task <b>{html.escape(task)}</b> (classes {html.escape(', '.join(classes))}){scores}"


# ---------------------------------------------------------------- the app


class UploadDemo:
    """Upload chest images, pick a trained model, see its prediction and explanation; display ``app.widget``.

    ``model`` preselects a run folder (it is listed even when outside
    ``output_dir``), else the best of ``task`` (:func:`best_model`); ``max_bytes`` is the largest upload
    accepted (checked before decoding); ``with_gradcam=False`` skips the explanation.
    """

    def __init__(self, output_dir: str | Path | None = None, *, max_bytes: int = MAX_BYTES,
                 model: str | Path | None = None, with_gradcam: bool = True, task: str = DEFAULT_TASK):
        self.output_dir = Path(output_dir) if output_dir else paths.output_dir()
        self.max_bytes, self.with_gradcam, self.task = max_bytes, with_gradcam, task
        self.fallback: tuple[str, str] | None = None  # (folder, note) when the best model is of another task
        self.models = run_folders(self.output_dir)
        if model is not None and Path(model).resolve() not in [f.resolve() for f in self.models]:
            self.models += [f for f in run_folders(Path(model).parent.parent) if f.resolve() == Path(model).resolve()]
        self.shown: list[tuple[str, bytes]] = []  # the files on display, predicted again when the model changes
        self.rounds = 0  # how many times files were predicted: the status line changes even for the same file
        self.upload = widgets.FileUpload(accept=ACCEPT, multiple=True, description="Upload images",
                                         layout=widgets.Layout(width="auto"))
        self.picker = widgets.Dropdown(
            options=[(folder_label(f), str(f)) for f in self.models], description="Model",
            value=self._initial(model), disabled=not self.models, layout=widgets.Layout(width="560px"),
        )
        self.header = widgets.HTML(box(f"<b>{html.escape(DISCLAIMER)}</b>", *YELLOW))
        self.model_note = widgets.HTML(self.model_html())
        self.help = widgets.HTML(
            f"<p>Upload one or more images ({ACCEPT.replace(',', ' ')}, up to {max_bytes / 1e6:.0f} MB each). "
            "They are processed in memory and never saved.</p>")
        self.status = widgets.HTML()
        self.status.add_class("demo-status")
        self.results = widgets.VBox()
        self.results.add_class("demo-results")
        self.widget = widgets.VBox([self.header, self.picker, self.model_note, self.upload, self.help, self.status,
                                    self.results])
        self.widget.add_class("upload-demo")
        self.upload.observe(self.on_upload, names="value")
        self.picker.observe(self.on_pick, names="value")

    def _initial(self, model: str | Path | None) -> str | None:
        """The folder to preselect: ``model`` when it is one of the listed folders, else the best one."""
        wanted = Path(model).resolve() if model is not None else None
        matches = [folder for folder in self.models if folder.resolve() == wanted]
        chosen = matches[0] if matches else best_model(self.models, task=self.task)
        note = None if matches else fallback_note(chosen, self.task)
        self.fallback = (str(chosen), note) if note else None
        return str(chosen) if chosen else None

    # callbacks ----------------------------------------------------

    def on_upload(self, change: dict) -> None:
        """``FileUpload`` observer: predict the new files, then empty the widget so the same file counts again."""
        files = uploaded_files(change["new"])
        if not files:
            return  # the widget was emptied (below)
        self.shown = files
        self.process(files)
        self._clear_upload()

    def _clear_upload(self) -> None:
        empty = {} if isinstance(self.upload.value, dict) else ()
        self.upload.set_trait("value", empty)  # the trait is read-only in ipywidgets 7
        if hasattr(self.upload, "_counter"):
            self.upload._counter = 0

    def on_pick(self, change: dict) -> None:
        """``Dropdown`` observer: describe the chosen model and predict the files on display with it."""
        self.model_note.value = self.model_html()
        if self.shown:
            self.process(self.shown)

    def process(self, files: list[tuple[str, bytes]]) -> list[str]:
        """Predict each ``(name, bytes)`` and show one card per file; returns the cards' HTML."""
        self.status.value = f"<p><i>Working on {len(files)} file(s)...</i></p>"
        cards = self.cards(files)
        self.results.children = tuple(widgets.HTML(card) for card in cards)
        self.rounds += 1
        self.status.value = (f"<p>Round {self.rounds}: {len(files)} file(s) predicted with "
                             f"{html.escape(self.picker.label or '-')}.</p>")
        return cards

    def cards(self, files: list[tuple[str, bytes]]) -> list[str]:
        return [self.card(name, data) for name, data in files]

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
        except MemoryError:
            return message_card(name, "not enough memory to read this image; export a smaller PNG or JPEG")
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
            return box(html.escape(NO_MODEL.format(folder=self.output_dir)), *RED)
        folder = Path(self.picker.value)
        try:
            metrics = runs.read_metrics(folder)
        except runs.RunError as exc:
            return box(html.escape(str(exc)), *RED)
        auc, threshold = (metrics.get("test") or {}).get("auc"), metrics.get("threshold")
        kind = (f"VGG16 features + {(metrics.get('classifier') or 'classifier')}"
                if _is_hybrid(folder) else "Keras")
        task, classes = task_of(metrics)
        against = "" if task == DEFAULT_TASK else " (COVID against the rest)"
        text = (f"Model <b>{html.escape(folder.name)}</b> ({kind}) trained on "
                f"<b>{html.escape(str(metrics.get('dataset', '?')))}</b> ({metrics.get('modality', 'xray')}), "
                f"input {metrics.get('img_size', '?')} px" + task_html(metrics, task, classes)
                + (f", test AUC{against} {auc:.3f}" if auc is not None else "")
                + (f". Threshold {threshold:.4f}: {THRESHOLD_MEANING}{against}." if threshold is not None else "."))
        warning = box(f"<b>{SYNTHETIC_WARNING}</b>", *RED) if metrics.get("synthetic") else ""
        if self.fallback and self.fallback[0] == self.picker.value:
            warning += box(html.escape(self.fallback[1]), *YELLOW)
        return f"<p>{text}</p>{warning}"

    def show(self, files: list[tuple[str, bytes]]):
        """The cards of ``files`` as static HTML (the app itself is left as it is): for headless runs and viewers."""
        from IPython.display import HTML

        return HTML("".join(self.cards(files)))


# ---------------------------------------------------------------- examples for the notebook, read-only


def _test_rows(folder: Path, n: int) -> pd.DataFrame:
    """``n`` test rows of a run's predictions (:func:`helpers.runs.read_run`), half of each label, one per patient."""
    try:
        rows = runs.read_run(folder).split("test").drop_duplicates("patient_id")
    except runs.RunError:
        return pd.DataFrame(columns=["path", "label"])
    return rows.groupby("label", group_keys=False).head(max(1, n // 2)).head(n)


def _dataset_root(rel: str) -> Path | None:
    """The folder of the data cache holding ``rel`` (datasets live 1 to 3 levels down), or None."""
    root = Path(os.environ.get("COURSE_DATA_DIR") or paths.project_root() / "data" / "cache")  # never created here
    for pattern in ("*", "*/*", "*/*/*"):
        for folder in sorted(root.glob(pattern)):
            if (folder / rel).is_file():
                return folder
    return None


def _samples(folder: str | Path | None, n: int) -> list[tuple[Path, str]]:
    """``(file, true label)`` of up to ``n`` test images of the run in ``folder``, found read-only in the data cache."""
    rows = _test_rows(Path(folder), n) if folder else pd.DataFrame(columns=["path", "label"])
    root = _dataset_root(rows["path"].iloc[0]) if len(rows) else None
    return [(root / rel, label) for rel, label in zip(rows["path"], rows["label"]) if root and (root / rel).is_file()]


def sample_files(folder: str | Path | None, *, n: int = 4) -> list[Path]:
    """Up to ``n`` test images of the run in ``folder``, half of each label (never used in training)."""
    return [path for path, _ in _samples(folder, n)]


def sample_uploads(folder: str | Path | None, *, n: int = 4, modality: str = "xray") -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of :func:`sample_files`, named with their true label; generated cartoons when none is found."""
    found = [(f"{path.name} (true label: {label})", path.read_bytes()) for path, label in _samples(folder, n)]
    return found or synthetic_uploads(n, modality=modality)


def synthetic_uploads(n: int, *, modality: str = "xray") -> list[tuple[str, bytes]]:
    """``n`` generated images (half COVID), as PNG bytes made in memory."""
    import io

    from PIL import Image

    from helpers.data.synthetic import make_image

    uploads = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(make_image(modality=modality, covid=i % 2 == 0, seed=i))).save(buffer, "PNG")
        label = "COVID" if i % 2 == 0 else "NORMAL"
        uploads.append((f"generated-{i}.png (synthetic cartoon, true label: {label})", buffer.getvalue()))
    return uploads
