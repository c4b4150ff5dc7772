"""Speed suite (pytest-benchmark): model-only, end-to-end (harness and reference pipeline) and retrieval.

Not part of the default run. Run it with:

    .venv/bin/pytest tests/benchmarks -m benchmark --benchmark-enable -p no:cacheprovider

Settings come from the environment: COPYBENCH_BENCH_DEVICE (cpu), COPYBENCH_BENCH_DETECTOR (efficientnet_lite0),
COPYBENCH_BENCH_DTYPE (fp32), COPYBENCH_BENCH_BATCH (32), COPYBENCH_BENCH_IMAGES (64 synthetic 512x384 JPEGs),
COPYBENCH_BENCH_REFS (100000 synthetic references). Each test stores ``items`` per call in extra_info, so
items/s = items / mean (or median) seconds. Compare numbers only from the same machine and device.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from copybench.throughput import ThroughputSettings, synthetic_references, write_synthetic_jpegs
from copybench.throughput.measure import model_input
from copybench.throughput.reference import reference_extract, reference_search

DEVICE = os.environ.get("COPYBENCH_BENCH_DEVICE", "cpu")
DETECTOR = os.environ.get("COPYBENCH_BENCH_DETECTOR", "efficientnet_lite0")
DTYPE = os.environ.get("COPYBENCH_BENCH_DTYPE", "fp32")
BATCH = int(os.environ.get("COPYBENCH_BENCH_BATCH", "32"))
N_IMAGES = int(os.environ.get("COPYBENCH_BENCH_IMAGES", "64"))
N_REFS = int(os.environ.get("COPYBENCH_BENCH_REFS", "100000"))
TOPK = 10

if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip("COPYBENCH_BENCH_DEVICE asks for CUDA, which is not available", allow_module_level=True)


def _synced(fn):
    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    return call


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    detector = create_detector(DETECTOR, allow_random=True, device=DEVICE)
    settings = ThroughputSettings(device=DEVICE, dtype=DTYPE, batch_sizes=(BATCH,), n_images=N_IMAGES)
    extractor = Extractor(
        detector, device=DEVICE, dtype=DTYPE, batch_size=BATCH, num_workers=settings.workers, progress=False
    )
    paths = write_synthetic_jpegs(tmp_path_factory.mktemp("images"), N_IMAGES)
    queries = extractor.run(paths).vectors
    return {
        "detector": detector,
        "extractor": extractor,
        "settings": settings,
        "paths": paths,
        "queries": queries,
        "references": synthetic_references(N_REFS, queries.shape[1]),
    }


def _info(benchmark, items: int) -> None:
    benchmark.extra_info.update(
        {"items": items, "device": DEVICE, "detector": DETECTOR, "dtype": DTYPE, "batch_size": BATCH}
    )


@pytest.mark.benchmark(group="model")
def test_model_only(benchmark, setup):
    x = model_input(setup["detector"], setup["settings"], BATCH)
    _info(benchmark, BATCH)
    benchmark.pedantic(_synced(_forward), args=(setup, x), rounds=5, warmup_rounds=2)


def _forward(setup, x):
    """Forward + L2 norm under autocast, as the harness runs the model."""
    from copybench.extract import DTYPES

    with (
        torch.inference_mode(),
        torch.autocast(torch.device(DEVICE).type, dtype=DTYPES[DTYPE], enabled=DTYPE != "fp32"),
    ):
        return torch.nn.functional.normalize(setup["detector"](x).float().flatten(1), dim=-1)


@pytest.mark.benchmark(group="e2e")
def test_e2e_harness(benchmark, setup):
    _info(benchmark, N_IMAGES)
    benchmark.pedantic(_synced(setup["extractor"].run), args=(setup["paths"],), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="e2e")
def test_e2e_reference(benchmark, setup):
    _info(benchmark, N_IMAGES)

    def run():
        return reference_extract(
            setup["detector"],
            setup["paths"],
            device=DEVICE,
            dtype=DTYPE,
            batch_size=BATCH,
            num_workers=setup["settings"].workers,
        )

    benchmark.pedantic(_synced(run), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="retrieval")
def test_retrieval_harness(benchmark, setup):
    from copybench.retrieval import search

    _info(benchmark, len(setup["queries"]))
    _, idx = benchmark.pedantic(
        _synced(search),
        args=(setup["queries"], setup["references"], TOPK),
        kwargs={"device": DEVICE},
        rounds=3,
        warmup_rounds=1,
    )
    # a fast wrong answer is no result: the same nearest neighbours as the reference's full sort
    np.testing.assert_array_equal(
        idx[:, 0], reference_search(setup["queries"], setup["references"], 1)[1][:, 0]
    )


@pytest.mark.benchmark(group="retrieval")
def test_retrieval_reference(benchmark, setup):
    _info(benchmark, len(setup["queries"]))
    _, idx = benchmark.pedantic(
        _synced(reference_search),
        args=(setup["queries"], setup["references"], TOPK),
        kwargs={"device": DEVICE},
        rounds=3,
        warmup_rounds=1,
    )
    assert (
        idx.shape == (len(setup["queries"]), TOPK) and len(set(idx[0])) == TOPK
    )  # a full ranking, no repeats
