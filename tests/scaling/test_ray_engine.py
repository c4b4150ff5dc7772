"""``--engine ray`` on a local Ray cluster (2 CPUs, loopback): results equal the single-process ones.

One cluster serves the module (started with ``ray.init`` and shut down at the end). Checked: a run on a
recipe-built dataset with a real detector, with one detector actor killed (SIGKILL) mid-run; a replication scan,
its cache written through a ``file://`` URI and then read by the local engine; sharded search against the
single-process search; a driver killed mid-run resuming from its finished shards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from copybench.cli import main as cli_main
from copybench.datasets.dataset import load_dataset
from copybench.run import RunSettings, predictions_path, run_benchmark
from copybench.scaling.engine import RayEngine
from copybench.scaling.records import LOCAL_NODE_IP
from copybench.scan.pipeline import scan

DETECTOR = "efficientnet_lite0"  # real weights from a pip package: a learned descriptor, on any machine
SETTINGS = RunSettings(n_boot=50, batch_size=2)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module: 2 CPUs, no dashboard; its GCS address for other drivers."""
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address=LOCAL_NODE_IP)
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray") / "mixed-xs"
    assert (
        cli_main(["-q", "data", "build", "mixed-xs", "--out", str(out), "--n-queries", "16", "--seed", "1"])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def local_result(built, tmp_path_factory):
    """The single-process result (no cache) that every distributed run must reproduce."""
    res = tmp_path_factory.mktemp("local")
    [outcome] = run_benchmark(
        load_dataset(built), [DETECTOR], SETTINGS, results=res, descriptor_dir=None, progress=False
    )
    assert outcome.status == "done", outcome.message
    return outcome.result


def _assert_close(a, b, path: str = "") -> None:
    """Equal structure; numbers within 1e-6 plus the result file's 6-digit rounding (thresholds are scores)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}/{i}")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-6 + 5e-7 + 1e-12, (path, a, b)
    else:
        assert a == b, (path, a, b)


def _assert_same_result(a, b) -> None:
    """Same key and file name, same metrics, same ranked ids per query; scores within 1e-6."""
    assert a.key == b.key and a.source.name == b.source.name and a.source.parent.name == b.source.parent.name
    _assert_close(a.metrics, b.metrics)
    _assert_close(a.groups, b.groups)
    pa, pb = (pd.read_csv(predictions_path(r.source), keep_default_na=False) for r in (a, b))
    assert pa[["query_id", "rank", "reference_id"]].equals(pb[["query_id", "rank", "reference_id"]])
    np.testing.assert_allclose(pa["score"], pb["score"], atol=1e-6)


def test_run_on_ray_equals_local_with_a_worker_killed(cluster, built, local_result, tmp_path):
    killed: list[int] = []

    def kill_first_worker(event) -> None:
        if not killed:  # SIGKILL the actor that produced the first batch: it holds queued batches
            killed.append(event.pid)
            os.kill(event.pid, signal.SIGKILL)

    engine = RayEngine(
        workers=2, cpus_per_worker=0.5, shard_rows=4, progress=False, on_batch=kill_first_worker
    )
    with engine:
        [outcome] = run_benchmark(
            load_dataset(built),
            [DETECTOR],
            SETTINGS,
            results=tmp_path,
            descriptor_dir=tmp_path / "c",
            engine=engine,
        )
    assert outcome.status == "done", outcome.message
    _assert_same_result(local_result, outcome.result)
    [report] = engine.reports
    pids = {int(w.worker.rsplit(":", 1)[1]) for w in report.workers}
    assert killed and killed[0] in pids and len(pids) == 3  # two actors, then the killed one's replacement
    assert report.images == sum(w.images for w in report.workers) == report.images + report.cached


def test_sharded_search_equals_single_process(cluster):
    from copybench.cache import Descriptors
    from copybench.retrieval import search, search_split

    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(30, 16)).astype(np.float32), rng.normal(size=(101, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    engine = RayEngine(search_shard_rows=17, progress=False)
    for settings, expect in (
        (RunSettings(), search(q, r, 7)),
        (RunSettings(similarity="split", chunks=4), search_split(q, r, 7, chunks=4)),
    ):
        s, i = engine.search_descriptors(settings, Descriptors([""] * 30, q), Descriptors([""] * 101, r), 7)
        np.testing.assert_array_equal(i, expect[1])
        np.testing.assert_allclose(s, expect[0], atol=1e-6)


def test_scan_on_ray_equals_local_and_its_uri_cache_serves_the_local_engine(cluster, built, tmp_path):
    # the device decode strategy (torchvision's decoder; nvjpeg on CUDA) on both sides: its byte path in the actors
    args = {
        "top_k": 3,
        "batch_size": 4,
        "progress": False,
        "baseline_sample": None,
        "decode": "device",
        "threshold": 0.5,
    }
    local = scan(
        built / "queries", built / "references", DETECTOR, out=tmp_path / "local", descriptor_dir=None, **args
    )
    cache = tmp_path / "bucket"
    with RayEngine(workers=2, cpus_per_worker=0.5, search_shard_rows=7, progress=False) as engine:
        dist = scan(
            built / "queries", built / "references", DETECTOR, out=tmp_path / "ray", descriptor_dir=f"file://{cache}",
            engine=engine, **args,
        )  # fmt: skip
    again = scan(
        built / "queries",
        built / "references",
        DETECTOR,
        out=tmp_path / "again",
        descriptor_dir=cache,
        **args,
    )
    assert again["timings"]["extract_s"] < dist["timings"]["extract_s"]  # read from the mirrored cache
    for summary in (dist, again):
        for part in ("replication_rate", "similarity_stats", "counts", "threshold"):
            _assert_close(summary[part], local[part], part)
    ref = pd.read_csv(tmp_path / "local" / "matches.csv")
    for name in ("ray", "again"):
        got = pd.read_csv(tmp_path / name / "matches.csv")
        assert got[["generated", "rank", "train"]].equals(ref[["generated", "rank", "train"]])
        np.testing.assert_allclose(got["similarity"], ref["similarity"], atol=1e-6)
    for entry in cache.iterdir():  # one per image list, as the local cache lays it out; shards gone when done
        assert sorted(p.name for p in entry.iterdir() if not p.name.startswith(".")) == [
            "done.json",
            "vectors.npy",
        ]
    assert len(list(cache.iterdir())) == 2


@pytest.mark.slow  # a second driver process (imports torch and Ray) and two actor pools: about a minute
def test_a_driver_killed_mid_run_resumes_from_finished_shards(cluster, built, local_result, tmp_path):
    cache, res = tmp_path / "cache", tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "copybench.cli",
        "-q",
        "run",
        "--dataset",
        str(built),
        "--detectors",
        DETECTOR,
    ]
    cmd += ["--results", str(res), "--descriptor-dir", str(cache), "--n-boot", "50", "--batch-size", "2"]
    cmd += ["--engine", "ray", "--address", cluster, "--workers", "1", "--shard-rows", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while (
            len(list(cache.glob("*/shard-*.npz"))) < 2 and proc.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-extraction, with no chance to clean up
    finally:
        proc.kill()
        proc.wait()
    assert not list(res.rglob("*.json"))  # it really died before finishing
    dataset = load_dataset(built)
    n_images = len(dataset.reference_ids) + len(dataset.query_ids)
    with RayEngine(workers=2, cpus_per_worker=0.5, progress=False) as engine:
        [outcome] = run_benchmark(
            dataset, [DETECTOR], SETTINGS, results=res, descriptor_dir=cache, engine=engine
        )
    assert outcome.status == "done", outcome.message
    [report] = engine.reports
    assert report.cached >= 2 and report.images + report.cached == n_images
    _assert_same_result(local_result, outcome.result)


def test_decoding_read_bytes_equals_decoding_the_file(tmp_path):
    """The actors decode bytes read by the read tasks: same pixels (draft JPEG decoding included), same errors."""
    import torch
    from PIL import Image

    from copybench.decode import decode_on_cpu
    from copybench.detectors import get_spec
    from copybench.preprocess import Preprocess

    pre = Preprocess(get_spec(DETECTOR))
    rng = np.random.default_rng(0)
    big = tmp_path / "big.jpg"  # large enough for a reduced-size (draft) decode
    Image.fromarray(rng.integers(0, 256, (2200, 2100, 3), dtype=np.uint8)).save(big, quality=90)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path in (big, bad, empty):
        want = decode_on_cpu(str(path), pre, pre.min_decode_side)
        got = decode_on_cpu(str(path), pre, pre.min_decode_side, path.read_bytes())
        assert got[1] == want[1]
        assert (got[0] is None) == (want[0] is None) and (want[0] is None or torch.equal(got[0], want[0]))
    assert "bad.png" in decode_on_cpu(str(bad), pre, None, bad.read_bytes())[1]


def test_a_worker_with_another_hub_library_version_is_refused():
    """A hub model's library builds its model (and on the library route its pixels): a worker with another
    version would write other descriptors under the driver's cache key, so it stops instead."""
    import dataclasses

    from copybench.detectors import get_spec
    from copybench.scaling.actor import _build_detector

    spec = get_spec("pixel_gray_8")
    load = {
        "name": "pixel_gray_8",
        "weights_file": None,
        "allow_random": False,
        "state": None,
        "sha256": None,
    }
    assert _build_detector({**load, "spec": spec}, "cpu").spec == spec
    driver = dataclasses.replace(spec, library="timm 9.9.9")
    with pytest.raises(RuntimeError, match="timm 9.9.9"):
        _build_detector({**load, "spec": driver}, "cpu")
