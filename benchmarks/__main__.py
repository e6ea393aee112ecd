"""``make bench`` (``python -m benchmarks``): every speed figure of the course in one run, as ratios.

1. decode + resize throughput on real files, cold vs from the image cache;
2. VGG16 feature throughput at 224 and 96 px next to the machine's FLOP-bound limit,
   and XGBoost fit time on pooled vs flattened features;
3. the patient bootstrap: vectorised vs an explicit resampling loop;
4. the per-notebook time table of the SMOKE series (X-ray and CT), cold caches
   (``--no-series`` skips it); on a GPU machine also the full series.

Printed, and written to ``outputs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from unittest import mock

from benchmarks import bench_bootstrap, bench_hybrid, bench_images
from helpers import paths
from helpers.app import runner


def images_section() -> str:
    r = bench_images.run(224)
    return "\n".join([
        f"## Images: decode + resize to 224 px ({r['images']} real files, {r['cpus']} CPUs)", "",
        "| | images/s | ratio |", "|---|---|---|",
        f"| cold, 1 thread | {r['cold_1_thread_per_s']} | 1.0 |",
        f"| cold, thread pool | {r['cold_per_s']} | {r['threads_speedup']} |",
        f"| from the cache | {r['cached_per_s']} | {round(r['cached_per_s'] / r['cold_1_thread_per_s'], 1)} |",
        "", f"The cache is {r['cache_speedup']}x faster than decoding with the pool."])


def series_section(profile: str, datasets: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(
        os.environ, {"COURSE_DATA_DIR": f"{tmp}/data", "COURSE_OUTPUT_DIR": f"{tmp}/outputs"}
    ):
        started = time.perf_counter()
        rows = runner.run_all(profile, datasets=datasets, force=True, report=False)
        total = time.perf_counter() - started
    lines = [f"## The {profile} series, cold caches ({', '.join(datasets)})", "",
             "| notebook | dataset | status | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['dataset']} | {r['status']} | {r['seconds']:.1f} |" for r in rows]
    busy = sum(r["seconds"] for r in rows)
    jobs = min(runner.default_jobs(profile), len(datasets))
    lines += ["", f"Wall time, kernel starts included: {total:.0f} s, with {jobs} dataset series side by side "
              f"(each notebook's time above includes sharing the CPU; on average {busy / total:.1f} notebooks "
              "ran at once). `make smoke JOBS=1` runs them one after the other."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--no-series", action="store_true", help="skip the notebook series")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    sections = [f"# Benchmarks\n\n{os.cpu_count()} CPUs, load average {load:.1f} before the run"
                + (" (other work shared the CPU: numbers are pessimistic)" if load > 0.5 * os.cpu_count() else "")]
    sections.append(images_section())
    sections.append("## VGG16 features and XGBoost\n\n```\n" + bench_hybrid.table(bench_hybrid.run()) + "\n```")
    sections.append(bench_bootstrap.table(bench_bootstrap.run()))
    if not args.no_series:
        sections.append(series_section("smoke", ["synthetic", "synthetic-ct"]))
        if runner.has_gpu():
            sections.append(series_section("full", ["synthetic"]))
    text = "\n\n".join(sections) + "\n"
    target = paths.output_dir() / "benchmarks.md"
    target.write_text(text)
    print(text)
    print(f"written to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
