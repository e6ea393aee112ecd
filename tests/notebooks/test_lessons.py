"""The lessons written out in the notebooks, kept equal to their reference twins in ``helpers``; the prose scan.

A notebook's lesson code (the CNN of 02, the transfer recipe of 03, the booster
of 04, Grad-CAM of 05) lives in a code cell with a ``lesson-*`` tag. These tests
take that cell from the built notebook, execute it, and compare what it builds
or computes with the tested helper: ``build_cnn``, ``build_transfer`` and
``unfreeze_top``, ``hybrid.train_xgboost``, ``helpers.explain.gradcam``. A
learner may change the cell; the course's copy must not drift from the helper.
Also here: ``train_transfer``'s rule for keeping phase 2, the lesson figures, and
a scan of every notebook's Markdown for result claims no run printed.
"""

from __future__ import annotations

import re

import keras
import nbformat
import numpy as np
import pytest
from conftest import ROOT

from helpers.data.synthetic import make_image
from helpers.explain import gradcam
from helpers.models import build_cnn, build_transfer, gradcam_layer

NOTEBOOKS = ROOT / "notebooks"
# Layer settings that make two layers the same computation (names and dtypes are compared separately).
CONFIG_KEYS = ("filters", "kernel_size", "strides", "padding", "use_bias", "momentum", "epsilon", "center", "scale",
               "rate", "units", "activation", "factor", "height_factor", "width_factor", "fill_mode", "fill_value",
               "interpolation", "pool_size", "value_range", "seed", "data_format")


def lesson_cell(notebook: str, tag: str) -> str:
    """The source of the one code cell of ``notebooks/<notebook>.ipynb`` tagged ``tag``."""
    cells = [cell for cell in nbformat.read(NOTEBOOKS / f"{notebook}.ipynb", as_version=4).cells
             if cell.cell_type == "code" and tag in cell.metadata.get("tags", [])]
    assert len(cells) == 1, f"{notebook} must have exactly one code cell tagged {tag!r}, found {len(cells)}"
    return cells[0].source


def run_lesson(notebook: str, *tags: str) -> dict:
    """Execute the tagged cells of a notebook, in order, in one fresh namespace (imports as at the notebook's top)."""
    namespace = {"keras": keras, "layers": keras.layers, "np": np}
    exec("import tensorflow as tf", namespace)
    for tag in tags:
        exec(compile(lesson_cell(notebook, tag), f"{notebook}[{tag}]", "exec"), namespace)
    return namespace


# ------------------------------------------------------------------------------- 02: the CNN


def layer_kind(layer) -> str:
    """The layer's class, with the two ways of writing "divide by 255" counted as one."""
    if type(layer).__name__ == "Preprocess" and layer.mode == "unit":
        return "Rescaling(1/255)"
    if isinstance(layer, keras.layers.Rescaling) and np.isclose(float(layer.scale), 1 / 255) and not layer.offset:
        return "Rescaling(1/255)"
    return type(layer).__name__


def architecture(model: keras.Model) -> list[tuple]:
    """Every layer (the augmentation's too): kind, name, output shape, parameter count, compute dtype, settings."""
    rows = []
    for layer in model.layers:
        config = {} if layer_kind(layer) == "Rescaling(1/255)" else layer.get_config()  # the kind says it all
        settings = {k: config[k] for k in CONFIG_KEYS if k in config}
        rows.append((layer_kind(layer), layer.name, tuple(layer.output.shape), layer.count_params(),
                     layer.dtype_policy.name, settings))
        for inner in getattr(layer, "layers", []):
            inner_config = inner.get_config()
            rows.append((layer_kind(inner), f"{layer.name}/{type(inner).__name__}", None, inner.count_params(),
                         inner.dtype_policy.name, {k: inner_config[k] for k in CONFIG_KEYS if k in inner_config}))
    return rows


