"""The real dataset sources, fetched from a local server laid out as the real hosts (no internet)."""

from __future__ import annotations

import re
import shutil
import socket
import sys
import types
import zipfile
from itertools import chain
from pathlib import Path

import pandas as pd
import pytest
from conftest import IEEE_PREFIX
from http_server import FaultyServer

from helpers.data import sources
from helpers.data.sources import (
    ACTUALMED_COMMIT,
    COVID_CT_COMMIT,
    IEEE8023_COMMIT,
    MANIFEST_COLUMNS,
    SourceUnavailable,
    covid_ct_patient,
    get_source,
    kermany_patient,
    prepare_actualmed,
    prepare_chest_xray_pneumonia,
    prepare_covid19_radiography,
    prepare_covid_ct,
    prepare_folder,
    prepare_ieee8023,
    select_ieee8023,
)

ACTUALMED_PREFIX = f"/agchung/Actualmed-COVID-chestxray-dataset/{ACTUALMED_COMMIT}"
COVID_CT_PREFIX = f"/UCSD-AI4H/COVID-CT/{COVID_CT_COMMIT}"
QUIET = {"progress": False, "retries": 0}


def check_manifest(prepared, source=None, *, dataset=None):
    """The manifest contract: columns, labels, patient ids prefixed with the dataset, float ages, files in place."""
    rows = prepared.rows
    assert list(rows.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert set(rows["label"]) <= {"COVID", "NORMAL"}
    assert (rows["patient_id"].str.split(":").str[0] == (dataset or rows["source"])).all()
    assert source is None or (rows["source"] == source).all()
    assert rows["age"].dtype == float
    for path in rows["path"]:
        assert (prepared.root / path).is_file(), path


# --- ieee8023 ---------------------------------------------------------------------------------------


@pytest.fixture
def ieee_mini(shared_data):
    return shared_data / "ieee8023-mini"


def test_ieee8023_xray_rows(ieee_server, ieee_mini, tmp_path):
    prepared = prepare_ieee8023(tmp_path, base_url=ieee_server.url, **QUIET)
    check_manifest(prepared, "ieee8023")
    rows = prepared.rows
    meta = pd.read_csv(ieee_mini / "metadata.csv")
    wanted = meta[
        (meta["modality"] == "X-ray")
        & meta["view"].isin(["PA", "AP", "AP Supine"])
        & meta["finding"].isin(["COVID-19", "No Finding"])
    ]
    assert len(rows) == len(wanted)
    assert rows["label"].value_counts().to_dict() == {"COVID": 85, "NORMAL": 1}
    assert set(rows["view"]) == {"PA", "AP", "AP Supine"}
    assert (rows["modality"] == "xray").all() and (rows["split"] == "").all()
    assert rows["patient_id"].value_counts()["ieee8023:19"] == 4  # several images per patient
    assert set(rows["sex"]) <= {"M", "F", ""} and rows["age"].notna().any()
    first = rows.iloc[0]
    assert (prepared.root / first["path"]).read_bytes() == (ieee_mini / first["path"]).read_bytes()
    image_requests = [path for path, _ in ieee_server.requests if "/images/" in path]
    assert len(image_requests) == len(rows)  # only the images asked for
    assert "ieee8023: 11 images with finding 'SARS' excluded (not COVID/NORMAL)" in prepared.notes
    assert "ieee8023: 1 image with finding 'Pneumocystis' excluded (not COVID/NORMAL)" in prepared.notes
    assert any("excluded by view (L: 11)" in note for note in prepared.notes)
    assert any("23 images of other modalities (CT)" in note for note in prepared.notes)


def test_ieee8023_ct_rows(ieee_server, tmp_path):
    prepared = prepare_ieee8023(tmp_path, modality="ct", base_url=ieee_server.url, **QUIET)
    check_manifest(prepared, "ieee8023")
    rows = prepared.rows
    assert len(rows) == 23
    assert (rows["modality"] == "ct").all()
    assert set(rows["view"]) == {"Axial", "Coronal"}
    assert rows["patient_id"].value_counts()["ieee8023:19"] == 4
    assert any("of other modalities (X-ray)" in note for note in prepared.notes)


def test_ieee8023_ct_is_registered_as_its_own_dataset(ieee_server, tmp_path):
    source = get_source("ieee8023-ct")
    assert source.modality == "ct"
    rows = source.prepare(tmp_path, base_url=ieee_server.url, **QUIET).rows
    assert (rows["modality"] == "ct").all()


def test_ieee8023_second_prepare_needs_no_network(ieee_server, tmp_path):
    first = prepare_ieee8023(tmp_path, base_url=ieee_server.url, views="PA", **QUIET)
    ieee_server.stop()
    again = prepare_ieee8023(tmp_path, base_url=ieee_server.url, views=["PA"], **QUIET)
    pd.testing.assert_frame_equal(first.rows, again.rows)
    assert set(again.rows["view"]) == {"PA"}


def test_ieee8023_interrupted_image_is_resumed_on_the_next_run(ieee_server, tmp_path):
    name = "nejmc2001573_f1a.jpeg"
    ieee_server.fail(f"images/{name}", "drop")
    with pytest.raises(SourceUnavailable, match=name):
        prepare_ieee8023(tmp_path, base_url=ieee_server.url, **QUIET)
    image = tmp_path / "ieee8023" / IEEE8023_COMMIT[:7] / "images" / name
    assert not image.exists() and image.with_suffix(".jpeg.part").exists()
    prepared = prepare_ieee8023(tmp_path, base_url=ieee_server.url, **QUIET)
    assert f"images/{name}" in set(prepared.rows["path"]) and image.is_file()


def test_ieee8023_offline_names_the_source_and_the_remedy(ieee_server, tmp_path):
    ieee_server.stop()
    with pytest.raises(SourceUnavailable) as error:
        prepare_ieee8023(tmp_path, base_url=ieee_server.url, **QUIET)
    message = str(error.value)
    assert message.startswith("ieee8023")
    assert "metadata.csv" in message and "check your connection" in message
    assert "manually into" in message and "DATASET='synthetic'" in message


@pytest.fixture
def latest_layout(ieee_mini, tmp_path):
    """A repository in the layout of the latest metadata (patientid, folder, url, long findings)."""
    repo = tmp_path / "repo"
    (repo / "images").mkdir(parents=True)
    real = sorted((ieee_mini / "images").iterdir())
    for name, source in (("a b%1.jpeg", real[0]), ("plain.jpeg", real[1]), ("bact.jpeg", real[2])):
        shutil.copy(source, repo / "images" / name)
    header = "patientid,offset,sex,age,finding,RT_PCR_positive,view,modality,folder,filename,url,license\n"
    lines = [
        "7,0,F,40,Pneumonia/Viral/COVID-19,Y,PA,X-ray,images,a b%1.jpeg,https://x,CC BY\n",
        "8,,M,,No Finding,,AP Supine,X-ray,images,plain.jpeg,https://x,\n",
        "9,,M,,Pneumonia/Bacterial/Streptococcus,,PA,X-ray,images,bact.jpeg,https://x,\n",
        "10,,,,Pneumonia/Viral/COVID-19,Y,Axial,CT,volumes,coronacases_001.nii.gz,https://x,\n",
    ]
    (repo / "metadata.csv").write_text(header + "".join(lines))
    return repo


def test_ieee8023_latest_layout_with_quoted_names(latest_layout, tmp_path):
    with FaultyServer(latest_layout, prefix=IEEE_PREFIX) as server:
        prepared = prepare_ieee8023(tmp_path / "data", base_url=server.url, **QUIET)
    check_manifest(prepared, "ieee8023")
    rows = prepared.rows.set_index("path")
    assert rows.loc["images/a b%1.jpeg", "label"] == "COVID"
    assert rows.loc["images/a b%1.jpeg", "license"] == "CC BY"
    assert rows.loc["images/plain.jpeg", "label"] == "NORMAL"
    assert len(rows) == 2
    assert (
        "ieee8023: 1 image with finding 'Pneumonia/Bacterial/Streptococcus' excluded (not COVID/NORMAL)"
        in prepared.notes
    )


def test_ieee8023_ct_volumes_are_left_out(latest_layout, tmp_path):
    with FaultyServer(latest_layout, prefix=IEEE_PREFIX) as server:
        prepared = prepare_ieee8023(tmp_path / "data", modality="ct", base_url=server.url, **QUIET)
    assert prepared.rows.empty
    assert "ieee8023: 1 volumes outside images/ not used (only 2-D images are)" in prepared.notes


def test_ieee8023_missing_image_names_the_file(latest_layout, tmp_path):
    (latest_layout / "images" / "plain.jpeg").unlink()
    with FaultyServer(latest_layout, prefix=IEEE_PREFIX) as server, pytest.raises(SourceUnavailable) as error:
        prepare_ieee8023(tmp_path / "data", base_url=server.url, **QUIET)
    assert "plain.jpeg" in str(error.value) and "HTTP 404" in str(error.value)
    assert not (tmp_path / "data" / "ieee8023" / IEEE8023_COMMIT[:7] / "images" / "plain.jpeg").exists()


def test_select_ieee8023_counts_every_reason():
    table = pd.DataFrame(
        {
            "patientid": ["1", "1", "2", "3", "3"],
            "finding": ["COVID-19", "COVID-19", "No Finding", "Tuberculosis", "COVID-19"],
            "view": ["PA", "PA", "L", "AP", "AP"],
            "modality": ["X-ray"] * 5,
            "filename": ["a.png", "a.png", "b.png", "c.png", "d.png"],
        }
    )
    kept, notes = select_ieee8023(table, modality="xray", views=("PA", "AP"), findings=sources.IEEE8023_FINDINGS)
    assert kept["filename"].tolist() == ["a.png", "d.png"]
    assert notes == [
        "ieee8023: 1 image excluded by view (L: 1); views kept: PA, AP",
        "ieee8023: 1 image with finding 'Tuberculosis' excluded (not COVID/NORMAL)",
        "ieee8023: 1 image listed twice in metadata.csv kept once",
    ]


def test_label_maps_must_map_to_covid_or_normal(tmp_path):
    with pytest.raises(ValueError, match="COVID"):
        prepare_ieee8023(tmp_path, findings={"SARS": "PNEUMONIA"})
    with pytest.raises(ValueError, match="modality"):
        prepare_ieee8023(tmp_path, modality="mri")


# --- actualmed ----------------------------------------------------------------------------------------


@pytest.fixture
def actualmed_repo(ieee_mini, tmp_path):
    repo = tmp_path / "actualmed-repo"
    (repo / "images").mkdir(parents=True)
    real = sorted((ieee_mini / "images").iterdir())
    header = (
        "patientid,offset,sex,age,finding,survival,temperature,pO2 saturation,view,modality,imagename,"
        "artifacts/distortion,notes\n"
    )
    lines = [
        'ANON1,,,,COVID-19,,,,PA,X-ray,CR.1.png,,", date taken (YYYYMMDD): 20200318"\n',
        'ANON1,,,,No finding,,,,PA,X-ray,CR.2.png,,"Negative (covid-19 viral infection is excluded)"\n',
        'ANON2,,,,,,,,AP,X-ray,CR.3.png,,"Inconclusive, date taken (YYYYMMDD): 20200313"\n',
        'ANON3,,,,No finding,,,,AP,X-ray,DX.4.png,,"Negative (covid-19 viral infection is excluded)"\n',
    ]
    (repo / "metadata.csv").write_text(header + "".join(lines))
    for name, source in zip(["CR.1.png", "CR.2.png", "CR.3.png", "DX.4.png"], real):
        shutil.copy(source, repo / "images" / name)
    return repo


def test_actualmed_rows_and_notes(actualmed_repo, tmp_path):
    with FaultyServer(actualmed_repo, prefix=ACTUALMED_PREFIX) as server:
        prepared = prepare_actualmed(tmp_path, base_url=server.url, **QUIET)
        asked = [path for path, _ in server.requests]
    check_manifest(prepared, "actualmed")
    rows = prepared.rows
    assert rows["label"].tolist() == ["COVID", "NORMAL", "NORMAL"]
    assert rows["patient_id"].tolist() == ["actualmed:ANON1", "actualmed:ANON1", "actualmed:ANON3"]
    assert f"{ACTUALMED_PREFIX}/images/CR.3.png" not in asked  # the inconclusive image is not fetched
    assert "actualmed: 1 image without a finding (inconclusive) excluded" in prepared.notes
    assert any("1 patients have both COVID and NORMAL images" in note for note in prepared.notes)
    again = prepare_actualmed(tmp_path, base_url=server.url, **QUIET)  # the server is gone
    pd.testing.assert_frame_equal(rows, again.rows)


# --- covid-ct --------------------------------------------------------------------------------------------

COVID_SPLITS = {
    "train": ["2020.02.10.20021584-p6-52%0.png", "kjr-21-e24-p3-16.png"],
    "val": ["2020.02.10.20021584-p6-52%1.png"],
    "test": ["PIIS0140673620303603%5.png"],
}
NONCOVID_SPLITS = {
    "train": ["35%0.jpg", "35%1.jpg"],
    "val": ["Normal case 1.png"],
    "test": ["1305.png", "listed-but-missing.png"],
}
UNLISTED = "2020.03.22.20040782-p25-1541.png"
# COVID-CT-MetaInfo.xlsx: two patients on one page (the page rule merges them), one patient on two papers
# (the rule cannot join them: they sit in train and test); one name written without its extension.
METAINFO = {
    "File name": ["2020.02.10.20021584-p6-52%0.png", "2020.02.10.20021584-p6-52%1", "kjr-21-e24-p3-16.png",
                  "PIIS0140673620303603%5.png"],
    "Patient ID": ["Patient 1", "Patient 2", "Patient 9", "Patient 9"],
    "Age": ["45", "52", "61", "61"],
    "Gender": ["M", "F", "F", "F"],
    "DOI": ["10.1101/2020.02.10.20021584"] * 2 + ["10.3348/kjr.2020.0146", "10.1016/S0140-6736(20)30360-3"],
}


def write_metainfo(repo, table=None):
    pytest.importorskip("openpyxl")
    pd.DataFrame(METAINFO if table is None else table).to_excel(repo / "COVID-CT-MetaInfo.xlsx", index=False)


@pytest.fixture
def covid_ct_repo(ieee_mini, tmp_path):
    """A COVID-CT-like repository: the two zips (real CT slices) and the split files."""
    repo = tmp_path / "covid-ct-repo"
    meta = pd.read_csv(ieee_mini / "metadata.csv")
    slices = sorted(ieee_mini / "images" / name for name in meta.loc[meta["modality"] == "CT", "filename"])
    covid = [*chain(*COVID_SPLITS.values()), UNLISTED]
    noncovid = [name for name in chain(*NONCOVID_SPLITS.values()) if name != "listed-but-missing.png"]
    (repo / "Images-processed").mkdir(parents=True)
    for folder, names in (("CT_COVID", covid), ("CT_NonCOVID", noncovid)):
        with zipfile.ZipFile(repo / "Images-processed" / f"{folder}.zip", "w") as bundle:
            bundle.writestr(f"{folder}/", "")
            for name, source in zip(names, slices):
                bundle.write(source, f"{folder}/{name}")
            bundle.writestr(f"__MACOSX/{folder}/._{names[0]}", b"resource fork")
    for label, splits in (("COVID", COVID_SPLITS), ("NonCOVID", NONCOVID_SPLITS)):
        (repo / "Data-split" / label).mkdir(parents=True)
        for split, names in splits.items():
            (repo / "Data-split" / label / f"{split}CT_{label}.txt").write_text("\n".join(names) + "\n")
    write_metainfo(repo)
    return repo


def test_covid_ct_official_split(covid_ct_repo, tmp_path):
    with FaultyServer(covid_ct_repo, prefix=COVID_CT_PREFIX) as server:
        prepared = prepare_covid_ct(tmp_path, base_url=server.url, **QUIET)
    check_manifest(prepared, "covid-ct")
    rows = prepared.rows.set_index("path")
    expected = {f"CT_COVID/{name}": split for split, names in COVID_SPLITS.items() for name in names}
    expected |= {f"CT_NonCOVID/{name}": split for split, names in NONCOVID_SPLITS.items() for name in names}
    expected.pop("CT_NonCOVID/listed-but-missing.png")
    expected["CT_COVID/kjr-21-e24-p3-16.png"] = "test"  # Patient 9 is in train and test: moved whole into test
    assert rows["split"].to_dict() == expected
    assert (rows["modality"] == "ct").all()
    assert rows.loc["CT_NonCOVID/Normal case 1.png", "label"] == "NORMAL"
    assert rows.loc["CT_COVID/kjr-21-e24-p3-16.png", "label"] == "COVID"
    assert rows.loc["CT_NonCOVID/35%1.jpg", "patient_id"] == "covid-ct:NonCOVID/35.jpg"
    assert "covid-ct: 1 image not listed in any official split file excluded (official_split=True)" in prepared.notes
    assert "covid-ct: 1 image named in the split files but missing from the zips" in prepared.notes
    assert any("1 patients appear in more than one official split file" in n for n in prepared.notes)
    assert not list(prepared.root.glob("*.part"))  # extraction finished, nothing half-done


def test_covid_ct_patients_come_from_the_metainfo_sheet(covid_ct_repo, tmp_path):
    with FaultyServer(covid_ct_repo, prefix=COVID_CT_PREFIX) as server:
        prepared = prepare_covid_ct(tmp_path, base_url=server.url, **QUIET)
        assert f"{COVID_CT_PREFIX}/COVID-CT-MetaInfo.xlsx" in {path for path, _ in server.requests}
    patient = prepared.rows.set_index("path")["patient_id"]
    assert patient["CT_COVID/2020.02.10.20021584-p6-52%0.png"] == "covid-ct:Patient 1"
    assert patient["CT_COVID/2020.02.10.20021584-p6-52%1.png"] == "covid-ct:Patient 2"  # same page, other patient
    assert patient["CT_COVID/kjr-21-e24-p3-16.png"] == patient["CT_COVID/PIIS0140673620303603%5.png"]
    assert patient["CT_NonCOVID/35%1.jpg"] == "covid-ct:NonCOVID/35.jpg"  # no sheet for them: the file-name rule
    assert prepared.rows.groupby("patient_id")["split"].nunique().max() == 1  # no patient in two splits
    notes = " ".join(prepared.notes)
    assert "COVID slices: 4 images take their patient from COVID-CT-MetaInfo.xlsx (3 patients)" in notes
    assert "not in COVID-CT-MetaInfo.xlsx" not in notes
    unsplit = prepare_covid_ct(tmp_path, base_url=server.url, official_split=False, **QUIET)  # offline: all there
    assert unsplit.rows.set_index("path").loc[f"CT_COVID/{UNLISTED}", "patient_id"] == (
        "covid-ct:COVID/2020.03.22.20040782-p25"
    )
    assert any("1 image of COVID slices not in COVID-CT-MetaInfo.xlsx are grouped by the file-name rule" in note
               for note in unsplit.notes)


def test_covid_ct_sheet_with_a_renamed_column_falls_back_to_the_page_rule(covid_ct_repo, tmp_path):
    write_metainfo(covid_ct_repo, {"File name": METAINFO["File name"], "Patient": METAINFO["Patient ID"]})
    with FaultyServer(covid_ct_repo, prefix=COVID_CT_PREFIX) as server:
        prepared = prepare_covid_ct(tmp_path, base_url=server.url, **QUIET)
    rows = prepared.rows.set_index("path")
    assert rows.loc["CT_COVID/2020.02.10.20021584-p6-52%0.png", "patient_id"] == "covid-ct:COVID/2020.02.10.20021584-p6"
    assert rows.loc["CT_COVID/2020.02.10.20021584-p6-52%1.png", "split"] == "val"  # the page's patient, moved whole
    assert rows.loc["CT_COVID/2020.02.10.20021584-p6-52%0.png", "split"] == "val"
    assert prepared.rows.groupby("patient_id")["split"].nunique().max() == 1
    message = next(note for note in prepared.notes if "has no column" in note)
    assert "'Patient ID'" in message and "'Patient'" in message and "file-name rule" in message


def test_covid_ct_without_official_split_and_offline_again(covid_ct_repo, tmp_path):
    with FaultyServer(covid_ct_repo, prefix=COVID_CT_PREFIX) as server:
        first = prepare_covid_ct(tmp_path, base_url=server.url, official_split=False, **QUIET)
        prepare_covid_ct(tmp_path, base_url=server.url, **QUIET)  # fetches the split files
    assert (first.rows["split"] == "").all()
    assert f"CT_COVID/{UNLISTED}" in set(first.rows["path"])
    offline = prepare_covid_ct(tmp_path, base_url=server.url, **QUIET)
    assert set(offline.rows["split"]) == {"train", "val", "test"}


def test_covid_ct_bad_zip_is_deleted(covid_ct_repo, tmp_path):
    (covid_ct_repo / "Images-processed" / "CT_COVID.zip").write_bytes(b"not a zip")
    with (
        FaultyServer(covid_ct_repo, prefix=COVID_CT_PREFIX) as server,
        pytest.raises(SourceUnavailable, match="not a valid zip"),
    ):
        prepare_covid_ct(tmp_path, base_url=server.url, **QUIET)
    root = tmp_path / "covid-ct" / COVID_CT_COMMIT[:7]
    assert not (root / "Images-processed" / "CT_COVID.zip").exists()
    assert not (root / "CT_COVID").exists()


@pytest.mark.parametrize(
    ("name", "label", "patient"),
    [
        ("2020.02.10.20021584-p6-52%1.png", "COVID", "covid-ct:COVID/2020.02.10.20021584-p6"),
        ("2020.03.12.20034686-p17-91-3.png", "COVID", "covid-ct:COVID/2020.03.12.20034686-p17"),
        ("PIIS0140673620303603%5.png", "COVID", "covid-ct:COVID/PIIS0140673620303603"),
        ("35%0.jpg", "NORMAL", "covid-ct:NonCOVID/35.jpg"),
        ("1305.png", "NORMAL", "covid-ct:NonCOVID/1305.png"),
    ],
)
def test_covid_ct_patient_rule(name, label, patient):
    assert covid_ct_patient(name, label) == patient


# --- Kaggle ------------------------------------------------------------------------------------------------


@pytest.fixture
def radiography(tmp_path):
    """A COVID-19 Radiography Database in its Kaggle layout (version 5), tiny files."""
    base = tmp_path / "kaggle" / "COVID-19_Radiography_Dataset"
    counts = {"COVID": 3, "Normal": 4, "Lung_Opacity": 2, "Viral Pneumonia": 1}
    for folder, n in counts.items():
        for sub in ("images", "masks"):
            (base / folder / sub).mkdir(parents=True)
            for i in range(1, n + 1):
                (base / folder / sub / f"{folder}-{i}.png").write_bytes(b"png")
    (base / "README.md.txt").write_text("COVID-19 Radiography Database")
    return base.parent


# The sheets' URLs as version 5 writes them: one per upstream collection.
COVID_URLS = ["https://bimcv.cipf.es/bimcv-projects/bimcv-covid19/", "https://sirm.org/category/senza-categoria/covid-19/",
              "https://github.com/ieee8023/covid-chestxray-dataset"]
NORMAL_URLS = ["https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"] * 2 + [
    "https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia"] * 2


def write_sheet(base, folder, names, urls, *, columns=("FILE NAME", "FORMAT", "SIZE", "URL")):
    """``<folder>.metadata.xlsx`` in the layout of version 5 (``columns`` renames them)."""
    pytest.importorskip("openpyxl")
    values = [names, ["PNG"] * len(names), ["256*256"] * len(names), urls]
    pd.DataFrame(dict(zip(columns, values))).to_excel(base / f"{folder}.metadata.xlsx", index=False)


def write_metadata(base, normal_urls=NORMAL_URLS, **options):
    write_sheet(base, "COVID", ["COVID-1", "COVID-2", "COVID-3"], COVID_URLS)
    write_sheet(base, "Normal", ["NORMAL-1", "NORMAL-2", "NORMAL-3", "NORMAL-4"], normal_urls, **options)


def test_covid19_radiography_leaves_pediatric_normals_out(radiography, tmp_path):
    write_metadata(radiography / "COVID-19_Radiography_Dataset")
    prepared = prepare_covid19_radiography(tmp_path, path=radiography)
    check_manifest(prepared, dataset="covid19-radiography")
    rows = prepared.rows
    assert rows["label"].value_counts().to_dict() == {"COVID": 3, "NORMAL": 2}
    assert {"COVID-19_Radiography_Dataset/Normal/images/Normal-1.png"} < set(rows["path"])
    assert not rows["path"].str.contains("masks|Normal-3|Normal-4").any()
    assert rows["patient_id"].is_unique
    notes = " ".join(prepared.notes)
    assert "2 images of pediatric normals" in notes and "include_pediatric=False" in notes
    assert "2 images in 'Lung_Opacity' excluded" in notes and "1 image in 'Viral Pneumonia' excluded" in notes
    assert "one id per image" in notes


def test_covid19_radiography_sources_come_from_the_metadata_sheets(radiography, tmp_path):
    write_metadata(radiography / "COVID-19_Radiography_Dataset")
    rows = prepare_covid19_radiography(tmp_path, path=radiography).rows.set_index("path")
    source = rows["source"].rename(lambda path: path.rsplit("/", 1)[-1])
    assert source.to_dict() == {"COVID-1.png": "bimcv", "COVID-2.png": "sirm", "COVID-3.png": "ieee8023",
                                "Normal-1.png": "rsna", "Normal-2.png": "rsna"}
    assert rows.loc["COVID-19_Radiography_Dataset/COVID/images/COVID-1.png", "mask"] == (
        "COVID-19_Radiography_Dataset/COVID/masks/COVID-1.png"
    )


def test_covid19_radiography_can_include_pediatric_normals(radiography, tmp_path):
    rows = prepare_covid19_radiography(tmp_path, path=radiography, include_pediatric=True).rows
    assert rows["label"].value_counts().to_dict() == {"COVID": 3, "NORMAL": 4}
    assert set(rows["source"]) == {"unknown"}  # no sheets: the sources are unknown, the images are kept


def test_a_sheet_with_a_renamed_column_is_named_and_the_images_are_kept(radiography, tmp_path):
    base = radiography / "COVID-19_Radiography_Dataset"
    write_metadata(base)
    write_sheet(base, "COVID", ["COVID-1", "COVID-2", "COVID-3"], COVID_URLS, columns=("Image", "FORMAT", "SIZE", "URL"))
    prepared = prepare_covid19_radiography(tmp_path, path=radiography)
    rows = prepared.rows
    assert (rows.loc[rows["label"] == "COVID", "source"] == "unknown").all() and (rows["label"] == "COVID").sum() == 3
    assert set(rows.loc[rows["label"] == "NORMAL", "source"]) == {"rsna"}  # the Normal sheet is still read
    message = next(note for note in prepared.notes if "has no column" in note)
    assert "COVID.metadata.xlsx" in message and "'FILE NAME'" in message and "'Image'" in message


def test_a_normal_sheet_without_urls_keeps_all_normals_and_says_so(radiography, tmp_path):
    write_metadata(radiography / "COVID-19_Radiography_Dataset", columns=("FILE NAME", "FORMAT", "SIZE", "Link"))
    with pytest.warns(UserWarning, match="cannot tell the pediatric normals"):
        prepared = prepare_covid19_radiography(tmp_path, path=radiography)
    assert (prepared.rows["label"] == "NORMAL").sum() == 4
    assert any("Normal.metadata.xlsx has no column 'URL'" in note for note in prepared.notes)


def test_a_pediatric_filter_that_matches_nothing_warns(radiography, tmp_path):
    write_metadata(radiography / "COVID-19_Radiography_Dataset", normal_urls=["https://example.org/normals"] * 4)
    with pytest.warns(UserWarning, match="pediatric filter removed 0 of 4 normals"):
        prepared = prepare_covid19_radiography(tmp_path, path=radiography)
    assert (prepared.rows["label"] == "NORMAL").sum() == 4
    assert set(prepared.rows.loc[prepared.rows["label"] == "NORMAL", "source"]) == {"example.org"}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://bimcv.cipf.es/bimcv-projects/bimcv-covid19/#1590858128006-9e640421-6711", "bimcv"),
        ("https://github.com/ml-workgroup/covid-19-image-repository/tree/master/png", "german-medical-school"),
        ("https://github.com/armiro/COVID-CXNet", "covid-cxnet"),
        ("https://eurorad.org", "eurorad"),
        ("https://twitter.com/ChestImaging", "twitter"),
        ("https://data.mendeley.com/datasets/rscbjbr9sj/2", "chest-xray-pneumonia"),
        ("https://www.example.com/x", "example.com"),
        ("", "unknown"),
    ],
)
def test_collection_names_from_urls(url, name):
    assert sources.collection(url) == name


