"""Transfer learning: the backbone registry, frozen ImageNet backbones with a new head, fine-tuning.

Transfer models are one flat functional graph: the backbone's layers sit directly in the model
(no nested sub-model), so Grad-CAM can reach the last convolution by name and freezing is a
loop over ``model.layers``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
from keras import layers

from helpers.environment import strategy_scope
from helpers.models.cnn import Preprocess, augmentation, head


@dataclass(frozen=True)
class Backbone:
    """One ImageNet backbone: its Keras application, native input size, preprocessing and Grad-CAM layer."""

    application: str  # the class name in keras.applications
    size: int
    mode: str  # preprocessing rule, as in keras.applications.imagenet_utils
    last_conv: str


BACKBONES = {
    "vgg16": Backbone("VGG16", 224, "caffe", "block5_conv3"),
    "resnet50": Backbone("ResNet50", 224, "caffe", "conv5_block3_out"),
    "inceptionv3": Backbone("InceptionV3", 299, "tf", "mixed10"),
    "xception": Backbone("Xception", 299, "tf", "block14_sepconv2_act"),
    "densenet121": Backbone("DenseNet121", 224, "torch", "relu"),
    # room for more: lighter backbones for small machines
    "mobilenetv2": Backbone("MobileNetV2", 224, "tf", "out_relu"),
    "efficientnetb0": Backbone("EfficientNetB0", 224, "raw", "top_activation"),
}
HEAD_LAYERS = {"augment", "preprocess", "gap", "dropout", "probability"}


def backbone_spec(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def backbone_on(x, backbone: Backbone, weights: str | None) -> keras.Model:
    """The backbone's application (no top) on ``x`` (pixels 0..255), its own preprocessing in front."""
    x = Preprocess(backbone.mode, name="preprocess")(x)
    return getattr(keras.applications, backbone.application)(include_top=False, weights=weights, input_tensor=x)


def build_transfer(
    name: str, *, size: int | None = None, weights: str | None = "imagenet", dropout: float = 0.3,
    augment: bool = True, strict: bool = False, seed: int = 42, classes: int = 1,
) -> tuple[keras.Model, str | None]:
    """A frozen ImageNet backbone with a new head; returns ``(model, weights actually loaded)``.

    If the ImageNet weights cannot be downloaded and ``strict`` is false, the
    backbone starts from random weights, with a loud warning (and the returned
    weights are ``None`` so artifacts and the report say so). ``classes=3``: a softmax head.
    """
    backbone = backbone_spec(name)
    size = size or backbone.size

    def build(weights):
        with strategy_scope():
            inputs = keras.Input((size, size, 3), name="image")
            base = backbone_on(augmentation(seed)(inputs) if augment else inputs, backbone, weights)
            return keras.Model(inputs, head(base.output, dropout, classes), name=name)

    model, weights = with_weights_fallback(build, weights, name=name, strict=strict)
    freeze_backbone(model)
    return model, weights


def with_weights_fallback(build, weights: str | None, *, name: str, strict: bool = False):
    """``build(weights)``; if the weights cannot be had and not ``strict``, ``build(None)`` with a loud warning.

    Returns ``(model, weights actually loaded)``.
    """
    try:
        return build(weights), weights
    except Exception as error:  # noqa: BLE001 - any download failure; re-raised in strict mode
        if weights is None or strict:
            raise
        warnings.warn(
            f"Could not load {weights!r} weights for {name} ({type(error).__name__}: {error}). "
            "CONTINUING WITH RANDOM WEIGHTS: results will be far worse than with pretrained weights. "
            "Check your connection (the weights are downloaded once into KERAS_HOME) or set STRICT=True.",
            stacklevel=2,
        )
        return build(None), None


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers of a transfer model (everything but input, augmentation, preprocessing and head)."""
    return [layer for layer in model.layers if layer.name not in HEAD_LAYERS and not isinstance(layer, layers.InputLayer)]


def freeze_backbone(model: keras.Model) -> None:
    for layer in backbone_layers(model):
        layer.trainable = False


def unfreeze_top(model: keras.Model, fraction: float = 0.2) -> int:
    """Make the top ``fraction`` of the backbone's layers trainable (batch norm stays frozen); returns how many."""
    backbone = backbone_layers(model)
    start = int(len(backbone) * (1 - fraction))
    count = 0
    for layer in backbone[start:]:
        if not isinstance(layer, layers.BatchNormalization):
            layer.trainable = True
            count += 1
    return count


def gradcam_layer(model: keras.Model) -> str:
    """The name of the layer Grad-CAM should look at: ``last_conv`` for the CNN, the backbone's last conv otherwise."""
    if model.name in BACKBONES:
        return BACKBONES[model.name].last_conv
    maps = [layer.name for layer in model.layers if layer.name == "last_conv" or isinstance(layer, layers.Conv2D)]
    if not maps:
        raise ValueError(f"model {model.name!r} has no convolution for Grad-CAM to look at")
    return "last_conv" if "last_conv" in maps else maps[-1]


def input_size(model: keras.Model) -> int:
    return int(model.input_shape[1])
