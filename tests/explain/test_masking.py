"""The lung-masking experiment (helpers.explain.masking): masks, masking, the table, the figure, the lesson."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from helpers.data.dataset import course_dataset
from helpers.data.synthetic import make_image_and_mask
from helpers.environment import seed_everything
from helpers.explain import masking, shortcut
from helpers.images import load_images, read_image, resize
from helpers.models import build_cnn, train
from helpers.plots.masking import plot_masking

# ------------------------------------------------------------------------------ mask_lungs


def _square_mask(shape, top=10, bottom=20, left=5, right=15):
    mask = np.zeros(shape, bool)
    mask[..., top:bottom, left:right] = True
    return mask


@pytest.mark.parametrize("shape", [(32, 32), (3, 32, 32), (2, 40, 24)])
def test_mask_lungs_keeps_exactly_one_side_without_dilation(shape):
    images = np.full(shape, 200, np.uint8)
    lungs = _square_mask(shape)
    removed = masking.mask_lungs(images, lungs, "outside", dilation=0)
    only = masking.mask_lungs(images, lungs, "lungs", dilation=0)
    assert removed.shape == only.shape == images.shape and removed.dtype == only.dtype == np.uint8
    assert np.all(removed[lungs] == 0) and np.all(removed[~lungs] == 200)
    assert np.all(only[lungs] == 200) and np.all(only[~lungs] == 0)
    assert np.all(images == 200), "the input is not changed in place"


def test_the_two_conditions_are_complementary_with_dilation():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (4, 48, 48)).astype(np.uint8)
    lungs = _square_mask(images.shape, 12, 30, 8, 20)
    removed, only = (masking.mask_lungs(images, lungs, keep, dilation=2) for keep in ("outside", "lungs"))
    assert np.array_equal(removed.astype(int) + only, images), "every pixel is kept in exactly one condition"
    assert (only > 0).sum() > lungs.sum(), "the dilated lungs are larger than the mask"


def test_dilation_grows_the_mask_by_that_many_pixels_and_never_across_images():
    masks = np.zeros((2, 21, 21), bool)
    masks[0, 10, 10] = True
    grown = masking.dilate(masks, 3)
    rows, cols = np.nonzero(grown[0])
    assert np.abs(rows - 10).max() == 3 and np.abs(cols - 10).max() == 3
    assert (np.abs(rows - 10) + np.abs(cols - 10)).max() == 3  # a diamond: 4-connected steps
    assert not grown[1].any(), "a batch's masks are dilated one by one"
    assert masking.dilate(np.zeros((100, 100), bool)).sum() == 0
    one = np.zeros((100, 100), bool)
    one[50, 50] = True
    assert masking.dilate(one).sum() == 2 * 2 * (2 + 1) + 1  # default: 2% of 100 px = 2 px


def test_mask_lungs_refuses_what_it_cannot_mask():
    with pytest.raises(ValueError, match="images' size"):
        masking.mask_lungs(np.zeros((2, 32, 32), np.uint8), np.zeros((2, 16, 16), bool))
    with pytest.raises(ValueError, match="keep must be"):
        masking.mask_lungs(np.zeros((32, 32), np.uint8), np.zeros((32, 32), bool), keep="inside")


# --------------------------------------------------------------------------- lung masks


@pytest.fixture(scope="module")
def tagged(module_course_dirs):
    """A small tagged synthetic set (generated at 64 px) and its images at 32 px."""
    dataset = shortcut.shortcut_dataset(smoke=True, n_patients=24, size=64, verbose=False)
    return dataset, load_images(dataset, 32, progress=False)


def test_synthetic_lung_masks_are_read_at_the_images_size(tagged, capsys):
    dataset, image_set = tagged
    found = masking.load_lung_masks(dataset, image_set)
    test_rows = np.flatnonzero(image_set.manifest["split"] == "test")
    assert f"lung masks: {len(test_rows)} of {len(test_rows)} test images have one" in capsys.readouterr().out
    assert np.array_equal(found.rows, test_rows) and not found.missing
    assert found.masks.shape == (len(test_rows), 32, 32) and found.masks.dtype == bool
    row = image_set.manifest.iloc[test_rows[0]]
    expected = resize(read_image(dataset.root / row["mask"], reduce_to=32), 32) >= 128  # as load_images does
    np.testing.assert_array_equal(found.masks[0], expected)
    share = found.masks.mean()
    assert 0.15 < share < 0.5, f"two lung fields cover a fifth to a half of a synthetic chest, not {share:.2f}"


@pytest.mark.parametrize(("generated", "shown"), [(128, 64), (128, 48), (256, 128), (256, 224)])
def test_the_synthetic_tag_lies_outside_the_dilated_lungs(generated, shown):
    """The premise of the lesson: removing the lungs leaves the whole tag, keeping only the lungs removes it."""
    for seed in range(12):
        tagged, lungs = make_image_and_mask(covid=True, marker=True, size=generated, seed=seed)
        plain, same = make_image_and_mask(covid=True, marker=False, size=generated, seed=seed)
        assert np.array_equal(lungs, same)
        tag = resize(tagged, shown) != resize(plain, shown)
        lungs = resize(lungs, shown) >= 128
        assert tag.any() and not (tag & masking.dilate(lungs)).any()
        only = masking.mask_lungs(tagged, same, "lungs")  # at the generated size: the tag is gone
        np.testing.assert_array_equal(only, masking.mask_lungs(plain, same, "lungs"))


def test_rows_without_a_mask_are_reported_and_left_out(tagged, tmp_path, capsys):
    dataset, image_set = tagged
    manifest = image_set.manifest.copy()
    test_rows = np.flatnonzero(manifest["split"] == "test")
    manifest.loc[test_rows[0], "mask"] = ""
    manifest.loc[test_rows[1], "mask"] = np.nan
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    manifest.loc[test_rows[2], "mask"] = str(broken)  # absolute: root / absolute is the absolute path
    edited = type(image_set)(image_set.images, manifest)
    found = masking.load_lung_masks(dataset, edited)
    out = capsys.readouterr().out
    assert f"{len(test_rows) - 3} of {len(test_rows)} test images have one; 3 left out" in out
    assert manifest.loc[test_rows[0], "path"] in out
    assert np.array_equal(found.rows, test_rows[3:]) and len(found) == len(test_rows) - 3
    assert [why for _, why in found.missing[:2]] == ["no lung mask", "no lung mask"]
    assert found.missing[2][0] == manifest.loc[test_rows[2], "path"] and "unreadable" in found.missing[2][1]
    without = type(image_set)(image_set.images, manifest.drop(columns="mask"))
    assert not masking.has_masks(without.manifest) and masking.has_masks(image_set.manifest)
    assert len(masking.load_lung_masks(dataset, without, verbose=False)) == 0


# ---------------------------------------------------------------------- the experiment


def _corner_reader(images):
    """A "model" that reads only the tag's corner: the brighter the corner, the more COVID."""
    rows, cols = shortcut.marker_region(images.shape)
    return images[:, rows, cols].mean(axis=(1, 2)) / 255.0