def test_covid19_radiography_without_openpyxl_says_what_to_install(radiography, tmp_path, monkeypatch):
    (radiography / "COVID-19_Radiography_Dataset" / "Normal.metadata.xlsx").write_bytes(b"xlsx")

    def no_openpyxl(*args, **kwargs):
        raise ImportError("Missing optional dependency 'openpyxl'")

    monkeypatch.setattr(pd, "read_excel", no_openpyxl)
    with pytest.raises(SourceUnavailable, match="pip install openpyxl"):
        prepare_covid19_radiography(tmp_path, path=radiography)


def test_kaggle_failure_names_the_remedy(tmp_path, monkeypatch):
    import kagglehub

    asked = []

    def offline(handle, **kwargs):
        asked.append((handle, kwargs))
        raise ConnectionError("no route to www.kaggle.com")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(SourceUnavailable) as error:
        prepare_covid19_radiography(tmp_path)
    message = str(error.value)
    assert message.startswith("covid19-radiography")
    assert "check your connection" in message and "path=" in message and "DATASET='synthetic'" in message
    assert "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database" in message
    handle, kwargs = asked[0]
    assert handle == sources.RADIOGRAPHY_HANDLE and "/versions/" in handle
    assert kwargs["output_dir"].startswith(str(tmp_path))
    with pytest.raises(SourceUnavailable, match="chest-xray-pneumonia"):
        prepare_chest_xray_pneumonia(tmp_path)


