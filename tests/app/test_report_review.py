"""The report's review sections on real runs (``save_run``, real Keras models, images on disk): every model
against the best (paired), calibration before/after, the Grad-CAM sanity check, and the tasks side by side."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_report import parse
from tiny_models import save_tiny_hybrid

from helpers import data
from helpers.app import report
from helpers.images import read_image, resize
from helpers.runs import save_run

pytestmark = pytest.mark.tensorflow  # real Keras models in most tests

SIZE = 32
SPLITS = ["train"] * 8 + ["val"] * 8 + ["test"] * 8


def brightness_model(classes: int = 1):
    """A real Keras CNN (two convolutions, pooling, one sigmoid unit) whose COVID score grows with brightness.

    Built with the default (random) initialisers, so that the sanity check's re-initialised copy differs,
    then given weights that average the image: the logit is 8 x mean brightness (0..1) - 4. With ``classes=3``,
    a softmax whose last (COVID) unit has that score and the other two 0.
    """
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
    last = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")
    head = keras.layers.Dense(classes, activation="sigmoid" if classes == 1 else "softmax")
    outputs = head(keras.layers.GlobalAveragePooling2D()(last(first(x))))
    model = keras.Model(inputs, outputs, name="bright")
    for layer, value, bias in ((first, 1 / 27, 0.0), (last, 1 / 36, 0.0)):
        kernel = layer.get_weights()[0]
        layer.set_weights([np.full_like(kernel, value), np.full(kernel.shape[-1], bias, kernel.dtype)])
    kernel, biases = np.zeros((4, classes), np.float32), np.zeros(classes, np.float32)
    kernel[:, -1], biases[-1] = 2.0, -4.0  # only the COVID unit sees the brightness
    head.set_weights([kernel, biases])
    return model


TASK_CLASSES = {"covid-vs-normal": ("NORMAL", "COVID"), "covid-vs-pneumonia": ("PNEUMONIA", "COVID"),
                "three-class": ("NORMAL", "PNEUMONIA", "COVID")}


def toy_dataset(data_dir, *, task: str = "covid-vs-normal", fingerprint: str | None = None) -> SimpleNamespace:
    """24 patients, one image each (COVID bright, the other classes dark), written as PNG under the data folder."""
    classes = TASK_CLASSES[task]
    labels = [classes[i % len(classes)] for i in range(len(SPLITS))]
    manifest = pd.DataFrame({"path": [f"images/{task}/{i:02d}.png" for i in range(len(SPLITS))],
                             "patient_id": [f"toy:{i}" for i in range(len(SPLITS))], "split": SPLITS, "label": labels})
    folder = data_dir / "toy" / "v1"
    rng = np.random.default_rng(0)
    for path, label in zip(manifest["path"], labels, strict=True):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        level = 170 if label == "COVID" else 70
        Image.fromarray(np.clip(rng.normal(level, 25, (48, 48)), 0, 255).astype(np.uint8)).save(folder / path)
    return SimpleNamespace(name="toy", synthetic=True, modality="xray", manifest=manifest, task=task,
                           classes=classes, test_fingerprint=fingerprint or data.test_fingerprint(manifest))


def predictions(dataset, probability) -> pd.DataFrame:
    """The val and test rows with P(COVID), or with one column per class for an N x 3 matrix (as the contract)."""
    rows = dataset.manifest[dataset.manifest["split"] != "train"]
    probability = np.asarray(probability, float)
    columns = {f"prob_{c}": probability[:, i] for i, c in enumerate(dataset.classes)} if probability.ndim == 2 else {}
    return rows.assign(y_true=(rows["label"] == "COVID").astype(int),
                       probability=probability[:, -1] if columns else probability, **columns)


def model_scores(model, dataset, data_dir) -> np.ndarray:
    rows = dataset.manifest[dataset.manifest["split"] != "train"]
    images = np.stack([resize(read_image(data_dir / "toy" / "v1" / p, reduce_to=SIZE), SIZE) for p in rows["path"]])
    scores = model.predict(np.repeat(images[..., None], 3, axis=3).astype(np.float32), verbose=0)
    return scores[:, 0] if scores.shape[1] == 1 else scores  # P(COVID), or N x 3 in class order


@pytest.fixture(scope="module")
def built(module_course_dirs):
    """The Keras CNN, an identical twin of its scores, a noisy model, a run on another test set, and a second
    task's runs; the report built once."""
    data_dir, out = module_course_dirs
    dataset = toy_dataset(data_dir)
    model = brightness_model()
    scores = model_scores(model, dataset, data_dir)
    noisy = np.random.default_rng(1).uniform(size=len(scores))
    save_run("cnn", dataset=dataset, predictions=predictions(dataset, scores), model=model, img_size=SIZE,
             gradcam_layer="last_conv", weights="scratch")
    save_run("cnn-twin", dataset=dataset, predictions=predictions(dataset, scores), weights="scratch")
    save_run("noisy", dataset=dataset, predictions=predictions(dataset, noisy), weights="scratch")
    capped = toy_dataset(data_dir, fingerprint="0123456789abcdef")
    save_run("capped", dataset=capped, predictions=predictions(capped, scores), weights="scratch")
    pneumonia = toy_dataset(data_dir, task="covid-vs-pneumonia")
    for name, probability in (("cnn", scores), ("noisy", noisy[::-1])):
        save_run(name, dataset=pneumonia, predictions=predictions(pneumonia, probability), weights="scratch")
    three = toy_dataset(data_dir, task="three-class")
    matrix = np.random.default_rng(2).dirichlet(np.ones(3), size=len(scores))
    save_run("noisy", dataset=three, predictions=predictions(three, matrix), weights="scratch")
    markdown, page = report.build_report(out, n_boot=50)
    return SimpleNamespace(html=page.read_text(encoding="utf-8"), md=markdown.read_text(encoding="utf-8"),
                           page=page, out=out, data_dir=data_dir)


