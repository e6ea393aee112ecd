"""Data exploration for notebook 01: what is in a dataset, and what the early COVID-19 classifiers got wrong.

Tables (``DataFrame`` s, one call each) are in :mod:`helpers.explore.tables`, the
experiments (leakage, source predictability, shortcut mixes) in
:mod:`helpers.explore.experiments`; both are re-exported here. The figures that draw
them are in :mod:`helpers.plots.exploration`. No TensorFlow here.
"""

from helpers.explore.experiments import (
    FEATURES,
    image_level_split,
    leakage,
    pediatric_mix,
    shortcut_mix,
    shortcut_summary,
    source_predictability,
    thumbnails,
)
from helpers.explore.tables import (
    NOT_RECORDED,
    class_balance,
    demographics,
    file_formats,
    file_header,
    image_statistics,
    images_per_patient,
    near_duplicate_pairs,
    patients,
    views,
)

__all__ = [
    "FEATURES",
    "NOT_RECORDED",
    "class_balance",
    "demographics",
    "file_formats",
    "file_header",
    "image_level_split",
    "image_statistics",
    "images_per_patient",
    "leakage",
    "near_duplicate_pairs",
    "patients",
    "pediatric_mix",
    "shortcut_mix",
    "shortcut_summary",
    "source_predictability",
    "thumbnails",
    "views",
]