def test_kagglehub_download_is_used_when_no_path_is_given(radiography, tmp_path, monkeypatch):
    import kagglehub

    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle, output_dir: str(radiography))
    prepared = prepare_covid19_radiography(tmp_path, include_pediatric=True)
    assert prepared.root == radiography and len(prepared.rows) == 7


def test_missing_kagglehub_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(SourceUnavailable, match=re.escape("pip install 'kagglehub>=0.4.3'")):
        prepare_chest_xray_pneumonia(tmp_path)


class FakeKagglehub(types.ModuleType):
    """kagglehub 0.4.3+ as far as the course uses it: refuses a half folder unless ``force_download``."""

    def __init__(self, dataset):
        super().__init__("kagglehub")
        self.dataset, self.calls = dataset, []

    def dataset_download(self, handle, path=None, *, force_download=False, output_dir=None):
        self.calls.append({"output_dir": output_dir, "force_download": force_download})
        output = Path(output_dir)
        if output.is_dir() and any(output.iterdir()):
            if not force_download:
                raise FileExistsError(f"output_dir is not empty: {output}. Set force_download=True to replace it.")
            shutil.rmtree(output)
        shutil.copytree(self.dataset, output)
        return str(output)


def test_an_interrupted_kaggle_download_is_replaced_and_then_marked_complete(radiography, tmp_path, monkeypatch):
    fake = FakeKagglehub(radiography)
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    output = tmp_path / "covid19-radiography" / "v5"
    (output / "COVID-19_Radiography_Dataset" / "COVID").mkdir(parents=True)  # what an interrupted download leaves
    (output / "COVID-19_Radiography_Dataset" / "COVID" / "half.zip").write_bytes(b"PK")
    prepared = prepare_covid19_radiography(tmp_path, include_pediatric=True)
    assert [call["force_download"] for call in fake.calls] == [False, True]
    assert prepared.root == output and len(prepared.rows) == 7
    assert not (output / "COVID-19_Radiography_Dataset" / "COVID" / "half.zip").exists()
    assert (output.parent / "v5.complete").is_file()
    again = prepare_covid19_radiography(tmp_path, include_pediatric=True)
    assert len(fake.calls) == 2 and len(again.rows) == 7  # complete: kagglehub is not asked again