def sections(html: str, kind: str) -> list[str]:
    return re.findall(rf'<section class="{kind}">(.*?)</section>', html, flags=re.S)


def rows(html: str) -> dict[str, list[str]]:
    """Table body rows by their first cell."""
    found = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)]
    return {cells[0]: cells[1:] for cells in found if cells}


def test_the_paired_table_compares_every_model_of_one_test_set_with_the_best(built):
    paired = sections(built.html, "paired")[0]  # covid-vs-normal comes first
    table = rows(paired)
    assert set(table) == {"cnn-twin", "noisy"}  # the best (cnn) is the reference; capped is left out
    assert "<code>cnn</code>" in paired and "Left out of the paired table" in paired and "capped" in paired
    assert table["cnn-twin"][1:4] == ["0.00 (0.00, 0.00)"] * 3  # identical scores: exactly 0, every metric
    assert table["noisy"][1].startswith("-")  # worse than the best by construction
    assert "do not mean that the test set cannot tell" in paired
    md_paired = built.md.split("Every model against the best, paired")[1]
    md_row = next(line for line in md_paired.splitlines() if line.startswith("| cnn-twin |"))
    assert md_row.count("0.00 (0.00, 0.00)") == 3


def test_calibration_before_after_and_its_reliability_diagram(built):
    assert "Brier before" in built.html and "Brier after" in built.html
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="toy: reliability of cnn', built.html)
    assert (built.out / "report_files" / "reliability_toy.png").is_file()


def test_the_sanity_figure_shows_the_keras_model_on_its_images(built):
    sanity = sections(built.html, "sanity")[0]
    assert re.search(r'<img src="data:image/png;base64,', sanity) and "Grad-CAM of cnn" in sanity
    assert re.search(r"per image: (-?[\d.]+|n/a)(, (-?[\d.]+|n/a)){3} \(", sanity)  # 2 images of each class
    assert "](report_files/sanity_toy.png)" in built.md
    assert parse(built.page).references == []  # well-formed and self-contained with the new sections


def test_tasks_have_their_own_sections_and_a_side_by_side_table(built):
    headings = [built.html.index(f"Task {task}") for task in TASK_CLASSES]
    assert headings == sorted(headings)  # the course's order of tasks
    side_by_side = rows(built.html.split("The tasks side by side")[1].split("</table>")[0])
    assert set(side_by_side) == set(TASK_CLASSES)
    assert side_by_side["covid-vs-pneumonia"][0] == "PNEUMONIA, COVID"
    assert side_by_side["covid-vs-pneumonia"][1].startswith("cnn (1.00)")
    three = side_by_side["three-class"]
    assert three[1].startswith("noisy") and re.fullmatch(r"0\.\d\d|1\.00", three[5])  # its macro AUC
    assert side_by_side["covid-vs-normal"][5] == "-"  # binary tasks have none
    # each task's runs are compared with that task's only
    assert [set(rows(paired)) for paired in sections(built.html, "paired")[1:]] == [{"noisy"}, set()]
    assert "No Keras model among these runs" in sections(built.html, "sanity")[1]
    assert "macro AUC" in built.html and "sensitivity PNEUMONIA" in built.html  # the three-class table
    confusion = rows(built.html.split("<th>noisy: true class</th>")[1].split("</table>")[0])
    assert list(confusion) == list(TASK_CLASSES["three-class"])
    assert sum(int(n) for counts in confusion.values() for n in counts) == 8  # every test image once
    datasets = built.html.split("<h2>Datasets</h2>")[1].split("</table>")[0]
    assert all(f"<th>toy ({task})</th>" in datasets for task in TASK_CLASSES)  # a column per task
    assert rows(datasets)["classes"] == [", ".join(classes) for classes in TASK_CLASSES.values()]


