"""helpers.explain.overlap: external images that near-duplicate train or val images are dropped (real files from
../shared/data), and a one-class external set reports the one defined rate, with its interval and a note."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.data.dataset import Dataset
from helpers.explain.overlap import external_overlap, external_scores, single_class_note

# A pair of near-duplicate X-rays that really are in ieee8023-mini under two names (found by the hash).
TWIN_SEEN, TWIN_EXTERNAL = "F4341CE7-73C9-45C6-99C8-8567A5484B63.jpeg", "E63574A7-4188-4C8D-8D17-9D67A18A1AFA.jpeg"
OTHER_TWINS = {"D5ACAA93-C779-4E22-ADFA-6A220489F840.jpeg", "35AF5C3B-D04D-4B4B-92B7-CB1F67D83085.jpeg"}


def dataset(name, root, paths, splits) -> Dataset:
    manifest = pd.DataFrame({"path": paths, "label": "COVID", "patient_id": [f"{name}-{i}" for i in range(len(paths))],
                             "source": name, "modality": "xray", "view": "PA", "sex": None, "age": None,
                             "split": splits})
    return Dataset(name=name, root=root, manifest=manifest, modality="xray", synthetic=False)


@pytest.fixture(scope="module")
def xray_names(shared_data):
    meta = pd.read_csv(shared_data / "ieee8023-mini" / "metadata.csv")
    names = meta.loc[meta["modality"] == "X-ray", "filename"].drop_duplicates()
    return [n for n in names if n not in OTHER_TWINS | {TWIN_SEEN, TWIN_EXTERNAL}]


@pytest.fixture(scope="module")
def sets(shared_data, xray_names, tmp_path_factory):
    """``seen``: 16 real X-rays (train, val, test) and one twin; ``external``: a resized JPEG copy of a train image,
    the other twin, a copy of a *test* image, and 6 X-rays the model never saw."""
    images = shared_data / "ieee8023-mini" / "images"
    seen_names = [TWIN_SEEN, *xray_names[:16]]
    splits = ["train"] + ["train", "val", "test", "train"] * 4
    seen = dataset("seen", images, seen_names, splits)
    folder = tmp_path_factory.mktemp("external")
    copied = Image.open(images / xray_names[0]).convert("L")
    copied.resize((copied.width // 2, copied.height // 2)).save(folder / "copy-of-train.jpg", quality=70)
    shutil.copy(images / TWIN_EXTERNAL, folder / TWIN_EXTERNAL)
    test_image = seen_names[splits.index("test")]
    shutil.copy(images / test_image, folder / "copy-of-test.jpeg")
    fresh = xray_names[16:22]
    for name in fresh:
        shutil.copy(images / name, folder / name)
    external = dataset("external", folder, ["copy-of-train.jpg", TWIN_EXTERNAL, "copy-of-test.jpeg", *fresh],
                       ["test"] * 9)
    return seen, external, fresh


def test_copies_of_train_and_val_images_are_dropped_and_counted(sets, xray_names):
    seen, external, fresh = sets
    overlap = external_overlap(external, seen)
    assert overlap.n_compared == 13  # train and val only
    assert overlap.dropped["path"].tolist() == ["copy-of-train.jpg", TWIN_EXTERNAL]
    assert overlap.dropped["matches"].tolist() == [[xray_names[0]], [TWIN_SEEN]]
    assert overlap.kept["path"].tolist() == ["copy-of-test.jpeg", *fresh]  # distinct images and test copies stay
    assert overlap.n_dropped == 2 and overlap.note.startswith("2 of 9 external images look like train or val images")


def test_distinct_images_are_not_caught(sets):
    seen, external, fresh = sets
    only_fresh = Dataset(name="fresh", root=external.root, manifest=external.manifest[external.manifest["path"].isin(fresh)],
                         modality="xray", synthetic=False)
    overlap = external_overlap(only_fresh, seen)
    assert overlap.n_dropped == 0 and len(overlap.kept) == 6
    assert overlap.note.startswith("none of the 6 external images is a near-duplicate")


def test_a_split_of_the_external_set(sets):
    seen, external, _ = sets
    assert len(external_overlap(external, seen, split="train").kept) == 0


def one_class_frame():
    """10 COVID patients, 2 images each; 15 of the 20 images called COVID at 0.5."""
    prob = np.array([0.9] * 15 + [0.1] * 5)
    return np.ones(20, int), prob, np.repeat(np.arange(10), 2)


def test_a_set_without_normal_images_reports_sensitivity_alone():
    y, prob, patients = one_class_frame()
    record = external_scores(y, prob, patients, threshold=0.5, n_boot=500)
    assert record["sensitivity"] == 0.75
    assert 0.4 < record["sensitivity_low"] < 0.75 < record["sensitivity_high"] <= 1.0
    for metric in ("auc", "specificity"):
        assert record[metric] is record[f"{metric}_low"] is record[f"{metric}_high"] is None
    assert record["note"] == ("the set holds COVID images only (no NORMAL): AUC and specificity are undefined, "
                              "so only sensitivity is reported, with its interval")
    assert (record["n"], record["n_positive"], record["n_patients"]) == (20, 20, 10)


def test_a_set_without_covid_images_reports_specificity_alone():
    y, prob, patients = one_class_frame()
    record = external_scores(1 - y, prob, patients, threshold=0.5, n_boot=200)
    assert record["specificity"] == 0.25 and record["sensitivity"] is None and record["auc"] is None
    assert "no COVID" in record["note"] and "only specificity" in record["note"]


def test_both_classes_have_every_metric_and_no_note():
    y = np.array([1, 1, 0, 0, 1, 0])
    record = external_scores(y, [0.9, 0.4, 0.2, 0.6, 0.8, 0.1], np.arange(6), threshold=0.5, n_boot=200)
    assert record["note"] is None and single_class_note(y) is None
    assert record["auc"] == pytest.approx(8 / 9)  # 8 of the 9 COVID-NORMAL pairs ranked right
    assert record["sensitivity"] == pytest.approx(2 / 3) and record["specificity"] == pytest.approx(2 / 3)
    assert record["auc_low"] <= record["auc"] <= record["auc_high"]


def test_an_empty_set():
    assert single_class_note([]) == "no images: nothing can be measured"
    assert external_scores([], [], [], threshold=0.5)["auc"] is None


def test_external_validation_scores_only_what_the_model_never_saw(sets, course_dirs):
    """The wiring: near-duplicates dropped before scoring, and a COVID-only set reported as such."""
    from helpers.explain import external
    from helpers.images import load_images
    from helpers.models import build_cnn

    seen, external_set, _ = sets
    image_set = load_images(external_set, 32, progress=False)
    overlap = external_overlap(external_set, seen)
    record = external.external_validation(build_cnn(32, filters=(4, 8), augment=False), external_set, image_set,
                                          trained_on="seen", n_boot=50, overlap=overlap)
    assert (record["n"], record["near_duplicates_dropped"], record["n_positive"]) == (7, 2, 7)
    assert record["auc"] is None and record["specificity"] is None and record["sensitivity"] is not None
    assert "AUC and specificity are undefined" in record["note"]
    assert (course_dirs[1] / "seen" / "external" / "cnn-on-external.json").is_file()
