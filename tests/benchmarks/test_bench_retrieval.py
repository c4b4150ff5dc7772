"""Retrieval overhead: the harness's blockwise search against bare faiss on the same descriptors.

Run with: .venv/bin/pytest tests/benchmarks -m benchmark --benchmark-enable -p no:cacheprovider
Target: harness time at most 1.2x bare faiss (the merge of per-block top-k lists is the only extra work).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from copybench.retrieval import search

pytestmark = pytest.mark.benchmark

N_REF, N_Q, DIM, K = 100_000, 2_000, 512, 100
TARGET_RATIO = 1.2


@pytest.fixture(scope="module")
def descriptors():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((N_REF, DIM), dtype=np.float32)
    q = rng.standard_normal((N_Q, DIM), dtype=np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, r


def _bare_faiss(q, r):
    import faiss

    index = faiss.IndexFlatIP(r.shape[1])
    index.add(r)
    return index.search(q, K)


def test_bench_bare_faiss(benchmark, descriptors):
    benchmark.pedantic(_bare_faiss, args=descriptors, rounds=3, iterations=1)


def test_bench_harness_search(benchmark, descriptors):
    benchmark.pedantic(search, args=(*descriptors, K), rounds=3, iterations=1)


def test_harness_overhead_ratio(descriptors):
    """Prints the measured ratio (median of 3) and fails above the target (harness <= 1.2x bare faiss)."""
    times = {}
    for name, fn in (
        ("faiss", lambda: _bare_faiss(*descriptors)),
        ("harness", lambda: search(*descriptors, K)),
    ):
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t)
        times[name] = float(np.median(runs))
    ratio = times["harness"] / times["faiss"]
    print(
        f"\nretrieval {N_Q}x{N_REF} d={DIM} k={K}: faiss {times['faiss']:.3f}s, harness {times['harness']:.3f}s, "
        f"ratio {ratio:.2f} (target <= {TARGET_RATIO})"
    )
    np.testing.assert_array_equal(search(*descriptors, K)[1][:50], _bare_faiss(*descriptors)[1][:50])
    assert ratio <= TARGET_RATIO, f"harness search took {ratio:.2f}x bare faiss (target {TARGET_RATIO})"
