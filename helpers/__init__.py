"""Helpers for the course on COVID-19 detection in chest X-rays and CT scans.

Teaching material, not a diagnostic device.
"""

from helpers.constants import DISCLAIMER
from helpers.data.dataset import Dataset, load_dataset
from helpers.environment import IS_COLAB, setup

__version__ = "0.1.0"
REPO = "covid-dl-course/covid-detection-course"  # GitHub owner/name: Colab badges and the setup cell use it

__all__ = ["DISCLAIMER", "IS_COLAB", "REPO", "Dataset", "__version__", "load_dataset", "setup"]
