"""Tasks (helpers.data.tasks): each real source's findings or folders per task, in the sources' real layouts."""

from __future__ import annotations

import pandas as pd
import pytest
from http_server import FaultyServer
from test_sources import chest_xray, radiography, write_metadata, write_sheet  # noqa: F401 (fixtures)

from helpers.data import load_dataset
from helpers.data.sources import IEEE8023_COMMIT, prepare_chest_xray_pneumonia, prepare_covid19_radiography
from helpers.data.tasks import TASKS, label_map

IEEE_PREFIX = f"/ieee8023/covid-chestxray-dataset/{IEEE8023_COMMIT}"
# The March 2020 snapshot's findings, mapped by hand (pathogen names; ARDS is a syndrome, not a pneumonia).
MINI_CLASSES = {"COVID-19": "COVID", "No Finding": "NORMAL", "SARS": "PNEUMONIA", "Streptococcus": "PNEUMONIA",
                "Pneumocystis": "PNEUMONIA"}


@pytest.fixture
def ieee_server(shared_data):
    with FaultyServer(shared_data / "ieee8023-mini", prefix=IEEE_PREFIX) as server:
        yield server


def expected_ieee8023_counts(metadata: pd.DataFrame, task: str) -> dict[str, int]:
    """Images per class straight from metadata.csv: frontal X-rays whose finding maps to the task's classes."""
    frontal = metadata[(metadata["modality"] == "X-ray") & metadata["view"].isin(["PA", "AP", "AP Supine"])]
    labels = frontal.drop_duplicates("filename")["finding"].map(MINI_CLASSES)
    return labels[labels.isin(TASKS[task].classes)].value_counts().to_dict()


def crossing_patients(manifest: pd.DataFrame) -> set[str]:
    parts = manifest.groupby("patient_id")["split"].nunique()
    return set(parts[parts > 1].index)


@pytest.mark.parametrize("task", list(TASKS))
def test_ieee8023_mini_counts_per_class_match_its_findings(task, ieee_server, shared_data, course_dirs):
    metadata = pd.read_csv(shared_data / "ieee8023-mini" / "metadata.csv", dtype=str)
    dataset = load_dataset("ieee8023", strict=True, verbose=False, base_url=ieee_server.url, progress=False, task=task)
    assert dataset.task == task and dataset.classes == TASKS[task].classes
    assert dataset.manifest["label"].value_counts().to_dict() == expected_ieee8023_counts(metadata, task)
    assert crossing_patients(dataset.manifest) == set()
    assert any("'ARDS' excluded" in note for note in dataset.notes)
    if task != "covid-vs-normal":
        assert any("'SARS' -> PNEUMONIA (11)" in note for note in dataset.notes)
        assert (course_dirs[1] / "ieee8023" / f"dataset-{task}.json").is_file()


def test_three_class_keeps_the_default_tasks_images_and_adds_the_pneumonias(ieee_server, course_dirs):
    options = dict(strict=True, verbose=False, base_url=ieee_server.url, progress=False)
    default = load_dataset("ieee8023", **options)
    three = load_dataset("ieee8023", task="three-class", **options).manifest
    two = three[three["label"] != "PNEUMONIA"]
    assert sorted(two["path"]) == sorted(default.manifest["path"])
    assert "task" not in default.info() and (course_dirs[1] / "ieee8023" / "dataset.json").is_file()


def test_ieee8023_rules_for_the_later_hierarchical_findings():
    findings = ["Pneumonia/Viral/COVID-19", "Pneumonia/Viral/SARS", "Pneumonia/Bacterial/Klebsiella",
                "Pneumonia/Fungal/Aspergillosis", "Pneumonia/Lipoid", "Tuberculosis", "No Finding", "todo"]
    assert label_map("ieee8023", "three-class", findings) == {
        "No Finding": "NORMAL", "Pneumonia/Bacterial/Klebsiella": "PNEUMONIA",
        "Pneumonia/Fungal/Aspergillosis": "PNEUMONIA", "Pneumonia/Viral/COVID-19": "COVID",
        "Pneumonia/Viral/SARS": "PNEUMONIA",
    }
    assert set(label_map("ieee8023", "covid-vs-pneumonia", findings).values()) == {"COVID", "PNEUMONIA"}


@pytest.mark.parametrize(("task", "counts"), [
    ("covid-vs-normal", {"COVID": 3, "NORMAL": 2}),
    ("covid-vs-pneumonia", {"COVID": 3, "PNEUMONIA": 1}),
    ("three-class", {"COVID": 3, "NORMAL": 2, "PNEUMONIA": 1}),
])
def test_covid19_radiography_folders_per_task(task, counts, radiography, tmp_path):  # noqa: F811
    base = radiography / "COVID-19_Radiography_Dataset"
    write_metadata(base)
    write_sheet(base, "Viral Pneumonia", ["Viral Pneumonia-1"], ["https://radiopaedia.org/cases/x"])
    prepared = prepare_covid19_radiography(tmp_path, path=radiography, task=task)
    assert prepared.rows["label"].value_counts().to_dict() == counts
    assert "covid19-radiography: 2 images in 'Lung_Opacity' excluded" in " ".join(prepared.notes)
    if task != "covid-vs-normal":
        assert set(prepared.rows["finding"]) == {"COVID", "Normal", "Viral Pneumonia"} & set(label_map(
            "covid19-radiography", task))


