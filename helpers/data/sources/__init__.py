"""The real and synthetic datasets, one module per dataset (``data/<name>.md`` documents each one).

- ``ieee8023`` / ``ieee8023-ct``: COVID-19 image data collection (GitHub, pinned commit);
- ``actualmed``: Actualmed COVID-19 chest X-rays (GitHub, pinned commit);
- ``covid-ct``: UCSD-AI4H COVID-CT with its official split (GitHub, pinned commit);
- ``covid19-radiography`` and ``chest-xray-pneumonia``: Kaggle, through ``kagglehub``;
- ``folder``: any ``CLASS/image`` tree on disk;
- ``xray-github``: ``ieee8023`` and ``actualmed`` together;
- ``synthetic`` / ``synthetic-ct``: generated offline.

Importing this package registers them all; the registry itself is :mod:`helpers.data.registry`.
"""

from helpers.data.registry import (
    MANIFEST_COLUMNS,
    SOURCES,
    Prepared,
    Source,
    SourceUnavailable,
    base_name,
    get_source,
    marker_variant,
    register,
)
from helpers.data.sources.actualmed import ACTUALMED_COMMIT, ACTUALMED_FINDINGS, prepare_actualmed, select_actualmed
from helpers.data.sources.covid_ct import (
    COVID_CT_COMMIT,
    COVID_CT_METAINFO,
    covid_ct_patient,
    prepare_covid_ct,
    read_covid_ct_patients,
)
from helpers.data.sources.folder import FOLDER_CLASSES, prepare_folder
from helpers.data.sources.github import GitHubCheckout, github_raw
from helpers.data.sources.ieee8023 import IEEE8023_COMMIT, IEEE8023_FINDINGS, prepare_ieee8023, select_ieee8023
from helpers.data.sources.kaggle import (
    PNEUMONIA_HANDLE,
    RADIOGRAPHY_HANDLE,
    collection,
    kaggle_dataset,
    kermany_patient,
    prepare_chest_xray_pneumonia,
    prepare_covid19_radiography,
    read_sheet,
)
from helpers.data.sources.recipes import RECIPES
from helpers.data.sources.synthetic import prepare_synthetic

__all__ = [
    "ACTUALMED_COMMIT", "ACTUALMED_FINDINGS", "COVID_CT_COMMIT", "COVID_CT_METAINFO", "FOLDER_CLASSES",
    "IEEE8023_COMMIT", "IEEE8023_FINDINGS", "MANIFEST_COLUMNS", "PNEUMONIA_HANDLE", "RADIOGRAPHY_HANDLE", "RECIPES",
    "SOURCES", "GitHubCheckout", "Prepared", "Source", "SourceUnavailable", "base_name", "collection",
    "covid_ct_patient", "get_source", "github_raw", "kaggle_dataset", "kermany_patient", "marker_variant",
    "prepare_actualmed", "prepare_chest_xray_pneumonia", "prepare_covid19_radiography", "prepare_covid_ct",
    "prepare_folder", "prepare_ieee8023", "prepare_synthetic", "read_covid_ct_patients", "read_sheet", "register",
    "select_actualmed", "select_ieee8023",
]
