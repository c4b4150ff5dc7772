"""Accuracy-versus-speed points and Pareto front, chunked exact search on a torch device, scale records."""

from __future__ import annotations

import numpy as np
import pytest

from copybench.report.speed_plot import accuracy_speed_points, pareto_front, plot_accuracy_speed
from copybench.results import Result


def test_pareto_front_by_hand():
    # (speed, accuracy): C is beaten by A (faster and better); D ties B on speed with less accuracy
    speed = np.array([100.0, 10.0, 50.0, 10.0, 1.0])
    acc = np.array([0.8, 0.9, 0.7, 0.85, 0.95])
    assert pareto_front(speed, acc).tolist() == [True, True, False, False, True]
    assert pareto_front(np.array([1.0, 1.0]), np.array([0.5, 0.5])).tolist() == [True, True]  # equal: both


def _acc(name, ap, status="real"):
    return Result(
        kind="accuracy",
        key={"detector": name, "dataset_fingerprint": "f" * 64},
        detector={"name": name, "weights": {"status": status}},
        dataset={"name": "d", "fingerprint": "f" * 64},
        metrics={"micro_ap": ap},
    )


def _thr(name, rates, device="cpu box", status="real"):
    return Result(
        kind="throughput",
        key={"detector": name, "device_name": device},
        detector={"name": name, "weights": {"status": status}},
        environment={"device_name": device},
        measurements=[{"e2e_ips": r} for r in rates],
    )


def test_points_join_best_speed_per_device_and_mark_the_front(tmp_path):
    acc = [_acc("a", 0.9), _acc("b", 0.6), _acc("c", 0.5), _acc("r", 0.95, "random"), _acc("lonely", 0.99)]
    thr = [_thr("a", [10.0, 40.0]), _thr("b", [100.0]), _thr("c", [50.0]), _thr("r", [5.0], status="random")]
    thr.append(_thr("a", [1000.0], device="gpu box"))
    points = accuracy_speed_points(acc, thr)
    cpu = points[points["device"] == "cpu box"].set_index("detector")
    assert cpu.loc["a", "e2e_ips"] == 40.0  # the best batch size measured there
    assert "lonely" not in cpu.index  # no speed measured: no point
    assert cpu["on_front"].to_dict() == {"a": True, "b": True, "c": False, "r": True}
    assert bool(cpu.loc["r", "random"]) and not bool(cpu.loc["a", "random"])
    assert points[points["device"] == "gpu box"]["on_front"].tolist() == [True]
    paths = plot_accuracy_speed(acc, thr, tmp_path)
    assert len(paths) == 2 and all(p.stat().st_size > 5000 for p in paths)


def test_torch_search_in_query_chunks_is_exact(monkeypatch):
    from copybench import retrieval
    from copybench.throughput import synthetic_references

    q, r = synthetic_references(200, 24, 1), synthetic_references(3000, 24, 2)
    want_s, want_i = retrieval.search(q, r, 7)
    monkeypatch.setattr(retrieval, "TORCH_SCORES_BYTES", 4 * 3000 * 9)  # 9 queries per chunk
    got_s, got_i = retrieval._search_block_torch(q, r, 7, "cpu")
    np.testing.assert_allclose(got_s, want_s, atol=1e-5)
    assert (got_i == want_i).mean() > 0.99


def test_scale_measurements_report_what_they_measured(monkeypatch, tmp_path):
    from copybench.results import read_result
    from copybench.throughput import scale

    monkeypatch.setattr(scale, "in_fresh_process", lambda fn, *a, **kw: fn(*a, **kw))  # in-process: fast
    m = scale.search_memory(3000, 200, dims=32, k=5)
    assert m["result_shape"] == [200, 5] and m["first_neighbour_valid"]
    assert m["full_matrix_mb"] == pytest.approx(3000 * 200 * 4 / 2**20)
    assert m["search_over_full_matrix"] == pytest.approx(m["search_mb"] / m["full_matrix_mb"])
    e = scale.extraction_memory(12, workers=0, batch_size=5)
    assert e["failed"] == 0 and e["n_images"] == 12 and e["above_model_mb"] >= 0
    assert e["descriptor_array_mb"] == pytest.approx(12 * 256 * 4 / 2**20)
    path = scale.write_scale_result(tmp_path, "exact_topk_cpu", [m])
    back = read_result(path)
    assert back.kind == "scale" and back.key["measurement"] == "exact_topk_cpu"
    assert back.measurements[0]["n_queries"] == 200
