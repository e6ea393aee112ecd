"""How fast is the VGG16 + XGBoost hybrid, and how far from what the machine could do?

Measured in one run (about 2-3 minutes on 2 CPU cores):

- VGG16 feature extraction throughput (images/s) at 224 and 96 px, with
  random weights (the speed does not depend on the weights), next to the
  FLOP-bound limit: the conv stack's multiply-accumulates (counted from the
  model: ~15.4 GMAC per 224 px image, scaling with the pixels) against the peak
  float32 FLOP/s of a large TensorFlow matmul.
- XGBoost fit time on pooled (512) vs flattened (7 x 7 x 512 = 25,088)
  features of the same images, a fixed number of rounds, no early stopping.
  Only the synthetic smoke set's ~250 images, to keep the flattened fit short.

``python -m benchmarks.bench_hybrid`` (from the project root) prints a table; ``run()`` returns the numbers.
"""

from __future__ import annotations

import os
import tempfile
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZES = (224, 96)
ROUNDS = 50


def peak_flops(*, n: int = 4096, repeats: int = 3) -> float:
    """Float32 FLOP/s of the best of ``repeats`` ``n x n`` matmuls (2 n^3 FLOPs each) in a compiled TF function."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()  # warm-up and tracing
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def conv_macs(model) -> int:
    """Multiply-accumulates of one image through the model's convolutions."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            kh, kw, c_in, _ = layer.kernel.shape
            total += h * w * c_out * kh * kw * c_in
    return int(total)


def extraction(images, *, size: int, batch_size: int = 32) -> dict:
    """Throughput of the flattened VGG16 extractor on ``images`` (after one warm-up batch)."""
    from helpers.models.hybrid import backbone_features, feature_extractor

    model, _ = feature_extractor("vgg16", size=size, weights=None, pooling="flatten")
    backbone_features(model, images[:batch_size], batch_size=batch_size)
    started = time.perf_counter()
    X = backbone_features(model, images, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {"size": size, "images": len(images), "seconds": seconds, "images_per_s": len(images) / seconds,
            "gmac_per_image": conv_macs(model) / 1e9, "X": X, "shape": model.get_layer("features").input.shape[1:]}


def xgboost_fit_seconds(X, y, *, rounds: int = ROUNDS) -> float:
    import xgboost

    from helpers.models.hybrid import default_device

    model = xgboost.XGBClassifier(tree_method="hist", device=default_device(), n_estimators=rounds,
                                  learning_rate=0.05, max_depth=4)
    started = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - started


def synthetic_images() -> dict:
    """The synthetic smoke set's images at each size (generated into a temporary folder unless one is set)."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(
        os.environ, {"COURSE_DATA_DIR": os.environ.get("COURSE_DATA_DIR", tmp), "COURSE_OUTPUT_DIR": f"{tmp}/outputs"}
    ):
        from helpers.data.dataset import course_dataset
        from helpers.images import load_images

        dataset = course_dataset("synthetic", smoke=True, verbose=False)
        return {size: load_images(dataset, size, progress=False) for size in SIZES}


def run() -> dict:
    """Every number of the benchmark in one dict (``extraction`` per size, ``xgboost``, ``peak_gflops``)."""
    load = os.getloadavg()[0]  # before our own work: other processes sharing the CPU make every number worse
    image_sets = synthetic_images()
    peak = peak_flops()
    measured = {size: extraction(image_sets[size].images, size=size) for size in SIZES}
    result = {"peak_gflops": peak / 1e9, "cpu_count": os.cpu_count(), "load_before": load, "extraction": {}}
    for size, m in measured.items():
        limit = peak / (2e9 * m["gmac_per_image"])
        result["extraction"][size] = {**{k: v for k, v in m.items() if k not in ("X", "shape")},
                                      "limit_images_per_s": limit, "fraction_of_limit": m["images_per_s"] / limit}
    flat = measured[224]["X"]
    pooled = flat.reshape(len(flat), *measured[224]["shape"]).mean(axis=(1, 2))  # = global average pooling
    y = (image_sets[224].manifest["label"] == "COVID").to_numpy(int)
    pooled_s, flat_s = xgboost_fit_seconds(pooled, y), xgboost_fit_seconds(flat, y)
    result["xgboost"] = {"images": len(y), "rounds": ROUNDS, "pooled_features": pooled.shape[1],
                         "flat_features": flat.shape[1], "pooled_seconds": pooled_s, "flat_seconds": flat_s,
                         "ratio": flat_s / pooled_s}
    return result


def table(result: dict) -> str:
    lines = [f"peak float32 matmul: {result['peak_gflops']:.0f} GFLOP/s on {result['cpu_count']} CPU cores"]
    if result["load_before"] > 0.5 * result["cpu_count"]:
        lines.append(f"WARNING: load average {result['load_before']:.1f} before the run: other work shares the "
                     "CPU, the numbers are pessimistic")
    lines += ["", "VGG16 conv stack   GMAC/img   images/s   FLOP-bound limit   fraction of limit"]
    for size, e in result["extraction"].items():
        lines.append(f"  {size:4d} px          {e['gmac_per_image']:7.2f}   {e['images_per_s']:8.1f}   "
                     f"{e['limit_images_per_s']:13.1f}      {e['fraction_of_limit']:10.0%}")
    a, b = (result["extraction"][s]["images_per_s"] for s in SIZES)
    lines.append(f"  {SIZES[1]} px is {b / a:.1f}x faster than 224 px (pixels ratio {(224 / SIZES[1]) ** 2:.1f}x)")
    x = result["xgboost"]
    lines += ["", f"XGBoost fit, {x['images']} images, {x['rounds']} rounds (hist, depth 4)",
              f"  pooled    {x['pooled_features']:6d} features   {x['pooled_seconds']:7.2f} s",
              f"  flattened {x['flat_features']:6d} features   {x['flat_seconds']:7.2f} s",
              f"  flattened / pooled: {x['ratio']:.0f}x the time for {x['flat_features'] / x['pooled_features']:.0f}x "
              "the features"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
