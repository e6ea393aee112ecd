"""Models: a small CNN from scratch and transfer models on five ImageNet backbones.

Every model takes images of shape ``(size, size, 3)`` with values in 0..255
(grayscale repeated on three channels) and returns one float32 probability of
COVID. Augmentation and preprocessing (each backbone's own ``preprocess_input``
rule) are layers inside the model, so a saved ``.keras`` file needs nothing but
a resize to predict, and training, evaluation, the CLI and the demo cannot
disagree. Transfer models are one flat functional graph: the backbone's layers
sit directly in the model, so Grad-CAM can reach the last convolution by name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
from keras import layers, ops

from helpers.environment import strategy_scope


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
COURSE_BACKBONES = ["vgg16", "resnet50", "inceptionv3", "xception", "densenet121"]
HEAD_LAYERS = {"augment", "preprocess", "gap", "dropout", "probability"}


@keras.saving.register_keras_serializable(package="helpers")
class Preprocess(layers.Layer):
    """Pixel values 0..255 in, what the network expects out (``caffe``, ``tf``, ``torch``, ``unit`` or ``raw``)."""

    MEANS = {"caffe": (103.939, 116.779, 123.68), "torch": (0.485, 0.456, 0.406)}
    STDS = (0.229, 0.224, 0.225)

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch", "unit", "raw"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":  # RGB -> BGR, minus the ImageNet mean
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(self.MEANS["caffe"], self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(self.MEANS["torch"], self.compute_dtype)
            return (x / 255.0 - mean) / ops.convert_to_tensor(self.STDS, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def augmentation(seed: int = 42) -> keras.Sequential:
    """Small, anatomy-preserving changes; active only in training.

    No horizontal flip: the heart is on the patient's left, and a flipped chest
    is an anatomy no scanner produces (and side markers would flip too).
    """
    return keras.Sequential(
        [
            layers.RandomRotation(0.03, fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed),
            layers.RandomContrast(0.1, seed=seed),
        ],
        name="augment",
    )


def _head(x, dropout: float):
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)


def build_cnn(
    size: int = 128, *, filters: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.3, augment: bool = True,
    seed: int = 42,
) -> keras.Model:
    """A small CNN: conv blocks with batch norm and max pooling, global pooling, dropout, one sigmoid."""
    with strategy_scope():
        inputs = keras.Input((size, size, 3), name="image")
        x = augmentation(seed)(inputs) if augment else inputs
        x = Preprocess("unit", name="preprocess")(x)
        for i, n in enumerate(filters):
            last = i == len(filters) - 1
            x = layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
            x = layers.Activation("relu", name="last_conv" if last else f"relu{i + 1}")(x)
            if not last:
                x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
        return keras.Model(inputs, _head(x, dropout), name="cnn")


def build_transfer(
    name: str, *, size: int | None = None, weights: str | None = "imagenet", dropout: float = 0.3,
    augment: bool = True, strict: bool = False, seed: int = 42,
) -> tuple[keras.Model, str | None]:
    """A frozen ImageNet backbone with a new head; returns ``(model, weights actually loaded)``.

    If the ImageNet weights cannot be downloaded and ``strict`` is false, the
    backbone starts from random weights, with a loud warning (and the returned
    weights are ``None`` so artifacts and the report say so).
    """
    backbone = backbone_spec(name)
    size = size or backbone.size
    model, weights = with_weights_fallback(
        lambda w: _build_transfer(name, backbone, size, w, dropout, augment, seed), weights, name=name, strict=strict
    )
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


def _build_transfer(name, backbone, size, weights, dropout, augment, seed) -> keras.Model:
    with strategy_scope():
        inputs = keras.Input((size, size, 3), name="image")
        x = augmentation(seed)(inputs) if augment else inputs
        x = Preprocess(backbone.mode, name="preprocess")(x)
        application = getattr(keras.applications, backbone.application)
        base = application(include_top=False, weights=weights, input_tensor=x)
        return keras.Model(inputs, _head(base.output, dropout), name=name)


def backbone_spec(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


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