def test_an_old_kagglehub_says_upgrade(tmp_path, monkeypatch):
    old = types.ModuleType("kagglehub")
    old.__version__ = "0.3.13"
    old.dataset_download = lambda handle, path=None, *, force_download=False: handle  # no output_dir before 0.4.3
    monkeypatch.setitem(sys.modules, "kagglehub", old)
    with pytest.raises(SourceUnavailable) as error:
        prepare_covid19_radiography(tmp_path)
    message = str(error.value)
    assert "kagglehub 0.3.13 is too old" in message and "upgrade kagglehub" in message
    assert "kagglehub>=0.4.3" in message and "check your connection" not in message
    old.__version__ = "1.0.2"  # a TypeError from a recent kagglehub is its own failure, not its age
    with pytest.raises(SourceUnavailable, match="kagglehub 1.0.2 failed") as error:
        prepare_covid19_radiography(tmp_path)
    assert "too old" not in str(error.value)


def test_a_read_only_kaggle_mount_is_read_in_place_and_left_untouched(radiography, tmp_path, monkeypatch):
    """In Colab and Kaggle notebooks kagglehub ignores output_dir and returns /kaggle/input/<name>."""
    mount = tmp_path / "kaggle" / "input" / "covid19-radiography-database"
    shutil.copytree(radiography, mount)
    write_metadata(mount / "COVID-19_Radiography_Dataset")
    before = sorted(path.relative_to(mount) for path in mount.rglob("*"))
    colab = types.ModuleType("kagglehub")
    colab.dataset_download = lambda handle, path=None, *, force_download=False, output_dir=None: str(mount)
    monkeypatch.setitem(sys.modules, "kagglehub", colab)
    prepared = prepare_covid19_radiography(tmp_path / "data")
    assert prepared.root == mount and (prepared.rows["label"] == "NORMAL").sum() == 2
    assert sorted(path.relative_to(mount) for path in mount.rglob("*")) == before  # nothing written into the mount
    assert not (tmp_path / "data" / "covid19-radiography" / "v5.complete").exists()
    assert any("read-only" in note and "nothing is written there" in note for note in prepared.notes)


