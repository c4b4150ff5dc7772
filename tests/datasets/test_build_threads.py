"""Copy generation spreads overlays, JPEG and PNG writing over CPU threads: the dataset is the same bytes with
one thread or several, and the per-stage profile accounts every query."""

from __future__ import annotations

import json

import pytest

from copybench.datasets import build_dataset
from copybench.datasets.render import build_threads, stage_profile


def _build(tmp_path, monkeypatch, threads: int):
    monkeypatch.setenv("COPYBENCH_BUILD_THREADS", str(threads))
    stage_profile(reset=True)
    out = tmp_path / f"threads{threads}"
    build_dataset("mixed-xs", out, n_queries=24, seed=3, progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    pngs = {p.name: p.read_bytes() for p in sorted((out / "queries").glob("*.png"))}
    return meta, pngs, stage_profile(reset=True)


def test_one_thread_or_three_give_the_same_dataset_byte_for_byte(tmp_path, monkeypatch):
    one, one_png, profile = _build(tmp_path, monkeypatch, 1)
    three, three_png, _ = _build(tmp_path, monkeypatch, 3)
    assert one["fingerprint"] == three["fingerprint"] and one["pixels_sha256"] == three["pixels_sha256"]
    assert one_png == three_png and len(one_png) == 24
    assert profile["kornia"]["images"] == profile["write"]["images"] == 24
    assert {"overlay", "jpeg"} <= set(profile)  # mixed recipes hold overlay and JPEG copies


def test_build_threads_are_checked(monkeypatch):
    monkeypatch.setenv("COPYBENCH_BUILD_THREADS", "4")
    assert build_threads() == 4 and build_threads(2) == 2
    with pytest.raises(ValueError, match="at least 1"):
        build_threads(-1)
