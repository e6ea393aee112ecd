"""The shortcut lesson (helpers.explain.shortcut) and external validation (helpers.explain.external).

Masking and pasting the tag, a real drop without it, Grad-CAM on the tag, the report's JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import plots
from helpers.data.dataset import course_dataset
from helpers.data.synthetic import make_image
from helpers.explain import external, shortcut
from helpers.images import load_images, resize
from helpers.runs import quick_cnn


@pytest.mark.parametrize("shape", [(64, 64), (3, 100, 80), (2, 224, 224)])
def test_mask_marker_blanks_exactly_the_box(shape):
    images = np.full(shape, 200, np.uint8)
    masked = shortcut.mask_marker(images, value=7)
    height, width = shape[-2:]
    expected = np.zeros(shape[-2:], bool)
    expected[int(0.02 * height) : math.ceil(0.15 * height), int(0.60 * width) : math.ceil(1.00 * width)] = True
    assert masked.shape == images.shape and masked.dtype == np.uint8
    assert np.all(masked[..., expected] == 7) and np.all(masked[..., ~expected] == 200)
    assert np.all(images == 200), "the input is not changed in place"


@pytest.mark.parametrize(("generated", "shown"), [(96, 96), (128, 128), (128, 64), (256, 224), (256, 64)])
def test_masking_removes_the_whole_synthetic_tag(generated, shown):
    """A tagged and an untagged image from the same seed differ only by the tag: masked, they are equal."""
    tagged = resize(make_image(covid=True, marker=True, size=generated, seed=5), shown)
    plain = resize(make_image(covid=True, marker=False, size=generated, seed=5), shown)
    assert not np.array_equal(tagged, plain)
    np.testing.assert_array_equal(shortcut.mask_marker(tagged), shortcut.mask_marker(plain))


def test_paste_marker_copies_the_donor_corner():
    donor = make_image(covid=True, marker=True, size=64, seed=1)
    images = np.zeros((2, 64, 64), np.uint8)
    pasted = shortcut.paste_marker(images, donor)
    np.testing.assert_array_equal(shortcut.mask_marker(pasted), images)
    rows, cols = shortcut.marker_region(images.shape)
    np.testing.assert_array_equal(pasted[1, rows, cols], donor[rows, cols])
    with pytest.raises(ValueError, match="one size"):
        shortcut.paste_marker(images, donor[:32, :32])


def test_marker_attention_is_the_share_of_heat_in_the_box():
    heat = np.zeros((2, 100, 100))
    heat[0] = shortcut.mask_marker(np.zeros((100, 100)), value=1)  # all heat in the box
    heat[1, 50:, :] = 1  # none
    np.testing.assert_allclose(shortcut.marker_attention(heat), [1.0, 0.0])
    np.testing.assert_allclose(shortcut.marker_attention(np.ones((100, 100))), 0.5 * 0.35)


def test_external_dataset_names():
    class Named:
        def __init__(self, name, modality="xray"):
            self.name, self.modality = name, modality

    assert external.external_dataset_name(Named("synthetic-marker")) == "synthetic"
    assert external.external_dataset_name(Named("synthetic")) == "synthetic-marker"
    assert external.external_dataset_name(Named("synthetic-ct", "ct")) == "synthetic-ct-marker"
    assert external.external_dataset_name(Named("covid19-radiography")) == "actualmed"
    assert external.external_dataset_name(Named("actualmed")) == "ieee8023"
    assert external.external_dataset_name(Named("covid-ct", "ct")) == "ieee8023-ct"


def test_synthetic_external_set_is_the_same_test_patients_without_the_tag(course_dirs):
    tagged = shortcut.shortcut_dataset(smoke=True, n_patients=24, size=64, verbose=False)
    plain, split = external.external_dataset(tagged, smoke=True, n_patients=24, size=64, verbose=False)
    assert (plain.name, split) == ("synthetic", "test")
    assert not plain.manifest["marker"].any()
    assert set(plain.split("test")["patient_id"]) == set(tagged.split("test")["patient_id"])


def test_external_validation_writes_what_the_report_reads(course_dirs):
    from helpers.app.report import EXTERNAL_KEYS, build_report
    from helpers.models import build_cnn

    _, outputs = course_dirs
    other = course_dataset("synthetic", smoke=True, n_patients=12, size=64, verbose=False)
    image_set = load_images(other, 32, progress=False)
    model = build_cnn(32, filters=(4, 8), augment=False)
    record = external.external_validation(model, other, image_set, trained_on="synthetic-marker", n_boot=50)
    path = outputs / "synthetic-marker" / "external" / "cnn-on-synthetic.json"
    assert json.loads(path.read_text()) == record
    assert set(EXTERNAL_KEYS) <= set(record)
    assert (record["model"], record["trained_on"], record["evaluated_on"]) == ("cnn", "synthetic-marker", "synthetic")
    assert record["n"] == len(image_set) and record["images"] == "all" and record["threshold"] == 0.5
    markdown, _ = build_report(outputs, n_boot=20)
    assert "External validation" in markdown.read_text() and "cnn-on-synthetic.json" in markdown.read_text()
    with pytest.raises(ValueError, match="32px"):
        external.external_validation(build_cnn(64, filters=(4,)), other, image_set, trained_on="x")


@pytest.mark.slow
def test_a_model_that_learned_the_tag_fails_without_it(course_dirs):
    """The lesson, measured: near-perfect with the tag, far worse with the corner masked or tags swapped.

    Seed 42, 6 epochs at 64 px on the SMOKE shortcut set (90 patients, test split 35 images), measured
    with this project's versions / Colab's: AUC 1.00 / 0.90 -> 0.64 / 0.44 masked; sensitivity at the
    validation threshold 1.00 -> 0.27 / 0.00; specificity 0.90 / 0.85 -> 0.00 / 0.10 with a tag pasted
    on every NORMAL image. (The tag itself is only 95% faithful, so "as is" tops out near 0.95.)
    The thresholds sit below the worst of seeds 42, 0, 1, 2 (this project's versions), and of Colab's
    seed 42: AUC as is 1.00 0.99 1.00 0.99 (Colab 0.90); AUC drop when masked 0.36 0.28 0.40 0.40;
    sensitivity drop 0.73 0.80 0.73 1.00; specificity drop with pasted tags 0.90 0.95 0.95 0.95;
    sensitivity drop on the external set 0.87 0.80 0.80 1.00; tagged COVID 1.00, tagged NORMAL 0.05.
    """
    dataset = shortcut.shortcut_dataset(smoke=True, verbose=False)
    image_set = load_images(dataset, 64, progress=False)
    run = quick_cnn(dataset, image_set, epochs=6, batch_size=16, learning_rate=3e-3, seed=42)
    model, metrics = run.keras_model(), run.metrics
    table = shortcut.shortcut_experiment(model, image_set)
    print(table.round(3).to_string())
    as_is, masked, pasted = (table.loc[c] for c in ("marker as is", "marker masked", "marker on every NORMAL"))
    assert metrics["test"]["auc"] == pytest.approx(as_is["auc"], abs=1e-6)
    assert as_is["auc"] > 0.8 and as_is["tagged COVID"] > 0.8 and as_is["tagged NORMAL"] <= 0.25
    assert as_is["auc"] - masked["auc"] > 0.2
    assert as_is["sensitivity"] - masked["sensitivity"] > 0.5
    assert as_is["specificity"] - pasted["specificity"] > 0.5

    plain, split = external.external_dataset(dataset, smoke=True, **shortcut.SHORTCUT_OPTIONS, verbose=False)
    record = external.external_validation(
        model, plain, load_images(plain, 64, progress=False), trained_on=dataset, split=split, n_boot=100
    )
    assert record["threshold"] == pytest.approx(metrics["threshold"])
    assert record["sensitivity"] < as_is["sensitivity"] - 0.5
    summary = external.external_summary([record])
    assert summary.loc[0, "internal test AUC"] == pytest.approx(as_is["auc"])

    labels, views = shortcut.tag_gradcam(model, image_set, n=4)
    with_tag, masked_view = views["with tag"], views["corner masked"]
    assert len(labels) == len(with_tag.images) == 4 and with_tag.heatmaps.shape == with_tag.images.shape
    np.testing.assert_array_equal(masked_view.images, shortcut.mask_marker(with_tag.images))
    # measured (seed 42): 86-89 % of the heat in the tag's corner with the tag, 18-40 % with it masked
    assert with_tag.tag_heat.mean() - masked_view.tag_heat.mean() > 0.2
    fig = plots.plot_shortcut_gradcam(labels, views, threshold=metrics["threshold"])
    assert len(fig.axes) == 12 and "SYNTHETIC" in fig._suptitle.get_text()


def test_tag_helpers_import_without_tensorflow():
    """The masking helpers and the external-dataset choice are NumPy and pandas: no TensorFlow, no Keras."""
    code = ("import sys; from helpers.explain import external, shortcut; from helpers import plots; "
            "shortcut.mask_marker(shortcut.np.zeros((2, 8, 8))); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'xgboost') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"
