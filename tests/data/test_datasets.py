"""Datasets: synthetic generator, patient-level split, offline fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.app.runner import PROFILES
from helpers.data import synthetic
from helpers.data.dataset import (
    SYNTHETIC_BANNER,
    cap_per_class,
    course_dataset,
    dataset_info,
    describe,
    load_dataset,
    patient_split,
)
from helpers.data.registry import mixed_sources_note
from helpers.data.sources import SourceUnavailable


def crossing_patients(manifest: pd.DataFrame) -> set[str]:
    parts = manifest.groupby("patient_id")["split"].nunique()
    return set(parts[parts > 1].index)


def test_split_of_ieee8023_mini_keeps_each_patient_in_one_part_and_is_reproducible(ieee_server, course_dirs):
    options = dict(base_url=ieee_server.url, progress=False, findings={"COVID-19": "COVID", "SARS": "NORMAL",
                                                                        "No Finding": "NORMAL"})
    first = load_dataset("ieee8023", strict=True, verbose=False, **options)
    second = load_dataset("ieee8023", strict=True, verbose=False, **options)
    manifest = first.manifest
    assert manifest["patient_id"].value_counts().max() > 1  # several images per patient
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert crossing_patients(manifest) == set()
    pd.testing.assert_frame_equal(manifest, second.manifest)
    assert first.key == second.key
    other_seed = load_dataset("ieee8023", strict=True, verbose=False, seed=7, **options).manifest
    assert not other_seed["split"].equals(manifest["split"])


def test_an_image_level_split_would_leak_patients_where_the_patient_split_does_not(ieee_server, course_dirs):
    manifest = load_dataset("ieee8023", strict=True, verbose=False, base_url=ieee_server.url, progress=False).manifest
    rng = np.random.default_rng(0)
    image_level = manifest.assign(split=rng.choice(["train", "val", "test"], len(manifest), p=[0.7, 0.15, 0.15]))
    assert len(crossing_patients(image_level)) > 0
    assert crossing_patients(manifest) == set()


def test_split_is_stratified_and_respects_an_official_test_part():
    rows = pd.DataFrame({
        "patient_id": [f"p{i // 2}" for i in range(400)],
        "label": ["COVID" if (i // 2) % 3 == 0 else "NORMAL" for i in range(400)],
        "split": ["test" if i < 40 else "" for i in range(400)],
    })
    split = patient_split(rows, seed=1)
    assert (split[:40] == "test").all() and set(split[40:]) == {"train", "val"}
    share = rows.assign(split=split).groupby("split")["label"].apply(lambda s: (s == "COVID").mean())
    assert abs(share["train"] - share["val"]) < 0.1
    assert crossing_patients(rows.assign(split=split)) == set()


def test_cap_per_class_takes_whole_patients():
    rows = pd.DataFrame({"patient_id": [f"p{i // 3}" for i in range(90)], "label": ["COVID"] * 45 + ["NORMAL"] * 45})
    capped = cap_per_class(rows, 10)
    assert (capped["label"].value_counts() <= 10).all()
    kept = capped.groupby("patient_id").size()
    assert kept.equals(rows.groupby("patient_id").size().loc[kept.index])  # whole patients only
    assert len(capped) >= 18


def test_synthetic_generator_is_deterministic_and_groups_images_by_patient(tmp_path):
    a = synthetic.generate(tmp_path / "a", n_patients=12, size=64, seed=3)
    b = synthetic.generate(tmp_path / "b", n_patients=12, size=64, seed=3)
    pd.testing.assert_frame_equal(a, b)
    for path in a["path"]:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    per_patient = a.groupby("patient_id").agg(n=("path", "size"), labels=("label", "nunique"),
                                             ages=("age", "nunique"))
    assert per_patient["n"].max() > 1 and (per_patient["labels"] == 1).all() and (per_patient["ages"] == 1).all()
    assert set(a["label"]) == {"COVID", "NORMAL"}
    c = synthetic.generate(tmp_path / "c", n_patients=12, size=64, seed=4)
    assert not a["label"].equals(c["label"]) or not a["path"].equals(c["path"]) or any(
        (tmp_path / "a" / p).read_bytes() != (tmp_path / "c" / p).read_bytes() for p in a["path"])


def test_covid_images_have_lower_zone_opacities_that_normal_ones_lack():
    normal = synthetic.make_image(covid=False, severity=0.0, size=128, seed=1).astype(float)
    covid = synthetic.make_image(covid=True, severity=0.3, size=128, seed=1).astype(float)
    difference = covid - normal  # same patient and film; only the disease differs
    lower_left, lower_right = difference[72:88, 24:48], difference[72:88, 80:104]
    upper = difference[24:40, 24:48]
    assert lower_left.mean() - upper.mean() > 30 and lower_right.mean() - upper.mean() > 30


def test_marker_is_correlated_with_the_label_and_names_two_sources(course_dirs):
    dataset = course_dataset("synthetic", smoke=True, marker=True)
    rows = dataset.manifest
    assert dataset.name == "synthetic-marker"
    rate = rows.groupby("label")["marker"].mean()
    assert rate["COVID"] > 0.75 and rate["NORMAL"] < 0.25
    assert set(rows["source"]) == {"synthetic-a", "synthetic-b"}
    assert (rows["source"] == "synthetic-a").equals(rows["marker"].astype(bool))


def test_unreachable_dataset_falls_back_to_synthetic_with_the_banner(course_dirs, capsys):
    dataset = load_dataset("ieee8023", base_url="http://127.0.0.1:9/", retries=0, progress=False)
    assert dataset.synthetic and dataset.name == "synthetic" and dataset.requested == "ieee8023"
    assert "Could not load dataset 'ieee8023'" in dataset.notes[0]
    printed = capsys.readouterr().out
    assert "Falling back to 'synthetic'" in printed and SYNTHETIC_BANNER in printed
    assert SYNTHETIC_BANNER in describe(dataset)
    info = (course_dirs[1] / "synthetic" / "dataset.json").read_text()
    assert '"requested": "ieee8023"' in info and '"synthetic": true' in info


def test_strict_mode_fails_with_a_clear_message(course_dirs):
    with pytest.raises(SourceUnavailable, match=r"ieee8023[\s\S]*strict mode: not falling back"):
        load_dataset("ieee8023", strict=True, base_url="http://127.0.0.1:9/", retries=0, progress=False)


def test_ct_falls_back_to_synthetic_ct(course_dirs):
    dataset = load_dataset("covid-ct", base_url="http://127.0.0.1:9/", retries=0, progress=False,
                           synthetic_options={"n_patients": 10, "size": 64}, verbose=False)
    assert dataset.name == "synthetic-ct" and dataset.modality == "ct"
    assert (dataset.manifest["modality"] == "ct").all()


TINY = {"n_patients": 30, "size": 32, "verbose": False}


def test_each_cap_saves_its_own_manifest_and_dataset_json(course_dirs):
    whole = load_dataset("synthetic", **TINY)
    capped = load_dataset("synthetic", max_per_class=20, **TINY)
    folder = course_dirs[1] / "synthetic"
    assert sorted(path.name for path in folder.iterdir()) == [
        "dataset-cap20.json", "dataset.json", "manifest-cap20.csv", "manifest.csv"]
    assert dataset_info("synthetic")["test_fingerprint"] == whole.test_fingerprint
    assert dataset_info("synthetic", 20)["test_fingerprint"] == capped.test_fingerprint != whole.test_fingerprint
    assert dataset_info("synthetic", 20)["max_per_class"] == 20
    assert len(pd.read_csv(folder / "manifest-cap20.csv")) == len(capped.manifest) < len(whole.manifest)
    assert dataset_info("synthetic", 99) is None
    assert dataset_info("synthetic", 20, root=course_dirs[1]) == dataset_info("synthetic", 20)
    assert dataset_info("synthetic", root=course_dirs[0]) is None


def test_another_content_never_overwrites_an_earlier_dataset_json(course_dirs, capsys):
    first = load_dataset("synthetic", **TINY)
    second = load_dataset("synthetic", **{**TINY, "n_patients": 24})
    assert first.key != second.key
    assert dataset_info("synthetic")["key"] == second.key
    kept = course_dirs[1] / "synthetic" / f"dataset.{first.key}.json"
    assert kept.is_file() and (course_dirs[1] / "synthetic" / f"manifest.{first.key}.csv").is_file()
    assert dataset_info("synthetic", fingerprint=first.test_fingerprint)["key"] == first.key
    assert "it was kept as" in capsys.readouterr().out
    load_dataset("synthetic", **{**TINY, "n_patients": 24})  # the same content again: saved in place
    assert {p.name for p in kept.parent.glob("dataset*.json")} == {"dataset.json", kept.name}


def test_a_marker_name_loads_the_tagged_variant(course_dirs):
    dataset = load_dataset("synthetic-marker", **TINY)
    assert dataset.name == "synthetic-marker" and dataset.manifest["marker"].any()
    assert (course_dirs[1] / "synthetic-marker" / "dataset.json").is_file()


def test_a_note_says_when_a_collection_gives_one_class_only():
    rows = pd.DataFrame({"label": ["COVID", "COVID", "NORMAL", "NORMAL"], "source": ["sirm", "bimcv", "rsna", "bimcv"]})
    (note,) = mixed_sources_note(rows)
    assert "COVID only: sirm; NORMAL only: rsna" in note and "upper bound" in note
    assert mixed_sources_note(rows.assign(source=["a", "b", "a", "b"])) == []  # both classes from each source
    assert mixed_sources_note(rows.assign(source="ieee8023")) == []


@pytest.mark.parametrize("modality", ["xray", "ct"])
def test_synthetic_lung_masks_cover_the_dark_lung_fields(modality):
    for seed in range(5):
        image, mask = synthetic.make_image_and_mask(modality=modality, covid=seed % 2 == 1, size=96, seed=seed)
        inside = mask == 255
        assert set(np.unique(mask)) == {0, 255} and 0.1 < inside.mean() < 0.5
        assert image[inside].mean() + 20 < image[~inside & (image > 40)].mean()  # lungs darker than the body


def test_synthetic_rows_name_a_mask_per_image(course_dirs):
    dataset = load_dataset("synthetic", **TINY)
    for image, mask in zip(dataset.manifest["path"][:5], dataset.manifest["mask"][:5]):
        assert mask == image.replace("images/", "masks/")
        assert Image.open(dataset.root / mask).size == Image.open(dataset.root / image).size


def test_the_cap_is_one_course_wide_setting():
    """Every notebook defaults to no cap and only a profile's common settings change it: one test set for all."""
    sources = sorted((Path(__file__).resolve().parents[2] / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    caps = {path.name: line for path in sources for line in path.read_text().splitlines()
            if line.startswith("MAX_PER_CLASS =")}
    assert caps and all(line.startswith("MAX_PER_CLASS = None ") for line in caps.values()), caps
    for profile in PROFILES.values():
        assert all("MAX_PER_CLASS" not in settings for name, settings in profile.items() if name != "common")
