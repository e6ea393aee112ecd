"""helpers.explore on real files (ieee8023-mini, kermany-mini) and on the synthetic marker set."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from helpers import explore  # noqa: E402
from helpers.data.dataset import Dataset, course_dataset, load_dataset, near_duplicates  # noqa: E402
from helpers.data.sources import IEEE8023_COMMIT  # noqa: E402
from helpers.data.synthetic import make_image  # noqa: E402
from helpers.images import load_images  # noqa: E402
from helpers.plots import exploration as figures  # noqa: E402

SIZE = 32  # cached image size: thumbnails are 16x16, so 32 px is plenty and fast
FOLDS = 3  # fewer cross-validation folds than the default 5: the same lesson, faster
OFFLINE = "http://127.0.0.1:9"  # a closed port: any download attempt fails at once instead of going online


@pytest.fixture(scope="module")
def ieee(shared_data, module_course_dirs):
    """ieee8023-mini through the real ``ieee8023`` parser: its files are linked where the source expects them."""
    root = module_course_dirs[0] / "ieee8023" / IEEE8023_COMMIT[:7]
    root.parent.mkdir(parents=True)
    root.symlink_to(shared_data / "ieee8023-mini", target_is_directory=True)
    return load_dataset("ieee8023", base_url=OFFLINE, progress=False, verbose=False)


@pytest.fixture(scope="module")
def kermany(shared_data, module_course_dirs):
    """The pediatric normals of kermany-mini, read in place as a folder dataset, source named ``kermany``."""
    dataset = load_dataset("folder", path=shared_data / "kermany-mini", verbose=False)
    return dataclasses.replace(dataset, manifest=dataset.manifest.assign(source="kermany"))


@pytest.fixture(scope="module")
def mix(ieee, kermany):
    dataset = explore.shortcut_mix(ieee, kermany)
    return dataset, load_images(dataset, SIZE, progress=False)


@pytest.fixture(scope="module")
def marked(module_course_dirs):
    dataset = course_dataset("synthetic", smoke=True, marker=True, n_patients=60, size=64, verbose=False)
    return dataset, load_images(dataset, SIZE, progress=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def row(table: pd.DataFrame, features: str, target: str = "source") -> pd.Series:
    return table[(table["target"] == target) & (table["features"] == explore.FEATURES[features])].iloc[0]


# --- experiment (a): leakage ----------------------------------------------------------------------


def test_image_level_split_leaks_patients_and_patient_split_does_not(ieee):
    assert ieee.manifest["patient_id"].value_counts().max() >= 3  # several images per patient
    table = explore.leakage(ieee, seed=0, test_fraction=0.2)
    leaked = table["patients in train and test"]
    assert leaked["image-level random split"] > 0
    assert table.loc["image-level random split", "test images of those patients"] > 0
    assert leaked["patient-level split"] == 0
    assert leaked["this dataset's split"] == 0
    n = len(ieee.manifest)
    assert abs(table.loc["image-level random split", "test images"] - 0.2 * n) <= 1


def test_leakage_counts_near_duplicate_groups_and_the_course_split_keeps_them_together(kermany):
    duplicates = near_duplicates(kermany)
    assert duplicates  # kermany-mini holds the same study at two sizes
    table = explore.leakage(kermany, duplicates=duplicates)
    assert table.loc["this dataset's split", "near-duplicate groups in train and test"] == 0
    pairs = explore.near_duplicate_pairs(kermany, groups=duplicates)
    assert len(pairs) >= len(duplicates)
    assert pairs["same_split"].all()
    assert not pairs["same_patient"].any()  # one id per file: only the hashes tie them together


# --- experiment (b): shortcuts --------------------------------------------------------------------


def test_source_is_predictable_on_adult_covid_plus_pediatric_normals(mix):
    dataset, images = mix
    assert set(dataset.manifest["source"]) == {"ieee8023", "kermany"}
    tables = [explore.shortcut_summary(dataset, images, folds=FOLDS, seed=seed) for seed in range(3)]  # CV folds
    # Measured with cross-validation seeds 0-4: thumbnail AUC 0.99 0.98 0.99 0.98 0.99 (the shortcut);
    # image statistics 0.95 0.94 0.95 0.95 0.95 (image sizes alone give the source away).
    assert min(row(table, "thumbnail")["AUC"] for table in tables) > 0.9
    assert min(row(table, "statistics")["AUC"] for table in tables) > 0.85
    for table in tables:
        thumbnail = row(table, "thumbnail")
        assert thumbnail["accuracy"] > thumbnail["majority accuracy"]
        assert row(table, "source", target="label")["AUC"] == 1.0  # the source alone is the label


def test_source_is_predictable_on_the_synthetic_marker_set(marked):
    dataset, images = marked
    assert set(dataset.manifest["source"]) == {"synthetic-a", "synthetic-b"}
    table = explore.source_predictability(dataset, images, features=("thumbnail",), folds=FOLDS)
    assert row(table, "thumbnail")["AUC"] > 0.9
    label = explore.source_predictability(dataset, images, target="label", features=("source",), folds=FOLDS)
    assert label.loc[0, "AUC"] > 0.75  # the marker goes with COVID 90% of the time; data seeds 0-4: 0.88-0.89


def test_one_source_gives_an_empty_table_and_says_why(ieee, capsys):
    images = load_images(ieee, SIZE, progress=False)
    capsys.readouterr()
    table = explore.source_predictability(ieee, images)
    assert table.empty
    assert "only one source ('ieee8023')" in capsys.readouterr().out


def test_file_format_alone_predicts_the_label_when_formats_differ_by_class(tmp_path, module_course_dirs):
    """The COVID-CT trap: COVID slices stored as PNG, most others as JPEG."""
    records = []
    for i in range(16):
        covid = i % 2 == 0
        path = f"{'COVID' if covid else 'NORMAL'}/{i}.{'png' if covid else 'jpg'}"
        (tmp_path / path).parent.mkdir(exist_ok=True)
        Image.fromarray(make_image(modality="ct", covid=covid, size=32, seed=i)).save(tmp_path / path)
        records.append({"path": path, "label": "COVID" if covid else "NORMAL", "patient_id": f"p{i}",
                        "source": "ct", "modality": "ct", "view": "axial", "sex": "", "age": np.nan,
                        "split": "train"})
    manifest = pd.DataFrame(records)
    dataset = Dataset(name="fake-ct", root=tmp_path, manifest=manifest, modality="ct", synthetic=False)
    images = load_images(dataset, 16, progress=False)
    formats = explore.file_formats(dataset)
    assert formats.loc[".png", "COVID"] == 8 and formats.loc[".jpg", "NORMAL"] == 8
    assert formats.loc[".png", "NORMAL"] == 0
    table = explore.source_predictability(dataset, images, target="label", features=("file format",), folds=4)
    assert table.loc[0, "AUC"] == 1.0


# --- tables, statistics, mixing ---------------------------------------------------------------------


def test_image_statistics_have_one_row_per_image_and_header_sizes(mix):
    dataset, images = mix
    stats = explore.image_statistics(dataset, images)
    assert len(stats) == len(images)
    assert {"width", "height", "format", "mode", "mean", "contrast", "extension"} <= set(stats.columns)
    kermany = stats[stats["source"] == "kermany"]
    with Image.open(dataset.root / kermany["path"].iloc[0]) as image:
        assert (kermany["width"].iloc[0], kermany["height"].iloc[0]) == image.size
    assert stats["mean"].between(0, 255).all() and (stats["contrast"] > 0).all()
    expected = images.images.reshape(len(images), -1).mean(axis=1)
    assert np.allclose(stats["mean"], expected)


def test_tables_add_up(ieee):
    manifest = ieee.manifest
    balance = explore.class_balance(ieee)
    assert balance.loc["all", "total"] == len(manifest)
    assert list(balance.index) == ["train", "val", "test", "all"]
    patients = explore.patients(ieee)
    assert patients.loc["all", "patients"] == manifest["patient_id"].nunique()
    assert patients.loc["all", "patients with 2+ images"] > 0
    per_patient = explore.images_per_patient(ieee)
    assert per_patient.to_numpy().sum() == manifest.groupby(["patient_id", "label"]).ngroups
    views = explore.views(ieee)
    assert {"PA", "AP"} <= set(views.index) and views.loc["all", "all"] == len(manifest)
    people = explore.demographics(ieee)
    assert people.loc["COVID", "age known"] == pd.to_numeric(
        manifest.loc[manifest["label"] == "COVID", "age"], errors="coerce").notna().sum()
    assert {"sex F", "sex M"} <= set(people.columns)


def test_shortcut_mix_takes_covid_from_one_and_normal_from_the_other(mix, ieee, kermany):
    dataset, _ = mix
    manifest = dataset.manifest
    assert all((dataset.root / path).is_file() for path in manifest["path"])
    assert set(manifest.loc[manifest["source"] == "ieee8023", "label"]) == {"COVID"}
    assert set(manifest.loc[manifest["source"] == "kermany", "label"]) == {"NORMAL"}
    assert (manifest.groupby("patient_id")["split"].nunique() == 1).all()
    assert not dataset.synthetic
    with pytest.raises(ValueError, match="no COVID images"):
        explore.shortcut_mix(kermany, kermany)


def test_pediatric_mix_uses_chest_xray_pneumonia_normals(ieee, shared_data, tmp_path):
    copy = tmp_path / "chest_xray"
    (copy / "train").mkdir(parents=True)
    (copy / "test" / "NORMAL").mkdir(parents=True)
    (copy / "train" / "NORMAL").symlink_to(shared_data / "kermany-mini" / "NORMAL", target_is_directory=True)
    mixed = explore.pediatric_mix(ieee, path=copy)
    assert set(mixed.manifest["source"]) == {"ieee8023", "chest-xray-pneumonia"}
    assert (mixed.manifest["source"] == "chest-xray-pneumonia").sum() == 36


def test_pediatric_mix_is_skipped_for_synthetic_data(marked, capsys):
    assert explore.pediatric_mix(marked[0]) is None
    assert "skipped" in capsys.readouterr().out


# --- figures ----------------------------------------------------------------------------------------


def test_figures_are_marked_synthetic_only_on_synthetic_data(marked, mix):
    for (dataset, images), synthetic in ((marked, True), (mix, False)):
        stats = explore.image_statistics(dataset, images)
        drawn = [
            figures.plot_class_balance(dataset),
            figures.plot_images_per_patient(dataset),
            figures.plot_demographics(dataset, by="source"),
            figures.plot_image_statistics(dataset, stats, hue="source"),
            figures.plot_sample_grid(dataset, images, n_per_class=3),
            figures.plot_mean_images(dataset, images),
            figures.plot_predictability(dataset, explore.source_predictability(
                dataset, images, features=("statistics",), stats=stats, folds=FOLDS)),
        ]
        for figure in drawn:
            assert isinstance(figure, plt.Figure)
            assert ("SYNTHETIC DATA" in figure._suptitle.get_text()) is synthetic


def test_sample_grid_has_a_row_per_class(marked):
    dataset, images = marked
    figure = figures.plot_sample_grid(dataset, images, n_per_class=3)
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == 6
    assert {ax.get_title().split("\n")[0] for ax in shown} == {"COVID", "NORMAL"}


def test_near_duplicate_figure_shows_pairs_or_says_none(kermany, marked):
    pairs = explore.near_duplicate_pairs(kermany)
    figure = figures.plot_near_duplicates(kermany, pairs, n=2)
    assert len([ax for ax in figure.axes if ax.images]) == 4
    empty = figures.plot_near_duplicates(marked[0], pairs.iloc[:0])
    assert "no near-duplicates" in empty.axes[0].texts[0].get_text()
