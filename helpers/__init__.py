"""Helpers for the course on COVID-19 detection in chest X-rays and CT scans.

Teaching material, not a diagnostic device.
"""

from helpers.constants import DISCLAIMER
from helpers.data.dataset import Dataset, load_dataset
from helpers.environment import IS_COLAB, setup

# The release: pyproject.toml reads the version from here, and the Colab badges and the setup cell's
# install URL name its tag, so that a notebook opened from a badge installs the helpers it was built with.
# `make release VERSION=x.y.z` changes it.
__version__ = "0.1.0"
REF = f"v{__version__}"  # the git tag of the release
REPO = "covid-dl-course/covid-detection-course"  # GitHub owner/name

__all__ = ["DISCLAIMER", "IS_COLAB", "REF", "REPO", "Dataset", "__version__", "load_dataset", "setup"]