def differences(mine: keras.Model, reference: keras.Model) -> list[str]:
    """What differs between two models' architectures (empty when they are the same network)."""
    a, b = architecture(mine), architecture(reference)
    found = [f"layer {i}: notebook {x} != helpers {y}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b):
        found.append(f"{len(a)} layers in the notebook, {len(b)} in helpers")
    if mine.count_params() != reference.count_params():
        found.append(f"{mine.count_params()} parameters in the notebook, {reference.count_params()} in helpers")
    return found


@pytest.fixture(scope="module")
def notebook_cnn():
    namespace = run_lesson("02_cnn_from_scratch", "lesson-augment", "lesson-cnn")
    return namespace["make_cnn"]


def units(n_classes: int) -> int:
    """``build_cnn``'s ``classes``: one sigmoid unit for two classes, a softmax of ``n_classes`` units above."""
    return 1 if n_classes == 2 else n_classes


@pytest.mark.parametrize(("size", "n_classes"), [(64, 2), (128, 2), (64, 3)])
def test_the_cnn_of_notebook_02_is_build_cnn(notebook_cnn, size, n_classes):
    mine, reference = notebook_cnn(size, n_classes), build_cnn(size, classes=units(n_classes))
    assert differences(mine, reference) == []
    assert mine.name == reference.name == "cnn" and gradcam_layer(mine) == "last_conv"
    assert notebook_cnn(size).output_shape == build_cnn(size).output_shape == (None, 1)  # the default: two classes
    head = mine.get_layer("probability")
    assert (head.units, head.activation.__name__) == ((1, "sigmoid") if n_classes == 2 else (3, "softmax"))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_two_cnns_compute_the_same_function(notebook_cnn, n_classes):
    """With the helper's weights copied in, the notebook's CNN gives the same probabilities (augmentation off)."""
    mine, reference = notebook_cnn(64, n_classes), build_cnn(64, classes=units(n_classes))
    mine.set_weights(reference.get_weights())
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(mine(images, training=False)),
                               np.asarray(reference(images, training=False)), rtol=1e-5, atol=1e-6)


def test_the_comparison_catches_a_head_of_the_wrong_task(notebook_cnn):
    assert differences(notebook_cnn(64, 3), build_cnn(64))
    assert differences(notebook_cnn(64), build_cnn(64, classes=3))


@pytest.mark.parametrize("change", [{"filters": (16, 32, 64)}, {"filters": (16, 32, 64, 64)}, {"dropout": 0.5},
                                    {"seed": 1}])
def test_the_comparison_catches_a_cnn_that_drifted(notebook_cnn, change):
    assert differences(notebook_cnn(64, **change), build_cnn(64)), f"{change} went unnoticed"


def test_the_comparison_catches_a_different_augmentation_or_pooling(notebook_cnn):
    assert differences(notebook_cnn(64), build_cnn(64, augment=False))
    flipped = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augment")
    drifted = run_lesson("02_cnn_from_scratch", "lesson-augment", "lesson-cnn")
    drifted["make_augmentation"] = lambda seed=42: flipped
    assert differences(drifted["make_cnn"](64), build_cnn(64))


# ---------------------------------------------------------------------------- 05: Grad-CAM


@pytest.fixture(scope="module")
def notebook_gradcam():
    return run_lesson("05_evaluation_and_explainability", "lesson-gradcam")["grad_cam"]


@pytest.fixture(scope="module")
def chest_images():
    return np.stack([np.asarray(make_image(modality="xray", covid=c, severity=0.3, size=64, seed=s), np.uint8)
                     for c, s in ((True, 1), (False, 2), (True, 3))])


def positive_head(model: keras.Model) -> keras.Model:
    """An untrained model whose head weighs every channel positively, so that its maps are not all zero."""
    head = model.get_layer("probability")
    head.set_weights([np.full(head.kernel.shape, 0.5, np.float32), np.full(head.bias.shape, -0.1, np.float32)])
    return model


def rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images[..., None], 3, axis=-1).astype(np.float32)


@pytest.mark.parametrize("kind", ["cnn", "vgg16"])
def test_the_grad_cam_of_notebook_05_agrees_with_helpers_explain(notebook_gradcam, chest_images, kind):
    if kind == "cnn":
        model = build_cnn(64, filters=(8, 16, 32), augment=False)
    else:
        model, _ = build_transfer("vgg16", size=64, weights=None)
    model = positive_head(model)
    mine = notebook_gradcam(model, rgb(chest_images), gradcam_layer(model))
    reference = gradcam(model, chest_images)
    assert mine.shape == reference.shape == chest_images.shape
    assert reference.max() > 0.5  # a real map, not two arrays of zeros agreeing
    np.testing.assert_allclose(mine, reference, atol=1e-5)


def test_the_grad_cam_comparison_catches_a_changed_lesson(chest_images):
    """Without the ReLU (keeping evidence against COVID too) the maps differ: the twin test can fail."""
    source = lesson_cell("05_evaluation_and_explainability", "lesson-gradcam")
    assert "tf.nn.relu(" in source
    namespace = {"keras": keras, "np": np}
    exec("import tensorflow as tf", namespace)
    exec(source.replace("tf.nn.relu(", "tf.abs("), namespace)
    model = build_cnn(64, filters=(8, 16, 32), augment=False)
    head = model.get_layer("probability")
    differs = []
    for sign in (1, -1):  # the weighted activation flips sign with the head: with one of the two it has a negative part
        head.set_weights([np.full(head.kernel.shape, 0.5 * sign, np.float32), np.zeros(head.bias.shape, np.float32)])
        changed = namespace["grad_cam"](model, rgb(chest_images), "last_conv")
        differs.append(not np.allclose(changed, gradcam(model, chest_images), atol=1e-5))
    assert any(differs)


# ------------------------------------------------------------- 03: phase 2 kept only if it helps


@pytest.fixture(scope="module")
def smoke_dataset(module_course_dirs):
    from helpers import data

    return data.course_dataset("synthetic", smoke=True)


