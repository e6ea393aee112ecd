"""Explaining models: Grad-CAM (:mod:`.gradcam`), the tag-shortcut lesson (:mod:`.shortcut`),
external validation (:mod:`.external`) and the runs and images notebook 05 explains (:mod:`.examples`).

Importing the package does not import TensorFlow; the functions that need it import it.
"""

from helpers.explain.gradcam import gradcam, overlay

__all__ = ["gradcam", "overlay"]