def test_a_reader_of_the_tag_keeps_its_auc_without_the_lungs_and_loses_it_without_the_rest(tagged):
    dataset, image_set = tagged
    found = masking.load_lung_masks(dataset, image_set, verbose=False)
    table = masking.masking_experiment(_corner_reader, image_set, found, n_boot=100)
    assert list(table.index) == ["as is", "lungs removed", "only the lungs"]
    assert table.loc["as is", "auc"] > 0.8
    assert table.loc["lungs removed", "auc"] == table.loc["as is", "auc"]  # the corner is untouched
    assert table.loc["lungs removed", "auc drop"] == 0
    assert table.loc["only the lungs", "auc"] == 0.5  # an all-black corner: one score for every image
    assert table.loc["only the lungs", "auc drop"] == pytest.approx(table.loc["as is", "auc"] - 0.5)
    assert (table["auc low"] <= table["auc"]).all() and (table["auc"] <= table["auc high"]).all()
    assert (table["n"] == len(found)).all() and table.attrs["left_out"] == 0 and table.attrs["dilation"] == 1
    shown = masking.format_masking({"corner": table, "again": table})
    assert shown.index.tolist()[:2] == [("corner", "as is"), ("corner", "lungs removed")] and len(shown) == 6
    auc, low, high = table.loc["as is", ["auc", "auc low", "auc high"]]
    interval = "" if low == high == auc else f" ({low:.2f}-{high:.2f})"  # a degenerate interval is not shown
    assert shown.loc[("corner", "as is"), "AUC (95% CI)"] == f"{auc:.2f}{interval}"
    val = image_set.manifest["split"] == "val"
    expected = masking.choose_threshold(image_set.manifest["label"][val], _corner_reader(image_set.images[val]))
    assert table.attrs["threshold"] == expected, "the threshold comes from the validation split, as is"
    assert masking.masking_experiment(_corner_reader, image_set, found, 0.9, n_boot=10).attrs["threshold"] == 0.9


def test_the_masking_figure(tagged):
    dataset, image_set = tagged
    found = masking.load_lung_masks(dataset, image_set, verbose=False)
    table = masking.masking_experiment(_corner_reader, image_set, found, n_boot=50)
    conditions = masking.masking_conditions(image_set.images[found.rows[:2]], found.masks[:2])
    fig = plot_masking(conditions, {"corner reader": table, "again": table}, ["COVID", "NORMAL"], synthetic=True,
                       title="masking")
    assert len(fig.axes) == 2 * 3 + 1 and "SYNTHETIC DATA" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == list(table.index)
    assert np.array_equal(fig.axes[1].images[0].get_array(), conditions["as is"][1])