@pytest.mark.parametrize("phase_two_auc, kept", [(0.65, False), (0.70, False), (0.80, True)])
def test_train_transfer_keeps_fine_tuning_only_when_it_beats_phase_one_on_validation(
        smoke_dataset, monkeypatch, phase_two_auc, kept):
    from helpers.models import train

    seen = {}

    def fake_fit(model, image_set, *, epochs, history=None, **_):
        if history is None:  # phase 1: the best validation AUC is 0.70
            return {"loss": [0.9, 0.8], "val_auc": [0.60, 0.70], "seconds": [0.1]}
        seen["phase_one"] = [w.copy() for w in model.get_weights()]
        for variable in model.trainable_weights:  # fine-tuning moves the unfrozen weights
            variable.assign(variable + 0.01)
        seen["phase_two"] = [w.copy() for w in model.get_weights()]
        return {**history, "loss": history["loss"] + [0.7], "val_auc": history["val_auc"] + [phase_two_auc],
                "seconds": history["seconds"] + [0.1]}

    monkeypatch.setattr(train, "fit", fake_fit)
    model, metrics = train.train_transfer("mobilenetv2", smoke_dataset, img_size=32, weights=None, epochs=2,
                                          fine_tune_epochs=1, verbose=0)
    expected = seen["phase_two"] if kept else seen["phase_one"]
    assert not all(np.array_equal(a, b) for a, b in zip(seen["phase_one"], seen["phase_two"]))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), expected, strict=True))
    assert metrics["params"]["fine_tune_kept"] is kept and metrics["params"]["fine_tune_start"] == 2
    head = model.get_layer("probability").count_params()
    assert (metrics["params"]["trainable_parameters"] > head) is kept  # restored: the backbone is frozen again
    assert not any(layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("phase_two_loss, kept", [(0.8, False), (0.7, True)])  # a tie keeps phase 1
def test_train_transfer_of_three_classes_has_a_softmax_and_keeps_phase_two_by_validation_loss(
        module_course_dirs, monkeypatch, phase_two_loss, kept):
    from helpers import data
    from helpers.models import train

    three = data.course_dataset("synthetic", smoke=True, task="three-class", n_patients=30, size=64, verbose=False)
    seen = {}

    def fake_fit(model, image_set, *, epochs, history=None, classes=None, **_):
        seen.setdefault("classes", []).append(classes)
        if history is None:  # phase 1: the lowest validation loss is 0.8
            return {"loss": [1.1, 0.9], "val_loss": [1.0, 0.8], "seconds": [0.1]}
        return {**history, "loss": history["loss"] + [0.7], "val_loss": history["val_loss"] + [phase_two_loss],
                "seconds": history["seconds"] + [0.1]}

    monkeypatch.setattr(train, "fit", fake_fit)
    model, metrics = train.train_transfer("mobilenetv2", three, img_size=32, weights=None, epochs=2,
                                          fine_tune_epochs=1, verbose=0)
    assert model.output_shape == (None, 3) and model.get_layer("probability").activation.__name__ == "softmax"
    assert seen["classes"] == [("NORMAL", "PNEUMONIA", "COVID")] * 2
    assert metrics["params"]["fine_tune_kept"] is kept and metrics["task"] == "three-class"
    assert set(metrics["multiclass"]) == {"val", "test"}


# ------------------------------------------------------------------- 04: the XGBoost fit


@pytest.mark.parametrize("classes", [None, ("NORMAL", "PNEUMONIA", "COVID")], ids=["two classes", "three classes"])
def test_the_xgboost_fit_of_notebook_04_is_hybrid_train_xgboost(classes):
    """The notebook's XGBClassifier cell and ``hybrid.train_xgboost`` grow the same trees on the same features."""
    import pandas as pd
    import xgboost
    from sklearn.utils.class_weight import compute_sample_weight

    from helpers.models import hybrid

    rng = np.random.default_rng(0)
    n = 120
    names = classes or ("NORMAL", "COVID")
    labels = rng.choice(names, size=n, p=[0.3, 0.3, 0.4] if classes else [0.6, 0.4])
    signal = np.stack([labels == name for name in names], axis=1).astype(np.float32)  # one informative column each
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, :len(names)] += 1.5 * signal
    manifest = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "label": labels,
                             "split": np.array(["train", "val", "test"])[np.arange(n) % 3]})
    features = hybrid.Features(X.astype(np.float32), manifest, 0.0, False, None)
    settings = {"N_ESTIMATORS": 60, "LEARNING_RATE": 0.1, "EARLY_STOPPING_ROUNDS": 10, "N_JOBS": 1}
    namespace = {"features": {"avg": features}, "xgboost": xgboost, "hybrid": hybrid, "classes": classes,
                 "compute_sample_weight": compute_sample_weight, **settings}
    exec("import time", namespace)
    exec(compile(lesson_cell("04_vgg16_xgboost_hybrid", "lesson-xgboost"), "04[lesson-xgboost]", "exec"), namespace)
    mine = namespace["booster"]
    reference, info = hybrid.train_xgboost(features, n_estimators=60, learning_rate=0.1, early_stopping_rounds=10,
                                           n_jobs=1, classes=classes)
    watched = "val_auc" if classes is None else "val_mlogloss"
    assert mine.best_iteration == info["best_iteration"] and mine.best_score == pytest.approx(info[watched])
    assert mine.predict_proba(X).shape == (n, len(names))
    np.testing.assert_allclose(mine.predict_proba(X), reference.predict_proba(X), rtol=1e-6)
    assert hybrid.classifier._params(mine) == hybrid.classifier._params(reference)  # every setting save_hybrid records
    assert mine.get_params()["objective"] == reference.get_params()["objective"]
    assert (mine.get_params()["objective"] == "multi:softprob") is (classes is not None)