def test_covid19_radiography_pediatric_viral_pneumonias_are_left_out(radiography, tmp_path):  # noqa: F811
    base = radiography / "COVID-19_Radiography_Dataset"
    write_metadata(base)
    write_sheet(base, "Viral Pneumonia", ["Viral Pneumonia-1"],
                ["https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia"])
    prepared = prepare_covid19_radiography(tmp_path, path=radiography, task="three-class")
    assert "PNEUMONIA" not in set(prepared.rows["label"])
    assert any("1 image of pediatric viral pneumonias" in note for note in prepared.notes)


@pytest.mark.parametrize("task", list(TASKS))
def test_chest_xray_pneumonia_per_task(task, chest_xray, shared_data, tmp_path):  # noqa: F811
    prepared = prepare_chest_xray_pneumonia(tmp_path, path=chest_xray, task=task)
    expected = {label: len(list((shared_data / "kermany-mini" / label).iterdir())) for label in ("NORMAL", "PNEUMONIA")}
    expected = {label: n for label, n in expected.items() if label in TASKS[task].classes}
    assert prepared.rows["label"].value_counts().to_dict() == expected


@pytest.fixture
def class_tree(tmp_path):
    """A CLASS/image tree with COVID-19/, NORMAL/ and PNEUMONIA/ folders (and one not mapped)."""
    counts = {"COVID-19": 6, "NORMAL": 7, "PNEUMONIA": 8, "Tuberculosis": 2}
    for folder, n in counts.items():
        (tmp_path / "tree" / folder).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "tree" / folder / f"{i}.png").write_bytes(b"x")
    return tmp_path / "tree"


@pytest.mark.parametrize(("task", "counts"), [
    ("covid-vs-normal", {"COVID": 6, "NORMAL": 7}),
    ("covid-vs-pneumonia", {"COVID": 6, "PNEUMONIA": 8}),
    ("three-class", {"COVID": 6, "NORMAL": 7, "PNEUMONIA": 8}),
])
def test_folder_pneumonia_folders_per_task(task, counts, class_tree, course_dirs):
    dataset = load_dataset("folder", path=class_tree, task=task, verbose=False)
    assert dataset.manifest["label"].value_counts().to_dict() == counts
    assert any("2 images in folder 'Tuberculosis' dropped" in note for note in dataset.notes)
    assert crossing_patients(dataset.manifest) == set()
    if task != "covid-vs-normal":
        assert any(f"task {task!r}" in note and "'COVID-19' -> COVID (6)" in note for note in dataset.notes)


@pytest.mark.parametrize("task", ["covid-vs-pneumonia", "three-class"])
def test_covid_ct_refuses_the_pneumonia_tasks(task, course_dirs):
    with pytest.raises(ValueError, match="covid-ct has no pneumonia class"):
        load_dataset("covid-ct", task=task, verbose=False)


def test_an_unknown_task_names_the_tasks(course_dirs):
    with pytest.raises(ValueError, match="three-class"):
        load_dataset("synthetic", task="covid-vs-flu", verbose=False)


@pytest.mark.parametrize("name", ["synthetic", "synthetic-ct"])
@pytest.mark.parametrize("task", list(TASKS))
def test_synthetic_data_has_the_tasks_classes_and_a_patient_split(name, task, course_dirs):
    dataset = load_dataset(name, n_patients=45, size=48, task=task, verbose=False)
    assert set(dataset.manifest["label"]) == set(TASKS[task].classes)
    assert crossing_patients(dataset.manifest) == set()
    for split in ("train", "val", "test"):
        assert set(dataset.split(split)["label"]) == set(TASKS[task].classes), split


def test_an_unreachable_source_falls_back_to_synthetic_data_of_the_same_task(course_dirs):
    dataset = load_dataset("ieee8023", task="covid-vs-pneumonia", base_url="http://127.0.0.1:9", progress=False,
                           retries=0, synthetic_options={"n_patients": 30, "size": 32}, verbose=False)
    assert dataset.synthetic and dataset.requested == "ieee8023" and dataset.task == "covid-vs-pneumonia"
    assert set(dataset.manifest["label"]) == {"COVID", "PNEUMONIA"}
    assert dataset.info()["classes"] == ["PNEUMONIA", "COVID"]


def test_covid19_radiography_without_the_viral_pneumonia_sheet_says_the_shortcut_is_kept(radiography, tmp_path):  # noqa: F811
    write_metadata(radiography / "COVID-19_Radiography_Dataset")
    prepared = prepare_covid19_radiography(tmp_path, path=radiography, task="three-class")
    assert (prepared.rows["label"] == "PNEUMONIA").sum() == 1
    assert any("cannot tell the pediatric viral pneumonias" in note for note in prepared.notes)
