"""VGG16 as a fixed feature extractor, XGBoost (or logistic regression) on top.

The hybrid in three steps, each cheap to repeat:

1. :func:`extract_features` (:mod:`.features`): a frozen ImageNet backbone (VGG16 by default)
   turns every image into a vector, either the 512 global-average-pooled
   channels of its last block (``pooling="avg"``) or the whole last feature map
   flattened (``pooling="flatten"``: 7 x 7 x 512 = 25,088 values at 224 px).
   Features are cached under ``cache_dir("features")``; the file name holds
   everything they depend on, so a stale cache is never read.
2. :func:`train_xgboost` / :func:`train_logistic` (:mod:`.classifier`): fit on the train split,
   choose (early stopping, ``C``) on the validation split only.
3. :func:`save_hybrid` writes the run's artifacts, the classifier and ``features.json``;
   :func:`load_hybrid` reloads both halves, and the reloaded :class:`Hybrid` predicts from images.

Its figures are in :mod:`helpers.plots.hybrid`.
"""

from helpers.models.hybrid.classifier import (
    CLASSIFIER_FILES,
    Hybrid,
    default_device,
    load_hybrid,
    results_table,
    save_hybrid,
    train_logistic,
    train_xgboost,
)
from helpers.models.hybrid.features import Features, backbone_features, extract_features, feature_extractor

__all__ = [
    "CLASSIFIER_FILES", "Features", "Hybrid", "backbone_features", "default_device", "extract_features", "feature_extractor",
    "load_hybrid", "results_table", "save_hybrid", "train_logistic", "train_xgboost",
]