# ------------------------------------------------------- only numbers a run produced: the Markdown scan

NUMBER = r"(?<![-\w.])"  # a number that starts here (not the 19 of COVID-19, not the 5 of 0.5)
CLAIMS = {
    "percentage": NUMBER + r"\d+(?:[.,]\d+)?\s?(?:%|percent\b|percentage points?\b)",
    "metric value": r"\b(?:AUCs?|accuracy|sensitivity|specificity|PPV|NPV|F1|Brier)\b"  # then a value, same clause
                    r"(?:[^.;:!?]|\.(?=\d)){0,40}?(?<![\w.])(?:0?\.\d+|1\.0+)(?![\w.])",
    "value then metric": NUMBER + r"(?:0?\.\d+|1\.0+)\s+(?:AUC|accuracy|sensitivity|specificity)\b",
    "count": NUMBER + r"\d[\d,]*\s+(?:[A-Za-z-]+\s+)?(?:images|slices|patients|studies|cases|X-rays|radiographs"
                      r"|scans|normals|people|models|films|subjects|files)\b",
    "vague count": r"(?i:\b(?:a few|some|several)\s+(?:dozen|hundred|thousand)s?\b|\b(?:dozens|hundreds|thousands)\s+of\b)",
    "run time": NUMBER + r"\d+(?:\.\d+)?\s?(?:s|sec|seconds|min|minutes|h|hours)\b",
}
# (notebook, the allowed phrase, why it is not a result claim). The phrase must contain the claim it allows.
ALLOWED = [
    ("01", "screened 2,212 studies", "Roberts et al. (2021), cited in the sentence and the references"),
    ("05", "screened 2,212 studies", "Roberts et al. (2021), cited in the sentence and the references"),
    ("05", "62 studies reviewed", "Roberts et al. (2021): the reference entry itself"),
    ("01", "Database's 1,341 pediatric normals", "published with the COVID-19 Radiography Database (cited)"),
    ("01", "source AUC from 16x16 thumbnails was about 0.99", "measured by the course's test on sample files, "
                                                               "and the sentence says so"),
    ("01", "An AUC near 0.5 means", "chance level: what an AUC of 0.5 means, not a result"),
    ("02", "has an AUC of 0.5", "the majority baseline's AUC, by definition (a constant score ranks nothing)"),
    ("05", "Its AUC is 0.5", "the majority baseline's AUC, by definition"),
    ("*", "95% confidence interval", "the level of every interval in the course, a constant"),
    ("*", "95% interval", "the level of every interval in the course, a constant"),
    ("05", "middle 95% of the values", "how a 95% percentile interval is made, a definition"),
    ("05", "at 1%, 5%, 20%", "the prevalences the code of section 7 evaluates"),
    ("05", "may be 1% of patients, in a COVID ward 20%", "illustrative prevalences, the ones evaluated in section 7"),
    ("05", "At 1% prevalence", "one of the prevalences section 7 evaluates"),
    ("05", "the PPV at 1% prevalence", "one of the prevalences section 7 evaluates"),
    ("05", "about 80% really are COVID", "the definition of calibration, with its 0.8 example"),
    ("05", "2% of the image side", "helpers.explain.masking's dilation width, a constant of the method"),
    ("05", "x > 50% and y < 35% of the image", "helpers.explain.shortcut.ATTENTION_BOX, a constant"),
    ("05", "with sensitivity 0.95 and specificity 0.90 at 1% prevalence", "made-up figures of a by-hand exercise"),
    ("05", "Of 10,000 people", "the by-hand exercise's made-up population"),
    ("05", "100 people have COVID", "the by-hand exercise's arithmetic"),
    ("05", "only 95 (8.8%) are COVID: PPV = 0.95", "the by-hand exercise's arithmetic"),
    ("06", 'is not "55% sure"', "quotes a misreading of a probability of 0.55, not a result"),
    ("06", "a few thousand images", "notebook 06 belongs to another change of this round; its owner is to print "
                                    "the count (remove this entry then)"),
]


