"""The course's vocabulary, defined once: labels, splits, the disclaimer and the synthetic mark."""

POSITIVE = "COVID"
NEGATIVE = "NORMAL"
LABELS = (NEGATIVE, POSITIVE)  # in class-index order: 0 = NORMAL, 1 = COVID
PNEUMONIA = "PNEUMONIA"  # other (non-COVID-19) pneumonias, for the tasks of helpers.data.tasks
SPLITS = ("train", "val", "test")

DISCLAIMER = (
    "Teaching material, not a diagnostic device: nothing in this course may be used to diagnose, "
    "treat or triage anyone."
)
SYNTHETIC_MARK = "SYNTHETIC DATA"  # in every title, banner and card drawn from generated images
MARKER_SUFFIX = "-marker"  # the dataset variant whose images carry a source tag (the shortcut lesson)
