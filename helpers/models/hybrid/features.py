"""Backbone features of every image, cached: step 1 of the hybrid (see :mod:`helpers.models.hybrid`).

A frozen ImageNet backbone, the course's preprocessing inside, turns each image into the 512
pooled channels of its last block (``pooling="avg"``) or its whole last feature map flattened
(``pooling="flatten"``). The cache file's name holds everything the features depend on (dataset
key, backbone, size, pooling, weights, versions), so a stale cache is never read.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers

from helpers.files import atomic_write
from helpers.images import READER_VERSION, ImageSet
from helpers.models.pipeline import labels_of, make_pipeline
from helpers.models.transfer import backbone_on, backbone_spec, with_weights_fallback
from helpers.paths import cache_file

FEATURE_VERSION = 1  # bump whenever the extractor's output changes: old feature caches are then ignored
POOLINGS = ("avg", "flatten")


@dataclass
class Features:
    """Backbone features of an ImageSet: ``X[i]`` belongs to ``manifest.iloc[i]``.

    ``seconds`` is the time the extraction took when it ran (kept in the cache,
    so a cache hit still reports what extracting costs); ``weights`` are the
    weights actually used (``None``: random, seeded by ``seed``).
    """

    X: np.ndarray  # float32, N x D
    manifest: pd.DataFrame
    seconds: float
    from_cache: bool
    weights: str | None
    backbone: str = "vgg16"
    pooling: str = "avg"
    size: int = 224
    seed: int = 42
    shape: tuple[int, ...] = ()  # one image's features before flattening: (C,) or (H, W, C)
    path: Path | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def split(self, name: str, classes: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features and 0/1 labels (1 = COVID) of one split; with ``classes``, class indices."""
        mask = (self.manifest["split"] == name).to_numpy()
        return self.X[mask], labels_of(self, name, classes).astype(np.int32)

    def spec(self) -> dict:
        """What rebuilds the extractor (``features.json``)."""
        return {"backbone": self.backbone, "pooling": self.pooling, "size": self.size, "weights": self.weights,
                "seed": self.seed, "shape": list(self.shape), "n_features": self.n_features,
                "feature_version": FEATURE_VERSION}


def feature_cache_path(dataset, *, backbone: str, size: int, weights: str | None, pooling: str,
                       seed: int = 42) -> Path:
    """The cache file: named from the dataset's name and key, backbone, size, pooling, weights and versions."""
    init = weights or f"random{seed}"
    return cache_file("features", dataset.name, dataset.key, backbone, f"{size}px", pooling, init,
                      f"f{FEATURE_VERSION}", f"r{READER_VERSION}")