@pytest.fixture
def chest_xray(shared_data, tmp_path):
    """chest-xray-pneumonia in its Kaggle layout (with the nested copy), from the real kermany-mini files."""
    root = tmp_path / "kaggle"
    kermany = shared_data / "kermany-mini"
    for base in (root / "chest_xray", root / "chest_xray" / "chest_xray"):
        for label in ("NORMAL", "PNEUMONIA"):
            files = sorted((kermany / label).iterdir())
            for split, part in (("train", files[:-6]), ("val", files[-6:-4]), ("test", files[-4:])):
                (base / split / label).mkdir(parents=True)
                for file in part:
                    shutil.copy(file, base / split / label / file.name)
    (root / "chest_xray" / "__MACOSX").mkdir()
    return root


def test_chest_xray_pneumonia_normals_only(chest_xray, shared_data, tmp_path):
    prepared = prepare_chest_xray_pneumonia(tmp_path, path=chest_xray)
    check_manifest(prepared, "chest-xray-pneumonia")
    rows = prepared.rows
    normals = len(list((shared_data / "kermany-mini" / "NORMAL").iterdir()))
    pneumonia = len(list((shared_data / "kermany-mini" / "PNEUMONIA").iterdir()))
    assert len(rows) == normals  # each image once: the nested copy is not read
    assert (rows["label"] == "NORMAL").all() and (rows["split"] == "").all()
    assert not rows["path"].str.startswith("chest_xray/chest_xray/").any()
    assert "chest-xray-pneumonia:a-IM-0011" in set(rows["patient_id"])
    assert rows["patient_id"].value_counts().max() > 1
    assert f"chest-xray-pneumonia: {pneumonia} images in 'PNEUMONIA' excluded (not COVID/NORMAL)" in prepared.notes
    assert any("age shortcut" in note for note in prepared.notes)


