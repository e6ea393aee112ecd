"""Throughput of ``helpers.images.load_images`` on the real sample files: cold decode vs the cache.

Decodes and resizes every image of ``../shared/data/ieee8023-mini`` and
``kermany-mini`` three times, each into a fresh temporary cache folder except
the last: cold with one thread, cold with the default thread pool, then again
from the cache that the second run wrote. Run it from the project root::

    python -m benchmarks.bench_images [SIZE]
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pandas as pd

from helpers.images import load_images

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDERS = ("ieee8023-mini", "kermany-mini")
SUFFIXES = {".jpg", ".jpeg", ".png"}


def sample_dataset(root: Path = SHARED_DATA) -> SimpleNamespace:
    """The real sample images as a dataset-like object (what ``load_images`` needs)."""
    if not root.is_dir():
        raise SystemExit(f"real sample data not found at {root} (see ../shared/data/README.md)")
    paths = sorted(
        path.relative_to(root).as_posix()
        for folder in FOLDERS
        for path in (root / folder).rglob("*")
        if path.suffix.lower() in SUFFIXES
    )
    key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    return SimpleNamespace(name="bench-sample", root=root, key=key, manifest=pd.DataFrame({"path": paths}))


def _timed(dataset, size: int, **options) -> tuple[float, int]:
    started = time.perf_counter()
    result = load_images(dataset, size, progress=False, **options)
    return time.perf_counter() - started, len(result)


def run(size: int = 224) -> dict:
    """Images per second: cold (1 thread and the default pool) and from the cache; ratios between them."""
    dataset = sample_dataset()
    with tempfile.TemporaryDirectory() as single, tempfile.TemporaryDirectory() as pooled:
        with mock.patch.dict(os.environ, {"COURSE_DATA_DIR": single}):
            cold_single, n = _timed(dataset, size, workers=1)
        with mock.patch.dict(os.environ, {"COURSE_DATA_DIR": pooled}):
            cold, _ = _timed(dataset, size)
            cached, _ = _timed(dataset, size)
    return {
        "size": size,
        "images": n,
        "cpus": os.cpu_count(),
        "cold_1_thread_per_s": round(n / cold_single, 1),
        "cold_per_s": round(n / cold, 1),
        "cached_per_s": round(n / cached, 1),
        "threads_speedup": round(cold_single / cold, 2),
        "cache_speedup": round(cold / cached, 1),
    }


if __name__ == "__main__":
    results = run(int(sys.argv[1]) if len(sys.argv) > 1 else 224)
    print(
        f"{results['images']} real images at {results['size']}px on {results['cpus']} CPUs: "
        f"cold {results['cold_1_thread_per_s']} img/s with 1 thread, {results['cold_per_s']} img/s "
        f"with the pool (x{results['threads_speedup']}); from the cache {results['cached_per_s']} img/s "
        f"(x{results['cache_speedup']} faster than cold)"
    )