def markdown_paragraphs(path):
    """The Markdown paragraphs a learner reads, without code spans, links and the builder's run-time line."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", cell.source):
            if not re.match(r"\W*Run time\b", paragraph.lstrip(), re.I):  # the builder's line, from measured timings
                text = re.sub(r"https?://\S+", "URL", re.sub(r"`[^`]*`", "`code`", paragraph))
                yield re.sub(r"\s+", " ", text)  # one line: a phrase of the allow-list may wrap anywhere


def claims(text: str) -> list[tuple[str, str, int]]:
    """``(kind, matched text, position)`` of every result-like figure in ``text``."""
    return [(kind, m.group(0), m.start()) for kind, pattern in CLAIMS.items() for m in re.finditer(pattern, text)]


def unallowed_claims(path) -> tuple[list[str], set[str]]:
    """The claims of one notebook that no allow-list entry covers, and the entries that covered something."""
    number = path.stem[:2]
    entries = [(n, phrase) for n, phrase, _ in ALLOWED if n in (number, "*")]
    found, used = [], set()
    for paragraph in markdown_paragraphs(path):
        for kind, text, start in claims(paragraph):
            covering = [phrase for _, phrase in entries
                        if any(p <= start and start + len(text) <= p + len(phrase)
                               for p in (m.start() for m in re.finditer(re.escape(phrase), paragraph)))]
            used.update(f"{n}:{phrase}" for n, phrase in entries if phrase in covering)
            if not covering:
                found.append(f"{path.name}: {kind} {text!r} in: ...{paragraph[max(0, start - 60):start + 40]!r}...")
    return found, used


def test_the_scanner_finds_result_claims():
    for sentence in ["The CNN reached an AUC of 0.93 on the test split.", "accuracy 0.88", "sensitivity was 1.00",
                     "It catches 87% of the cases.", "trained on 1,200 images", "a test split of 42 patients",
                     "trains in 35 s", "about 4 min on a CPU", "over-fits a few hundred images", "0.91 AUC",
                     "a source AUC from 16x16 thumbnails of about 0.99", "the AUC stays at 0.5",
                     "costs almost 7 percentage points"]:
        assert claims(sentence), sentence
    for sentence in ["COVID-19 models", "16x16 thumbnails", "a 224 px VGG16", "the top-right corner", "5 x 5 grid",
                     "ResNet50 and DenseNet121", "notebook 05 shows", "the AUC column. Then 0.5 is", "AUC (section 6)"]:
        assert not claims(sentence), sentence


def test_every_allowed_phrase_holds_a_claim_and_has_a_reason():
    for number, phrase, reason in ALLOWED:
        assert claims(phrase), f"{phrase!r} allows nothing: drop it"
        assert len(reason) > 20 and (number == "*" or len(number) == 2)


def test_markdown_states_no_result_a_run_did_not_print():
    """No AUC, accuracy, percentage, count or run time in the prose unless the allow-list says why it may stand."""
    problems, used = [], set()
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        found, covered = unallowed_claims(path)
        problems += found
        used |= covered
    assert not problems, "print these from the run (display(Markdown(...))) or allow them with a reason:\n" + \
        "\n".join(problems)
    stale = [f"{n}:{phrase}" for n, phrase, _ in ALLOWED if f"{n}:{phrase}" not in used]
    assert not stale, f"allow-list entries that no notebook needs any more: {stale}"


# ------------------------------------------------------------------- the lesson stands in the notebook


@pytest.mark.parametrize("notebook, word", [("02_cnn_from_scratch", "Conv2D"), ("03_transfer_learning", "trainable"),
                                            ("03_transfer_learning", "include_top=False"),
                                            ("04_vgg16_xgboost_hybrid", "XGBClassifier"),
                                            ("04_vgg16_xgboost_hybrid", "include_top=False"),
                                            ("05_evaluation_and_explainability", "GradientTape")])
def test_the_lesson_is_code_a_learner_reads(notebook, word):
    """The word is in a code line of the notebook, not only in a comment or in the prose."""
    code = [line.split("#", 1)[0] for cell in nbformat.read(NOTEBOOKS / f"{notebook}.ipynb", as_version=4).cells
            if cell.cell_type == "code" for line in cell.source.splitlines()]
    assert any(word in line for line in code), f"{notebook}: no code line uses {word}"


# ------------------------------------------------------------------------ the lesson figures


def test_augmentation_grid_shows_the_image_each_pass_in_training_mode_and_the_unused_flip():
    import matplotlib.pyplot as plt

    from helpers import plots

    calls = []

    def augment(batch, training=False):
        calls.append(training)
        return batch + 10.0 * len(calls)

    image = np.tile(np.arange(8, dtype=np.uint8)[None, :] * 20, (8, 1))
    fig = plots.plot_augmentations(image, augment, n=3, ncols=5, synthetic=True, title="t")
    shown = [ax for ax in fig.axes if ax.images]
    assert calls == [True, True, True] and len(shown) == 5
    assert [ax.get_title().split(":")[0] for ax in shown] == ["original", "augmented #1", "augmented #2",
                                                              "augmented #3", "horizontal flip"]
    np.testing.assert_array_equal(shown[1].images[0].get_array(), image + 10.0)
    np.testing.assert_array_equal(shown[-1].images[0].get_array(), image[:, ::-1])
    assert "SYNTHETIC" in fig._suptitle.get_text()
    plt.close(fig)


def test_training_figures_show_what_early_stopping_watched_for_each_task():
    """Two classes: AUC per epoch and per boosting round; three classes (softmax, multi:softprob): accuracy, log loss."""
    import matplotlib.pyplot as plt
    import xgboost

    from helpers import plots

    binary = plots.plot_history({"loss": [0.7, 0.5], "val_loss": [0.8, 0.6], "auc": [0.6, 0.8], "val_auc": [0.5, 0.7]})
    softmax = plots.plot_history({"loss": [1.1, 0.9], "val_loss": [1.2, 1.0], "accuracy": [0.4, 0.6],
                                  "val_accuracy": [0.3, 0.5]})
    assert [ax.get_ylabel() for ax in binary.axes] == ["loss", "auc"]
    assert [ax.get_ylabel() for ax in softmax.axes] == ["loss", "accuracy"]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    boosters = {}
    for k, metric in ((2, "auc"), (3, "mlogloss")):
        y = np.arange(60) % k
        boosters[k] = xgboost.XGBClassifier(n_estimators=5, eval_metric=metric, early_stopping_rounds=2, n_jobs=1).fit(
            X + y[:, None], y, eval_set=[(X + y[:, None], y)], verbose=False)
    assert plots.plot_boosting({"two": boosters[2]}).axes[0].get_ylabel() == "validation AUC"
    assert plots.plot_boosting({"three": boosters[3]}).axes[0].get_ylabel() == "validation log loss"
    plt.close("all")


def test_forest_plot_has_a_row_per_model_and_the_baseline_line():
    import matplotlib.pyplot as plt
    import pandas as pd

    from helpers import plots
    from helpers.evaluation import BASELINE

    table = pd.DataFrame({"dataset": ["d"] * 3, "model": ["cnn", "vgg16", BASELINE], "synthetic": [False] * 3,
                          "auc": [0.9, 0.8, 0.5], "auc_low": [0.8, 0.6, 0.5], "auc_high": [0.97, 0.9, 0.5]})
    fig = plots.plot_forest(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cnn", "vgg16", BASELINE]
    assert {t.get_text() for t in ax.texts} >= {"0.90 (0.80-0.97)", "0.80 (0.60-0.90)"}
    assert any(np.allclose(line.get_xdata(), 0.5) for line in ax.get_lines())  # the baseline's dashed line
    plt.close(fig)


# ------------------------------------------------------------- 03: the transfer recipe


def transfer_lesson(name: str, size: int, fraction: float, n_classes: int = 2) -> dict:
    """Run the model, freezing and fine-tuning cells of notebook 03 for one backbone (no training)."""
    import types

    import tensorflow as tf

    from helpers.models import BACKBONES, Preprocess, augmentation, with_weights_fallback

    namespace = {"keras": keras, "layers": keras.layers, "np": np, "name": name, "spec": BACKBONES[name],
                 "size": size, "n_classes": n_classes, "WEIGHTS": None, "STRICT": False, "FINE_TUNE_FRACTION": fraction,
                 "FINE_TUNE_EPOCHS": 1, "FINE_TUNE_LEARNING_RATE": 1e-5, "history": {}, "augmentation": augmentation,
                 "Preprocess": Preprocess,
                 "with_weights_fallback": with_weights_fallback,
                 "ENV": types.SimpleNamespace(strategy=tf.distribute.get_strategy())}
    exec(compile(lesson_cell("03_transfer_learning", "lesson-transfer"), "03[lesson-transfer]", "exec"), namespace)
    namespace["frozen"] = sorted(w.path for w in namespace["model"].trainable_weights)
    namespace["compile_and_fit"] = lambda model, learning_rate, epochs: {}  # the recipe, not the training
    exec(compile(lesson_cell("03_transfer_learning", "lesson-finetune"), "03[lesson-finetune]", "exec"), namespace)
    namespace["fine_tuned"] = sorted(w.path for w in namespace["model"].trainable_weights)
    return namespace


@pytest.mark.parametrize("name, size, n_classes", [("mobilenetv2", 32, 2), ("vgg16", 32, 2), ("mobilenetv2", 32, 3)])
def test_the_transfer_recipe_of_notebook_03_is_build_transfer_and_unfreeze_top(name, size, n_classes):
    from helpers.models import unfreeze_top

    lesson = transfer_lesson(name, size, fraction=0.2, n_classes=n_classes)
    reference, _ = build_transfer(name, size=size, weights=None, classes=units(n_classes))
    assert lesson["model"].output_shape == (None, units(n_classes))
    assert differences(lesson["model"], reference) == []
    assert lesson["model"].name == reference.name == name and gradcam_layer(lesson["model"]) == gradcam_layer(reference)
    assert lesson["frozen"] == sorted(w.path for w in reference.trainable_weights)  # phase 1: the head only
    assert len(lesson["frozen"]) == 2
    unfreeze_top(reference, 0.2)
    assert lesson["fine_tuned"] == sorted(w.path for w in reference.trainable_weights)  # phase 2: the same top
    assert len(lesson["fine_tuned"]) > 2
    batch_norm = [layer for layer in lesson["model"].layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert not any(layer.trainable for layer in batch_norm)  # inference mode, also when unfrozen


def test_the_transfer_comparison_catches_a_head_of_the_wrong_task():
    reference, _ = build_transfer("mobilenetv2", size=32, weights=None)
    assert differences(transfer_lesson("mobilenetv2", 32, fraction=0.2, n_classes=3)["model"], reference)


def test_the_transfer_comparison_catches_a_recipe_that_unfreezes_more():
    from helpers.models import unfreeze_top

    lesson = transfer_lesson("mobilenetv2", 32, fraction=0.5)
    reference, _ = build_transfer("mobilenetv2", size=32, weights=None)
    unfreeze_top(reference, 0.2)
    assert lesson["fine_tuned"] != sorted(w.path for w in reference.trainable_weights)
