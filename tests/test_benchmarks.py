"""The benchmarks measure what they claim: VGG16's conv cost, the image cache on real files, ratios in the tables.

No timing is asserted: only that the numbers are counted on the right things and reported as ratios.
"""

from __future__ import annotations

import pytest

from benchmarks import bench_bootstrap, bench_hybrid, bench_images


def test_vgg16_conv_stack_costs_about_15_gmac_per_224_px_image():
    from helpers.models.hybrid import feature_extractor

    model, _ = feature_extractor("vgg16", size=224, weights=None, pooling="flatten")
    assert bench_hybrid.conv_macs(model) / 1e9 == pytest.approx(15.35, abs=0.1)  # Simonyan & Zisserman: ~15.5


def test_image_benchmark_decodes_every_real_sample_then_reads_the_cache(shared_data):
    expected = len(bench_images.sample_dataset(shared_data).manifest)
    result = bench_images.run(32)
    assert result["images"] == expected > 0
    assert result["cache_speedup"] == pytest.approx(result["cached_per_s"] / result["cold_per_s"], rel=0.1)


def test_hybrid_table_reports_ratios_and_warns_about_a_busy_machine():
    extraction = {size: {"gmac_per_image": g, "images_per_s": ips, "limit_images_per_s": 4.0 * ips,
                         "fraction_of_limit": 0.25} for size, g, ips in ((224, 15.35, 3.0), (96, 2.82, 15.0))}
    result = {"peak_gflops": 100.0, "cpu_count": 2, "load_before": 3.0, "extraction": extraction,
              "xgboost": {"images": 245, "rounds": 50, "pooled_features": 512, "flat_features": 25088,
                          "pooled_seconds": 1.0, "flat_seconds": 30.0, "ratio": 30.0}}
    text = bench_hybrid.table(result)
    assert "WARNING: load average 3.0" in text and "25%" in text
    assert "96 px is 5.0x faster than 224 px (pixels ratio 5.4x)" in text
    assert "flattened / pooled: 30x the time for 49x the features" in text


def test_bootstrap_benchmark_compares_the_same_resamples_both_ways():
    result = bench_bootstrap.run(n_images=120, n_boot=50)
    assert (result["images"], result["patients"], result["n_boot"]) == (120, 40, 50)
    assert result["vectorised_interval"] == pytest.approx(result["loop_interval"])  # the same resamples
    assert result["speedup"] == pytest.approx(result["loop_seconds"] / result["vectorised_seconds"])
    text = bench_bootstrap.table(result)
    assert "| scikit-learn in a loop |" in text and "x faster |" in text and "DIFFERENT" not in text
