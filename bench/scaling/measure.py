"""Measured, not modelled: the driver's peak memory as the training set grows (``python -m copybench.scaling
measure-driver``).

Each size runs in a fresh driver process (so its peak RSS is its own) on a local Ray cluster: synthetic shards of
seeded random unit descriptors (:class:`.shardextract.SyntheticRunner`; no image is read or decoded, which the
result file says) are written to the store by actors, then a fixed query set is searched over the store by
tasks; the driver's peak RSS (``ru_maxrss``) is read before the cluster starts, after extraction and after the
search. The claim checked: the driver's peak does not grow with the number of descriptors.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _rss_mb() -> float:
    """Current resident memory (Linux /proc; NaN elsewhere)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return float("nan")
    line = next((ln for ln in status.splitlines() if ln.startswith("VmRSS:")), "VmRSS: nan kB")
    return float(line.split()[1]) / 1024


def measure_driver(
    rows: int,
    store_root: str,
    *,
    rows_per_shard: int = 50_000,
    dims: int = 512,
    queries: int = 256,
    workers: int = 3,
    k: int = 10,
    dtype: str = "float16",
) -> dict:
    """One size, in this process: extraction by actors into the store, then search by tasks; driver memory."""
    import numpy as np

    from copybench.scaling.descstore import DescriptorStore
    from copybench.scaling.engine import RayEngine
    from copybench.scaling.shardextract import SyntheticRunner, extract_shards, synthetic_shards
    from copybench.scaling.shardsearch import search_store

    start_peak = _peak_mb()
    store = DescriptorStore(store_root, f"synthetic-{rows}-{dims}-{dtype}")
    refs = synthetic_shards(rows, rows_per_shard)
    with RayEngine(workers=workers, num_cpus=workers + 1, progress=False) as engine:
        connected = _rss_mb()
        t0 = time.perf_counter()
        x = extract_shards(refs, store, SyntheticRunner(dims, seed=0), engine=engine, dtype=dtype)
        t1 = time.perf_counter()
        after_extract = _peak_mb()
        q = np.random.default_rng(1).standard_normal((queries, dims)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        _, ids, stats = search_store(q, store, x.shards, k, engine=engine)
        t2 = time.perf_counter()
    return {
        "rows": rows,
        "shards": len(refs),
        "rows_per_shard": rows_per_shard,
        "dims": dims,
        "dtype": dtype,
        "queries": queries,
        "k": k,
        "workers": workers,
        "descriptor_bytes": sum(s["bytes"] for s in x.shards),
        "extract": {"computed": x.computed, "reused": x.reused, "wall_s": t1 - t0},
        "search": {"pairs": stats.pairs, "computed": stats.computed, "wall_s": t2 - t1},
        "matches_found": int((ids >= 0).sum()),
        "driver_rss_mb": {
            "peak_before_ray": start_peak,
            "after_connect": connected,
            "peak_after_extract": after_extract,
            "peak_after_search": _peak_mb(),
        },
    }


def measure_sizes(sizes: list[int], store_root: str, out: str | Path, **options) -> dict:
    """Each size in a fresh driver process; the figures and the peak spread written to ``out``."""
    from copybench.env import environment
    from copybench.io import atomic_write_text

    runs = []
    for rows in sizes:
        cmd = [sys.executable, "-m", "copybench.scaling", "measure-driver-one", str(rows), store_root]
        cmd += ["--options", json.dumps(options)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"measure-driver {rows}: {done.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        log.info("%d rows: driver peak %.0f MB", rows, runs[-1]["driver_rss_mb"]["peak_after_search"])
    peaks = [r["driver_rss_mb"]["peak_after_search"] for r in runs]
    summary = {
        "kind": "driver_memory",
        "what": "driver peak RSS of sharded extraction + search over synthetic descriptors (seeded random "
        "unit vectors written by Ray actors; no image read or decoded)",
        "runs": runs,
        "peak_spread_mb": max(peaks) - min(peaks),
        "target_mb": 100,
        "environment": environment("cpu", "fp32"),
    }
    atomic_write_text(Path(out), json.dumps(summary, indent=1, sort_keys=True))
    return summary
