"""Fault injection: kill -9 at random points, a full disk, concurrent runs, damaged caches, edited manifests.

Every case asserts one of two outcomes: the numbers are identical to an undisturbed run, or the command refuses
with a clear message and a non-zero exit code. Never a silently different number. Processes are real
subprocesses (kill -9 skips every cleanup handler) with bounded run times; kill points are drawn from a seeded
generator so a failure replays. The default cases (kill -9 during run, concurrent runs, a full tmpfs) take
well under a minute on an idle 2-core machine; kill -9 during data build and scan, more kill points and the
subprocess twins of test_integrity.py's cases run under ``-m slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from copybench.datasets.dataset import load_dataset

TIMEOUT = 120  # seconds any one subprocess may take before the test fails instead of hanging

# A `copybench run` whose model is slowed down and whose descriptor shards are flushed after every batch, so a
# kill at a random time lands among shard writes, not only in the imports.
_SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    import copybench.cache
    import copybench.detectors
    copybench.cache.SHARD_SECONDS = 0.0
    real = copybench.detectors.create_detector
    def slow_create(*a, **k):
        det = real(*a, **k)
        forward = det.model.forward
        def slow(x):
            time.sleep(float(sys.argv[1]))
            return forward(x)
        det.model.forward = slow
        return det
    copybench.detectors.create_detector = slow_create
    from copybench.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _env(cache_root: Path) -> dict:
    return {**os.environ, "COPYBENCH_CACHE": str(cache_root), "PYTHONUNBUFFERED": "1"}


def _copybench(*args, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "copybench.cli", "-q", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"copybench {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}")
    return proc


def _killed_after(argv: list[str], delay: float, env: dict) -> int:
    """Start ``argv``, SIGKILL it after ``delay`` seconds (if still running); its return code."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=TIMEOUT)


def _metrics(results: Path) -> dict:
    """Every result's metrics and groups by file name (timings and environment differ between runs)."""
    out = {}
    for f in sorted(results.rglob("*.json")):
        data = json.loads(f.read_text())
        out[f.name] = {"metrics": data["metrics"], "groups": data["groups"], "skipped": data.get("skipped")}
    return out


RUN_ARGS = ["--detectors", "pixel_gray_16,pixel_rgb_8", "--n-boot", "20", "--batch-size", "2"]


@pytest.fixture
def clean_run(tiny_dataset, tmp_path) -> dict:
    from copybench.cli import main

    res = tmp_path / "clean"  # in this process: the undisturbed reference, no subprocess start-up to pay
    assert (
        main(["-q", "run", "--dataset", str(tiny_dataset), "--results", str(res), "--no-cache", *RUN_ARGS])
        == 0
    )
    return _metrics(res)


def _kill_run_then_rerun(tiny_dataset, tmp_path, delays) -> list[dict]:
    cache, res = tmp_path / "cache", tmp_path / "res"
    env = _env(tmp_path / "root")
    slow = [sys.executable, "-c", _SLOW_RUN, "0.15", "-q", "run", "--dataset", str(tiny_dataset)]
    slow += ["--results", str(res), "--descriptor-dir", str(cache), *RUN_ARGS]
    after = []
    for delay in delays:
        _killed_after(slow, delay, env)
        _copybench(
            "run", "--dataset", tiny_dataset, "--results", res, "--descriptor-dir", cache, *RUN_ARGS, env=env
        )
        after.append(_metrics(res))
        shutil.rmtree(res)  # the next kill starts from the cache alone
    assert not [p for p in cache.rglob("*.tmp")]  # no temp file survives a resumed run
    return after


def test_kill9_during_run_then_rerun_gives_identical_results(tiny_dataset, tmp_path, clean_run):
    rng = np.random.default_rng(13)
    for got in _kill_run_then_rerun(tiny_dataset, tmp_path, rng.uniform(2.0, 5.0, size=1)):
        assert got == clean_run


@pytest.mark.slow
def test_kill9_during_run_at_many_points(tiny_dataset, tmp_path, clean_run):
    rng = np.random.default_rng(14)
    for got in _kill_run_then_rerun(tiny_dataset, tmp_path, rng.uniform(0.5, 7.0, size=8)):
        assert got == clean_run


@pytest.mark.slow
def test_kill9_during_data_build_leaves_nothing_and_rebuilds_identically(tmp_path):
    from copybench.datasets import build_dataset

    env = _env(tmp_path / "root")
    out = tmp_path / "data" / "ds"
    out.parent.mkdir()
    argv = [sys.executable, "-m", "copybench.cli", "-q", "data", "build", "crop-xs", "--out", str(out)]
    _killed_after([*argv, "--n-queries", "12"], float(np.random.default_rng(15).uniform(2.5, 5.0)), env)
    _copybench("data", "build", "crop-xs", "--out", out, "--n-queries", "12", env=env)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ds"]  # no .ds.building-* left behind
    assert _copybench("data", "verify", out, env=env).returncode == 0
    clean = build_dataset("crop-xs", tmp_path / "clean", n_queries=12, progress=False)
    assert load_dataset(out).fingerprint == clean.fingerprint


def _scan_folders(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import Image

    rng = np.random.default_rng(16)
    gen, train = tmp_path / "gen", tmp_path / "train"
    gen.mkdir(), train.mkdir()
    for i in range(12):
        img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((64, 64))
        img.save(train / f"t{i:02d}.png")
        if i % 3 == 0:
            img.rotate(5).save(gen / f"g{i:02d}.png")
    return gen, train


def _scan_summary(out: Path) -> dict:
    data = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in ("environment", "timings", "out", "created")}


