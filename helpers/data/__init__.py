"""Datasets: the registry of sources, downloads, the manifest, the patient-level split, the tasks.

Imports without TensorFlow.
"""

from helpers.data.dataset import SYNTHETIC_BANNER, Dataset, course_dataset, dataset_info, describe  # noqa: I001
from helpers.data.dataset import load_dataset, near_duplicates, patient_split, test_fingerprint
from helpers.data.download import DownloadError
from helpers.data.registry import MANIFEST_COLUMNS, SourceUnavailable, base_name, get_source, marker_variant
from helpers.data.tasks import DEFAULT_TASK, TASKS, Task, get_task

__all__ = [
    "DEFAULT_TASK", "MANIFEST_COLUMNS", "SYNTHETIC_BANNER", "TASKS", "Dataset", "DownloadError", "SourceUnavailable",
    "Task", "base_name", "get_task",
    "course_dataset", "dataset_info", "describe", "get_source", "load_dataset", "marker_variant", "near_duplicates",
    "patient_split", "test_fingerprint",
]