def test_kaggle_copy_in_place_needs_no_network(chest_xray, tmp_path, monkeypatch):
    """kagglehub returns a complete pinned version without asking the network (what the source relies on)."""
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_dataset_handle

    output = tmp_path / "data" / "chest-xray-pneumonia" / "v2"
    shutil.copytree(chest_xray, output)
    Cache(override_dir=str(output)).mark_as_complete(parse_dataset_handle(sources.PNEUMONIA_HANDLE))

    def refuse(*args):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    prepared = prepare_chest_xray_pneumonia(tmp_path / "data")
    assert prepared.root == output and len(prepared.rows) > 0


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("person1_bacteria_1.jpeg", "person1"),
        ("odd.jpeg", "odd"),
    ],
)
def test_kermany_patient_rule(name, patient):
    assert kermany_patient(name) == patient


# --- folder -------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "my-xrays"
    for path in (
        "train/COVID-19/a.png",
        "train/NORMAL/b.jpg",
        "test/COVID-19/c.png",
        "test/NORMAL/d.jpeg",
        "train/PNEUMONIA/e.png",
        "train/PNEUMONIA/f.png",
        "train/NORMAL/.hidden.png",
        "README.txt",
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    return root


def test_folder_with_train_test_layout(tree, tmp_path):
    prepared = prepare_folder(tmp_path, path=tree)
    check_manifest(prepared, "folder")
    rows = prepared.rows.set_index("path")
    assert rows["label"].to_dict() == {
        "test/COVID-19/c.png": "COVID",
        "test/NORMAL/d.jpeg": "NORMAL",
        "train/COVID-19/a.png": "COVID",
        "train/NORMAL/b.jpg": "NORMAL",
    }
    assert rows["split"].to_dict() == {
        "test/COVID-19/c.png": "test",
        "test/NORMAL/d.jpeg": "test",
        "train/COVID-19/a.png": "",
        "train/NORMAL/b.jpg": "",
    }
    assert rows["patient_id"].is_unique
    assert any("2 images in folder 'PNEUMONIA' dropped" in note for note in prepared.notes)
    assert "folder: patient ids are unknown: one id per file" in prepared.notes


def test_folder_class_map_and_errors(tmp_path):
    root = tmp_path / "mine"
    for path in ("positive/p1.png", "negative/n1.png", "negative/n2.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    with pytest.raises(SourceUnavailable, match="class_map"):
        prepare_folder(tmp_path, path=root)
    rows = prepare_folder(tmp_path, path=root, class_map={"positive": "COVID", "negative": "NORMAL"}).rows
    assert rows["label"].value_counts().to_dict() == {"NORMAL": 2, "COVID": 1}
    with pytest.raises(ValueError, match="class_map"):
        prepare_folder(tmp_path, path=root, class_map={"positive": "yes"})
    with pytest.raises(SourceUnavailable, match="is not a folder"):
        prepare_folder(tmp_path, path=tmp_path / "nowhere")


# --- registry and recipes ------------------------------------------------------------------------------------


def test_registry_entries_are_complete():
    for name in (
        "ieee8023",
        "ieee8023-ct",
        "actualmed",
        "covid-ct",
        "covid19-radiography",
        "chest-xray-pneumonia",
        "folder",
        "xray-github",
    ):
        source = get_source(name)
        assert source.name == name and source.modality in {"xray", "ct"} and source.description
    assert get_source("covid-ct").official_split
    with pytest.raises(KeyError, match="ieee8023"):
        get_source("nope")


def test_xray_github_recipe_joins_both_sources(ieee_server, actualmed_repo, tmp_path):
    with FaultyServer(actualmed_repo, prefix=ACTUALMED_PREFIX) as actualmed:
        prepared = get_source("xray-github").prepare(
            tmp_path,
            ieee8023={"base_url": ieee_server.url, **QUIET},
            actualmed={"base_url": actualmed.url, **QUIET},
        )
    check_manifest(prepared)
    assert set(prepared.rows["source"]) == {"ieee8023", "actualmed"}
    assert any(note.startswith("actualmed:") for note in prepared.notes)
    with pytest.raises(TypeError, match="unknown parts"):
        get_source("xray-github").prepare(tmp_path, covid_ct={})