@pytest.mark.slow
def test_kill9_during_scan_then_rerun_gives_identical_summary(tmp_path):
    gen, train = _scan_folders(tmp_path)
    env = _env(tmp_path / "root")
    args = ["--generated", gen, "--train", train, "--detector", "pixel_gray_16", "--batch-size", "2"]
    _copybench("scan", *args, "--out", tmp_path / "clean", "--no-cache", env=env)
    argv = [
        sys.executable,
        "-c",
        _SLOW_RUN,
        "0.1",
        "-q",
        "scan",
        *map(str, args),
        "--out",
        str(tmp_path / "s"),
    ]
    _killed_after(argv, float(np.random.default_rng(17).uniform(2.0, 4.0)), env)
    _copybench("scan", *args, "--out", tmp_path / "s", env=env)
    assert _scan_summary(tmp_path / "s") == _scan_summary(tmp_path / "clean")


def test_two_concurrent_runs_on_the_same_folders_both_succeed_identically(tiny_dataset, tmp_path, clean_run):
    env = _env(tmp_path / "root")
    res, cache = tmp_path / "res", tmp_path / "cache"
    argv = [sys.executable, "-c", _SLOW_RUN, "0.05", "-q", "run", "--dataset", str(tiny_dataset)]
    argv += ["--results", str(res), "--descriptor-dir", str(cache), *RUN_ARGS]
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:  # was: in 5 of 10 pairs one died on the other's temp file and lost its other detectors
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err
    assert _metrics(res) == clean_run
    leftovers = [p for p in res.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert not leftovers


@pytest.mark.slow
def test_zeroed_cached_vectors_are_recomputed_not_scored(tiny_dataset, tmp_path, clean_run):
    env = _env(tmp_path / "root")
    res, cache = tmp_path / "res", tmp_path / "cache"
    args = ["run", "--dataset", tiny_dataset, "--results", res, "--descriptor-dir", cache, *RUN_ARGS]
    _copybench(*args, env=env)
    for vec in cache.rglob("vectors.npy"):
        data = vec.read_bytes()
        vec.write_bytes(data[:128] + b"\0" * (len(data) - 128))  # was micro-AP 0.117 instead of 0.916, exit 0
    proc = _copybench(*args, "--force", env=env)
    assert _metrics(res) == clean_run
    assert "discarding" in proc.stderr and "vectors.npy" in proc.stderr


@pytest.mark.slow  # the in-process twins (same refusals, no subprocesses) are in test_integrity.py
@pytest.mark.parametrize("edit", ["reference id", "path", "replaced image"])
def test_edited_dataset_is_refused_never_rescored(edit, tiny_dataset, tmp_path):
    env = _env(tmp_path / "root")
    res = tmp_path / "res"
    args = ["run", "--dataset", tiny_dataset, "--results", res, "--no-cache", *RUN_ARGS]
    _copybench(*args, env=env)
    before = _metrics(res)
    queries = tiny_dataset / "queries.csv"
    if edit == "reference id":
        queries.write_text(queries.read_text().replace("queries/Q003.png,R003", "queries/Q003.png,R004"))
    elif edit == "path":
        queries.write_text(queries.read_text().replace("queries/Q003.png", "queries/Q004.png", 1))
    else:
        time.sleep(0.01)
        shutil.copy(tiny_dataset / "queries" / "D000.png", tiny_dataset / "queries" / "Q003.png")
    for extra in ([], ["--force"]):
        proc = _copybench(*args, *extra, env=env, check=False)
        assert proc.returncode == 2, proc.stderr
        said = proc.stderr.replace("\n", "")
        assert (
            ("queries.csv: changed" in said)
            if edit != "replaced image"
            else ("Q003.png: content changed" in said)
        )
    assert _metrics(res) == before  # nothing was rewritten under the old key


def _tmpfs(path: Path, size: str) -> bool:
    """Mount a small tmpfs at ``path`` when this process may (root in a namespace that allows it)."""
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    return proc.returncode == 0


def test_full_disk_is_a_clear_failure_never_a_different_number(tiny_dataset, tmp_path, clean_run):
    small = tmp_path / "small"
    if not _tmpfs(small, "24k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    try:
        env = _env(tmp_path / "root")
        res = tmp_path / "res"
        args = ["run", "--dataset", tiny_dataset, "--results", res, *RUN_ARGS]
        full = _copybench(*args, "--descriptor-dir", small / "cache", env=env, check=False)
        if full.returncode != 0:  # the cache did not fit: named, exit 3, no traceback, nothing scored
            said = full.stderr.replace("\n", "")
            assert full.returncode == 3 and "disk full" in said and "Traceback" not in said, full.stderr
        for got in _metrics(res).values():  # whatever was written is the true number
            assert got in clean_run.values()
        results_full = _copybench("run", "--dataset", tiny_dataset, "--results", small / "res", "--no-cache",
                                  *RUN_ARGS, env=env, check=False)  # fmt: skip
        assert results_full.returncode in (0, 3), results_full.stderr
        if results_full.returncode == 3:
            assert "No space left on device" in results_full.stderr.replace("\n", "")
        for name, got in _metrics(small / "res").items():
            assert got == clean_run[name]
        orphans = [p.name for p in (small / "res").rglob("*.csv.gz") if not p.with_name(
            p.name.replace(".predictions.csv.gz", ".json")).is_file()]  # fmt: skip
        assert not orphans
    finally:
        subprocess.run(["umount", str(small)], capture_output=True, check=False)
