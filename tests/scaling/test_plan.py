"""Scaling plan arithmetic against hand-computed cases, rates read from a published throughput file, and the
simulation's model fit (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from copybench.scaling.plan import DeviceRates, _summarise, plan_scan, plan_table, read_rates

H200 = (
    Path(__file__).parents[2]
    / "results/throughput/NVIDIA-H200/run2-f181746/sscd_disc_mixup.sq288__bf16__b256__cl.json"
)


def test_plan_matches_hand_computation():
    rates = DeviceRates("dev", "det", 512, extract_ips=100.0, pairs_per_s=1e6, source="")
    p = plan_scan(rates, n_train=1000, n_generated=100, n_workers=2, baseline=10, startup_s=4.0)
    # (1000 + 100) images / (2 x 100/s) = 5.5 s; (100 + 10) x 1000 pairs / (2 x 1e6/s) = 0.055 s
    assert p.extract_h * 3600 == pytest.approx(5.5)
    assert p.search_h * 3600 == pytest.approx(0.055)
    assert p.wall_h * 3600 == pytest.approx(4.0 + 5.5 + 0.055)
    assert p.device_hours == pytest.approx(2 * p.wall_h)
    assert p.storage_gb == pytest.approx(1100 * 512 * 2 / 1e9)  # fp16: two bytes per dimension
    # the baseline never samples more training images than there are
    assert plan_scan(rates, 5, 0, 1, baseline=10).search_h * 3600 == pytest.approx(5 * 5 / 1e6)


def test_rates_come_from_the_published_throughput_file():
    rates = read_rates(H200)
    assert rates.device == "NVIDIA H200" and rates.dims == 512
    assert rates.extract_ips == pytest.approx(3396.142316)
    assert rates.pairs_per_s == pytest.approx(110974.542342 * 100_000)
    table = plan_table(rates, {"2B": 2_000_000_000}, 10_000, (1, 8), price=2.0)
    assert "| 2B | 8 | 20 h 27 min |" in table and "2,048.0 GB" in table


def test_simulation_fit_predicts_from_the_single_worker_run():
    runs = [
        {"workers": 1, "wall_s": 12.0, "busy_s": 10.0},
        {"workers": 2, "wall_s": 8.0, "busy_s": 10.4},
    ]
    summary = _summarise(runs, "det", 50, (1, 2), 8)
    assert summary["model"] == {
        "startup_s": pytest.approx(2.0),
        "per_worker_images_per_s": pytest.approx(5.0),
    }
    check = summary["checks"][1]
    assert check["workers"] == 2 and check["measured_wall_s"] == 8.0
    assert check["predicted_wall_s"] == pytest.approx(7.0)  # 2 s + 50 / (2 x 5/s)
    # with K=2's own rate (50 images in 10.4 busy seconds over 2 workers): 2 s + 10.4 / 2 s
    assert check["predicted_with_own_rates_s"] == pytest.approx(2.0 + 5.2)
    assert check["per_worker_images_per_s"] == pytest.approx(50 / 10.4)


def test_plan_volumes_and_the_ann_option_by_hand():
    from copybench.scaling.plan import AnnPlan

    rates = DeviceRates("dev", "det", 512, extract_ips=100.0, pairs_per_s=1e6, source="")
    p = plan_scan(rates, n_train=1000, n_generated=100, n_workers=2, baseline=10, bytes_per_image=20_000)
    assert p.input_gb == pytest.approx(1100 * 20_000 / 1e9)
    assert p.input_gbps == pytest.approx(2 * 100 * 20_000 / 1e9)  # two devices at 100 images/s each
    assert p.store_read_gb == pytest.approx(2 * 1000 * 512 * 2 / 1e9)  # search + baseline read the store once
    ann = AnnPlan(nlist=100, nprobe=10, pq_m=32)
    a = plan_scan(rates, n_train=1000, n_generated=100, n_workers=2, baseline=10, ann=ann)
    # generated: 100 x (1000 x 10/100 + 100 centroids) pairs; baseline exact: 10 x 1000
    assert a.search_h * 3600 == pytest.approx((100 * (100 + 100) + 10 * 1000) / 2e6)
    assert a.index_gb == pytest.approx((1000 * (32 + 8) + 100 * 512 * 4) / 1e9)
    assert a.store_read_gb == pytest.approx(3 * 1000 * 512 * 2 / 1e9)
    table = plan_table(rates, {"12M": 12_000_000}, 100, (1,), bytes_per_image=None, ann=ann)
    assert "not measured" in table and "ANN index" in table
