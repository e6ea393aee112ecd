"""Datasets: the registry of sources, downloads, the manifest, the patient-level split.

Imports without TensorFlow.
"""

from helpers.data.dataset import (
    SYNTHETIC_BANNER,
    Dataset,
    course_dataset,
    dataset_info,
    describe,
    load_dataset,
    near_duplicates,
    patient_split,
    test_fingerprint,
)
from helpers.data.download import DownloadError
from helpers.data.registry import MANIFEST_COLUMNS, SourceUnavailable, base_name, get_source, marker_variant

__all__ = [
    "MANIFEST_COLUMNS", "SYNTHETIC_BANNER", "Dataset", "DownloadError", "SourceUnavailable", "base_name",
    "course_dataset", "dataset_info", "describe", "get_source", "load_dataset", "marker_variant", "near_duplicates",
    "patient_split", "test_fingerprint",
]
