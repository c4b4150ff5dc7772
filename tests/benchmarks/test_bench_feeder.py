"""The device decoders' feeder without a GPU: read + route + hand-off, the decode stage left out.

    COPYBENCH_BENCH_RESULTS=results/throughput nice -n -5 .venv/bin/pytest tests/benchmarks/test_bench_feeder.py \\
        -m benchmark --benchmark-enable -p no:cacheprovider

The pipeline ``--decode device`` runs (:meth:`copybench.decode.DeviceDecode.pipeline`: threads in this process
read the files and route each by its JPEG markers, batches handed to the decoding thread as tensor views), with a
hand-off that decodes nothing, over COPYBENCH_BENCH_IMAGES (default 2048) synthetic 512x384 JPEGs of about 93 KB
(``write_synthetic_jpegs``), batch 256, files in the page cache (one untimed pass first). Target: at least 10,000
images/s on the project's 2-core machine (a GPU that decodes 12,000-20,000 img/s must not wait on its feeder).
Rounds are timed one by one (pytest-benchmark); with COPYBENCH_BENCH_RESULTS set, the median and range and the
machine's load average while measuring go into ``results/<device name>/scale__feeder_cpu.json``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from copybench.decode import DeviceDecode, handoff
from copybench.throughput import write_synthetic_jpegs
from copybench.throughput.scale import write_scale_result

pytestmark = pytest.mark.benchmark(group="feeder")
N = int(os.environ.get("COPYBENCH_BENCH_IMAGES", "2048"))
BATCH = 256
TARGET = 10_000  # img/s on 2 cores


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_synthetic_jpegs(tmp_path_factory.mktemp("feeder"), N)


def _pass(feeder: DeviceDecode, paths: list[str]) -> int:
    """One pass: every file read, routed and handed over; returns the images routed to the device decoder."""
    return sum(len(views) for views in feeder.pipeline(paths, list(range(len(paths))), handoff))


def test_feeder_reads_routes_and_hands_off_10k_images_per_second_on_2_cores(benchmark, jpegs):
    from copybench.detectors import create_detector
    from copybench.extract import default_workers
    from copybench.preprocess import Preprocess

    pre = Preprocess(create_detector("pixel_gray_16").spec)
    # the Extractor's own setting: its default worker count is the feeder's thread count
    feeder = DeviceDecode(pre, batch_size=BATCH, num_workers=default_workers(), device="cpu")
    assert (
        _pass(feeder, jpegs) == N
    )  # every synthetic JPEG is baseline, upright: all go to the device decoder
    load_before = os.getloadavg()
    benchmark.pedantic(_pass, args=(feeder, jpegs), rounds=15, warmup_rounds=1)
    rates = sorted(N / s for s in benchmark.stats.stats.data)
    mean_kb = float(np.mean([os.path.getsize(p) for p in jpegs[:64]]) / 1000)
    m = {
        "what": "read + route + hand-off of --decode device, decode excluded, no GPU",
        "images": N,
        "mean_file_kb": round(mean_kb, 1),
        "batch_size": BATCH,
        "threads": max(2, default_workers()),
        "ips_median": float(np.median(rates)),
        "ips_range": [rates[0], rates[-1]],
        "ips_rounds": rates,
        "target_ips": TARGET,
        "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "nice": os.nice(0),
    }
    benchmark.extra_info.update(m)
    if os.environ.get("COPYBENCH_BENCH_RESULTS"):
        note = os.environ.get("COPYBENCH_BENCH_NOTE", "")
        write_scale_result(os.environ["COPYBENCH_BENCH_RESULTS"], "feeder_cpu", [m], device="cpu", note=note)
    assert m["ips_median"] >= TARGET, m