def extract_features(
    dataset, image_set: ImageSet, *, backbone: str = "vgg16", weights: str | None = "imagenet",
    pooling: str = "avg", batch_size: int = 32, strict: bool = False, seed: int = 42, refresh: bool = False,
) -> Features:
    """Features of every image of ``image_set`` (the images of ``dataset``), from the cache when possible.

    If the ImageNet weights cannot be downloaded and ``strict`` is false, the
    backbone starts from random weights (seeded by ``seed``) with a loud
    warning, and ``Features.weights`` is ``None``.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    size = int(image_set.images.shape[1])
    settings = dict(backbone=backbone, size=size, pooling=pooling, seed=seed)
    cached = None if refresh else _read_cache(feature_cache_path(dataset, weights=weights, **settings), image_set)
    if cached is not None:
        return cached
    extractor, used = feature_extractor(backbone, size=size, weights=weights, pooling=pooling, strict=strict,
                                        seed=seed)
    path = feature_cache_path(dataset, weights=used, **settings)
    cached = None if refresh or used == weights else _read_cache(path, image_set)
    if cached is not None:
        return cached
    started = time.perf_counter()
    X = backbone_features(extractor, image_set.images, batch_size=batch_size)
    features = Features(X, image_set.manifest, round(time.perf_counter() - started, 2), False, used,
                        shape=_feature_shape(extractor), path=path, **settings)
    _write_cache(features)
    print(f"features: extracted {X.shape[0]} x {X.shape[1]} {backbone} features ({pooling}, {size}px, weights "
          f"{used}) in {features.seconds:.1f} s; cached to {path.name}")
    return features


def feature_extractor(
    backbone: str = "vgg16", *, size: int | None = None, weights: str | None = "imagenet", pooling: str = "avg",
    strict: bool = False, seed: int = 42,
) -> tuple[keras.Model, str | None]:
    """The frozen backbone with the course's preprocessing inside; returns ``(model, weights actually used)``.

    Built in float32 even under mixed precision, so features do not depend on the device.
    """
    spec = backbone_spec(backbone)
    size = size or spec.size
    model, weights = with_weights_fallback(
        lambda w: _build_extractor(spec, size, w, pooling), weights, name=backbone, strict=strict
    )
    if weights is None:
        _seeded_init(model, seed)
    model.trainable = False
    return model, weights


@contextlib.contextmanager
def _float32_policy():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build_extractor(spec, size: int, weights: str | None, pooling: str) -> keras.Model:
    with _float32_policy():
        inputs = keras.Input((size, size, 3), name="image")
        base = backbone_on(inputs, spec, weights)
        head = layers.GlobalAveragePooling2D if pooling == "avg" else layers.Flatten
        return keras.Model(inputs, head(name="features")(base.output), name=f"{spec.application.lower()}_features")


def _feature_shape(extractor: keras.Model) -> tuple[int, ...]:
    """One image's features before pooling or flattening: ``(C,)`` for avg, ``(H, W, C)`` for flatten."""
    head = extractor.get_layer("features")
    shape = head.output.shape if isinstance(head, layers.GlobalAveragePooling2D) else head.input.shape
    return tuple(int(d) for d in shape[1:])


def _seeded_init(model: keras.Model, seed: int) -> None:
    """Re-draw every kernel from a seeded Glorot-uniform: random features that are the same on every run."""
    kernels = [w for w in model.weights if w.name == "kernel"]
    for i, kernel in enumerate(kernels):
        kernel.assign(keras.initializers.GlorotUniform(seed=seed + i)(kernel.shape, kernel.dtype))


def backbone_features(extractor: keras.Model, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """The extractor's output for grayscale images (N x size x size uint8): N x D float32."""
    if len(images) == 0:
        return np.zeros((0, int(np.prod(extractor.output.shape[1:]))), np.float32)
    return np.asarray(extractor.predict(make_pipeline(images, batch_size=batch_size), verbose=0), np.float32)


def _write_cache(features: Features) -> None:
    """Write under a temporary name, then rename: a crash never leaves a half file."""
    with atomic_write(features.path) as file:
        np.savez(file, X=features.X, paths=np.asarray(features.manifest["path"], dtype=str),
                 spec=json.dumps({**features.spec(), "seconds": features.seconds}))


def _read_cache(path: Path, image_set: ImageSet) -> Features | None:
    """The cached features, or None when absent, unreadable or not for these images."""
    if not path.exists():
        return None
    try:
        with np.load(path) as npz:
            X, paths, spec = npz["X"], npz["paths"].tolist(), json.loads(str(npz["spec"]))
    except Exception:  # noqa: BLE001 - any damage means: extract again
        return None
    if paths != image_set.manifest["path"].tolist() or len(X) != len(image_set.images):
        return None
    features = Features(X, image_set.manifest, spec["seconds"], True, spec["weights"], backbone=spec["backbone"],
                        pooling=spec["pooling"], size=spec["size"], seed=spec["seed"], shape=tuple(spec["shape"]),
                        path=path)
    print(f"features: loaded {X.shape[0]} x {X.shape[1]} cached features (cache hit) from {path.name}; "
          f"extracting them took {features.seconds:.1f} s")
    return features
