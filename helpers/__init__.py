"""Helpers for the course on COVID-19 detection in chest X-rays and CT scans.

Teaching material, not a diagnostic device.
"""

from helpers.datasets import Dataset, load_dataset
from helpers.environment import IS_COLAB, setup

__version__ = "0.1.0"
REPO = "covid-dl-course/covid-detection-course"  # GitHub owner/name: Colab badges and the setup cell use it
DISCLAIMER = (
    "Teaching material, not a diagnostic device: nothing in this course may be used to diagnose, "
    "treat or triage anyone."
)

__all__ = ["DISCLAIMER", "IS_COLAB", "REPO", "Dataset", "__version__", "load_dataset", "setup"]