def test_changed_or_missing_images_and_hybrid_only_outputs_are_said_not_fatal(built, tmp_path, monkeypatch):
    first_covid = built.data_dir / "toy" / "v1" / "images" / "covid-vs-normal" / "16.png"  # test split, COVID
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(first_covid)  # a dark image: another score
    _, page = report.build_report(built.out, n_boot=20)
    assert "do not give the predictions the run stored" in sections(page.read_text(encoding="utf-8"), "sanity")[0]

    shutil.rmtree(built.data_dir / "toy")
    _, page = report.build_report(built.out, n_boot=20)
    assert "are not on disk" in sections(page.read_text(encoding="utf-8"), "sanity")[0]

    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "partial"))
    save_tiny_hybrid("toy-hybrid")
    assert report.main(["--output-dir", str(tmp_path / "partial"), "--n-boot", "20"]) == 0
    hybrid = (tmp_path / "partial" / "report.html").read_text(encoding="utf-8")
    assert "No Keras model among these runs" in sections(hybrid, "sanity")[0]
    assert "Only one model was scored" in sections(hybrid, "paired")[0]


def test_a_three_class_keras_model_gets_its_sanity_figure_covid_against_the_rest(course_dirs):
    from helpers.app.report_sanity import chosen_rows
    from helpers.runs import read_runs

    data_dir, out = course_dirs
    dataset = toy_dataset(data_dir, task="three-class")
    model = brightness_model(classes=3)
    save_run("cnn", dataset=dataset, predictions=predictions(dataset, model_scores(model, dataset, data_dir)),
             model=model, img_size=SIZE, gradcam_layer="last_conv", weights="scratch")
    assert list(chosen_rows(read_runs(out)[0])["label"]) == ["COVID"] * 2 + ["NORMAL"] * 2 + ["PNEUMONIA"] * 2
    _, page = report.build_report(out, n_boot=20)
    sanity = sections(page.read_text(encoding="utf-8"), "sanity")[0]
    assert re.search(r'<img src="data:image/png;base64,', sanity) and "Grad-CAM of cnn" in sanity
    assert "a 3-class model, so the maps explain COVID against the rest" in sanity
    assert re.search(r"per image: (-?[\d.]+|n/a)(, (-?[\d.]+|n/a)){5} \(", sanity)  # 2 images of each class
    assert (out / "report_files" / "sanity_toy_three-class.png").is_file()


def test_an_unusable_stored_calibration_is_a_note_not_a_crash(tmp_path):
    from tests.app.test_report import write_run

    folder = write_run(tmp_path, "covid-ct", "resnet50", synthetic=False, weights="imagenet")
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "calibration": {"method": "platt", "T": 2.0}}))
    _, page = report.build_report(tmp_path, n_boot=20)
    text = page.read_text(encoding="utf-8")
    assert "its stored calibration is not used" in text and "unknown calibration method" in text


def test_the_images_folder_is_looked_for_under_the_data_folder(course_dirs, tmp_path):
    from helpers.app.report_sanity import candidate_roots

    data_dir, _ = course_dirs
    roots = [data_dir / "synthetic" / "xray-a", data_dir / "synthetic" / "xray-b"]  # two generations, same names
    for root in roots:
        (root / "COVID").mkdir(parents=True)
        (root / "COVID" / "p1.png").write_bytes(b"x")
    assert candidate_roots([Path("COVID/p1.png")]) == roots  # both: the stored predictions decide
    assert candidate_roots([Path("COVID/p2.png")]) == []
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"x")
    assert candidate_roots([outside]) == [Path("/")] and candidate_roots([tmp_path / "gone.png"]) == []
