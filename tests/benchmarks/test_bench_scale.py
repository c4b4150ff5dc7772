"""Scale: memory of exact top-k search and of embedding many images (pytest-benchmark suite).

Each measurement runs in a fresh process (peak memory only grows) and, when COPYBENCH_BENCH_RESULTS names a
folder, is written there as a ``scale`` result file (``results/throughput/<device>/scale__*.json``):

    COPYBENCH_BENCH_RESULTS=results/throughput .venv/bin/pytest tests/benchmarks/test_bench_scale.py \
        -m benchmark --benchmark-enable -p no:cacheprovider

Sizes come from the environment: COPYBENCH_SCALE_SEARCH (CPU search, "100000x10000": references x queries),
COPYBENCH_SCALE_GPU_SEARCH ("1000000x50000", CUDA only), COPYBENCH_SCALE_IMAGES ("10000,100000": dataset sizes
compared for flat memory). Targets, asserted: search memory at most 5 % of the full similarity matrix (memory
O(queries x k), not O(queries x references)); GPU search of 1M x 50k within 10 s with device memory at most 8 GB;
embedding at most 2 GB above the model, and from the smallest to the largest dataset memory grows by no more
than the descriptor arrays themselves (twice their size: the cache's shards and the memory-mapped result) plus
64 MB: nothing grows with the number of images decoded.
"""

from __future__ import annotations

import os

import pytest
import torch

from copybench.throughput.scale import extraction_memory, search_memory, write_scale_result

pytestmark = pytest.mark.benchmark(group="scale")
RESULTS = os.environ.get("COPYBENCH_BENCH_RESULTS")
MACHINE_NOTE = os.environ.get("COPYBENCH_BENCH_NOTE", "")
SEARCH_TARGET = 0.05  # search memory / full similarity matrix
GPU_SEARCH_SECONDS, GPU_SEARCH_DEVICE_MB = 10.0, 8192.0
EXTRACT_ABOVE_MODEL_MB = 2048.0


def _sizes(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).replace("x", ",").split(",")]


def _record(name: str, measurements: list[dict], device: str = "cpu") -> None:
    if RESULTS:
        write_scale_result(RESULTS, name, measurements, device=device, note=MACHINE_NOTE)


def test_exact_topk_memory_is_queries_times_k(benchmark):
    n_refs, n_queries = _sizes("COPYBENCH_SCALE_SEARCH", "100000x10000")
    m = benchmark.pedantic(search_memory, args=(n_refs, n_queries), rounds=1, iterations=1)
    benchmark.extra_info.update(m)
    _record("exact_topk_cpu", [m])
    assert m["first_neighbour_valid"] and m["result_shape"] == [n_queries, m["k"]]
    assert m["search_over_full_matrix"] <= SEARCH_TARGET, m


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_topk_on_gpu_at_disc21_scale(benchmark):
    n_refs, n_queries = _sizes("COPYBENCH_SCALE_GPU_SEARCH", "1000000x50000")
    m = benchmark.pedantic(search_memory, args=(n_refs, n_queries), kwargs={"device": "cuda"}, rounds=1)
    benchmark.extra_info.update(m)
    _record("exact_topk_cuda", [m], device="cuda")
    assert m["first_neighbour_valid"]
    assert m["seconds"] <= GPU_SEARCH_SECONDS, m
    assert m["device_peak_mb"] is None or m["device_peak_mb"] <= GPU_SEARCH_DEVICE_MB, m


def test_embedding_memory_is_flat_in_dataset_size(benchmark):
    sizes = sorted(_sizes("COPYBENCH_SCALE_IMAGES", "10000,100000"))

    def run():
        return [extraction_memory(n, workers=1) for n in sizes]

    ms = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"measurements": ms})
    _record("extraction_memory", ms)
    small, large = ms[0], ms[-1]
    assert all(m["failed"] == 0 for m in ms)
    assert large["above_model_mb"] <= EXTRACT_ABOVE_MODEL_MB, large
    growth = large["above_model_mb"] - small["above_model_mb"]
    allowed = 2 * (large["descriptor_array_mb"] - small["descriptor_array_mb"]) + 64
    assert growth <= allowed, (growth, allowed, ms)
