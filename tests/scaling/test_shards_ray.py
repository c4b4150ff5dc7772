"""Shard inputs on a local Ray cluster (2 CPUs, loopback; one cluster for the module): detector actors write the
descriptor shards themselves, search tasks read them from the store, and the scan equals the local one."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from copybench.cli import main
from copybench.scaling.descstore import DescriptorStore
from copybench.scaling.engine import RayEngine
from copybench.scaling.records import LOCAL_NODE_IP
from copybench.scaling.shardextract import SyntheticRunner, extract_shards, synthetic_shards
from copybench.scaling.shardsearch import search_store

from .test_shards import _jpeg, _tar


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address=LOCAL_NODE_IP)
    try:
        yield
    finally:
        ray.shutdown()


def test_actors_write_the_store_and_search_tasks_read_it(cluster, tmp_path):
    store = DescriptorStore(tmp_path / "store", "syn")
    engine = RayEngine(workers=2)
    res = extract_shards(synthetic_shards(300, 40), store, SyntheticRunner(dims=8, seed=1), engine=engine)
    writers = {s["writer"] for s in res.shards}
    assert res.rows == 300 and str(os.getpid()) not in {w.rsplit(":", 1)[1] for w in writers}
    local = DescriptorStore(tmp_path / "local", "syn")
    extract_shards(synthetic_shards(300, 40), local, SyntheticRunner(dims=8, seed=1))
    assert [s["desc_sha256"] for s in res.shards] == [
        local.record(s["id"])["sha256"] for s in res.shards
    ]  # the same bytes, whoever wrote them
    q = np.random.default_rng(2).standard_normal((9, 8)).astype(np.float32)
    s_ray, g_ray, st = search_store(q, store, res.shards, 3, engine=engine)
    s_loc, g_loc, _ = search_store(q, local, res.shards, 3)
    assert st.computed == 8
    np.testing.assert_array_equal(g_ray, g_loc)
    np.testing.assert_array_equal(s_ray, s_loc)


def test_scan_on_shards_with_ray_equals_the_local_scan(cluster, tmp_path):
    root = tmp_path / "shards"
    root.mkdir()
    for s in range(2):
        _tar(root / f"{s}.tar", {f"k{s}{i}": {"jpg": _jpeg(7 * s + i)} for i in range(5)})
    gen = tmp_path / "gen"
    gen.mkdir()
    for i in range(3):
        (gen / f"{i}.jpg").write_bytes(_jpeg(7 + i))
    base = ["-q", "scan", "--generated", str(gen), "--train", str(root), "--detector", "pixel_gray_16"]
    base += ["--threshold", "0.95", "--top-k", "3"]
    runs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        argv = [*base, "--out", str(out), "--descriptor-dir", str(tmp_path / f"store-{engine}")]
        assert main([*argv, "--engine", engine]) == 0
        runs[engine] = json.loads((out / "summary.json").read_text())
    for key in ("replication_rate", "flagged", "similarity_stats", "counts"):
        assert runs["ray"][key] == runs["local"][key], key
    assert runs["ray"]["replication_rate"]["flagged"] == 3


def test_driver_memory_measurement_runs_the_real_path(cluster, tmp_path):
    from copybench.scaling.measure import measure_driver

    r = measure_driver(2000, str(tmp_path), rows_per_shard=500, dims=8, queries=5, workers=2, k=3)
    assert (r["rows"], r["shards"], r["extract"]["computed"], r["search"]["pairs"]) == (2000, 4, 4, 4)
    assert r["matches_found"] == 5 * 3
    assert r["descriptor_bytes"] == 4 * (128 + 500 * 8 * 2)  # .npy header + fp16 rows, per shard
    mem = r["driver_rss_mb"]
    assert 0 < mem["peak_before_ray"] <= mem["peak_after_extract"] <= mem["peak_after_search"]


def test_an_actor_killed_mid_extraction_costs_only_its_shard(cluster, tmp_path):
    """SIGKILL one shard actor as soon as it has written a shard: it is restarted, the shard it held is redone,
    and the store ends with every shard, byte for byte the ones this process computes."""
    import signal
    import threading
    import time

    store = DescriptorStore(tmp_path / "store", "syn")
    refs = synthetic_shards(60 * 20_000, 20_000)
    killed: list[int] = []

    def kill_first_writer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for rec in (tmp_path / "store" / "syn").glob("*.json"):
                pid = int(json.loads(rec.read_text())["writer"].rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_first_writer)
    killer.start()
    res = extract_shards(refs, store, SyntheticRunner(dims=64, seed=2), engine=RayEngine(workers=2))
    killer.join()
    assert killed and res.computed == 60 and res.rows == 60 * 20_000
    writers = {int(s["writer"].rsplit(":", 1)[1]) for s in res.shards}
    # the killed actor's shards were finished by the others (one it wrote may be rewritten by its retry)
    assert writers - {killed[0]}
    for s in res.shards:
        store.read(s["id"], s["desc_sha256"])  # every shard whole and matching its checksum
    local = DescriptorStore(tmp_path / "local", "syn")
    want = extract_shards(refs[:60:7], local, SyntheticRunner(dims=64, seed=2))
    assert [s["desc_sha256"] for s in want.shards] == [s["desc_sha256"] for s in res.shards[:60:7]]