def test_the_predictor_of_a_saved_keras_run(tmp_path):
    model = build_cnn(32, filters=(4,), augment=False)
    model.save(tmp_path / "model.keras")
    predict_fn, size = masking.run_predictor(SimpleNamespace(path=tmp_path))
    assert size == 32 and predict_fn(np.zeros((3, 32, 32), np.uint8)).shape == (3,)
    assert masking.run_predictor(SimpleNamespace(path=tmp_path / "none")) is None


# ------------------------------------------------------------------------------ the lesson


@pytest.mark.slow
def test_a_tag_reader_keeps_its_auc_without_the_lungs_and_a_lung_reader_loses_it(course_dirs):
    """The lesson, measured on the SMOKE synthetic sets: quick CNNs, 6 epochs at 64 px, 35 test images.

    Test AUC as is / lungs removed / only the lungs, at 64 px after 6 epochs (this project's versions):
    - trained on the tagged set (tag outside the lungs, faint opacities), seeds 42, 0, 1, 2:
      1.00 / 1.00 / 0.66, 0.99 / 0.99 / 0.50, 1.00 / 1.00 / 0.52, 0.99 / 0.99 / 0.52;
    - trained on the plain set (opacities inside the lungs), same seeds:
      1.00 / 0.53 / 0.93, 1.00 / 0.52 / 0.95, 1.00 / 0.53 / 0.91, 1.00 / 0.50 / 0.89.
    With Colab's versions (make test-colab), seed 42, the tag reader gave 0.90 as is and 0.77 with only
    the lungs: the drop on the lungs alone is the least stable number, so its threshold is the lowest.
    The other thresholds leave a margin of at least 0.1 to every measured value.
    """
    sets = {"tag": shortcut.shortcut_dataset(smoke=True, verbose=False),
            "lungs": course_dataset("synthetic", smoke=True, verbose=False)}
    tables = {}
    for reader, dataset in sets.items():
        image_set = load_images(dataset, 64, progress=False)
        seed_everything(42)
        model = build_cnn(64, seed=42)
        train.fit(model, image_set, epochs=6, batch_size=16, learning_rate=3e-3, seed=42, verbose=0)
        tables[reader] = masking.masking_experiment(model, image_set, masking.load_lung_masks(dataset, image_set),
                                                    n_boot=200)
        print(reader, tables[reader].round(3).to_string(), sep="\n")
    tag, lungs = tables["tag"]["auc"], tables["lungs"]["auc"]
    assert tag["as is"] > 0.85 and lungs["as is"] > 0.85
    assert tag["lungs removed"] > 0.8, "the tag reader does not need the lungs"
    assert tag["as is"] - tag["only the lungs"] > 0.05, "... and does worse when only the lungs are left"
    assert lungs["lungs removed"] < 0.65, "the lung reader is near chance without the lungs"
    assert lungs["as is"] - lungs["lungs removed"] > 0.25
    assert lungs["only the lungs"] > 0.75, "... and keeps most of its AUC on the lungs alone"


def test_the_best_predictor_is_chosen_on_validation_and_hybrids_are_scored_by_their_own_predict(tmp_path):
    folders = {name: tmp_path / name for name in ("weak", "strong", "unsaved")}
    for name in ("weak", "strong"):
        folders[name].mkdir()
        build_cnn(32, filters=(4,), augment=False).save(folders[name] / "model.keras")
    runs = [SimpleNamespace(path=folders["weak"], metrics={"val": {"auc": 0.7}, "test": {"auc": 0.99}}),
            SimpleNamespace(path=folders["strong"], metrics={"val": {"auc": 0.8}, "test": {"auc": 0.6}}),
            SimpleNamespace(path=folders["unsaved"], metrics={"val": {"auc": 0.9}})]
    run, predict_fn, size = masking.best_predictor(runs)
    assert run is runs[1] and size == 32, "the highest validation AUC among the saved models, never the test AUC"
    assert masking.best_predictor(runs[2:]) is None

    class FakeHybrid:
        def predict_features(self, features):
            raise AssertionError("not called")

        def predict(self, images, *, batch_size=32):
            return images.mean(axis=(1, 2)) / 255.0

    images = np.stack([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)])
    np.testing.assert_allclose(masking.as_predict_fn(FakeHybrid())(images), [0.0, 1.0])
    with pytest.raises(TypeError, match="Keras model"):
        masking.as_predict_fn("model.keras")


def test_a_three_class_model_is_scored_on_its_covid_column():
    def three_class(images):  # NORMAL, PNEUMONIA, COVID: COVID grows with brightness
        covid = images.mean(axis=(1, 2)) / 255.0
        return np.column_stack([(1 - covid) / 2, (1 - covid) / 2, covid])

    images = np.stack([np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)])
    np.testing.assert_allclose(masking.as_predict_fn(three_class)(images), [0.0, 1.0])
    model = build_cnn(32, filters=(8,), classes=3)
    batch = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    np.testing.assert_allclose(masking.as_predict_fn(model)(batch), train.predict(model, batch)[:, 2])
