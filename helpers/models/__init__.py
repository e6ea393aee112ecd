"""Models: a small CNN from scratch (:mod:`.cnn`) and transfer models on ImageNet backbones (:mod:`.transfer`).

Every model takes images of shape ``(size, size, 3)`` with values in 0..255
(grayscale repeated on three channels) and returns one float32 probability of
COVID. Augmentation and preprocessing (each backbone's own ``preprocess_input``
rule) are layers inside the model, so a saved ``.keras`` file needs nothing but
a resize to predict, and training, evaluation, the CLI and the demo cannot
disagree. Importing this package registers :class:`Preprocess`, so saved models
deserialise. Training is in :mod:`.train`, ``tf.data`` in :mod:`.pipeline`, the
VGG16 + XGBoost hybrid in :mod:`.hybrid`.
"""

from helpers.models.cnn import Preprocess, augmentation, build_cnn, head
from helpers.models.transfer import (
    BACKBONES,
    Backbone,
    backbone_layers,
    backbone_on,
    backbone_spec,
    build_transfer,
    freeze_backbone,
    gradcam_layer,
    input_size,
    unfreeze_top,
    with_weights_fallback,
)

__all__ = [
    "BACKBONES", "Backbone", "Preprocess", "augmentation", "backbone_layers",
    "backbone_on", "backbone_spec", "build_cnn", "build_transfer", "freeze_backbone", "gradcam_layer", "head",
    "input_size", "unfreeze_top", "with_weights_fallback",
]
