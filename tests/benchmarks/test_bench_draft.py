"""Reduced-size (draft) JPEG decoding on real large photos: descriptor gap to the full decode, and decode speed.

Runs over every real JPEG of 1500+ px found offline (:func:`copybench.throughput.draft.large_jpegs`: Debian's
wallpaper packages under /usr/share/wallpapers and /usr/share/backgrounds, or COPYBENCH_LARGE_JPEGS=DIR) and
writes ``results/<device>/scale__draft_accuracy.json`` when COPYBENCH_BENCH_RESULTS names a folder:

    COPYBENCH_BENCH_RESULTS=results/throughput .venv/bin/pytest tests/benchmarks/test_bench_draft.py \\
        -m benchmark --benchmark-enable -p no:cacheprovider

Target, asserted: the worst image within 1e-3 cosine of the full decode for every detector with weights installed.
Decode speed is reported at the current draft margin and at the previous one (4), which missed the target.
"""

from __future__ import annotations

import os

import pytest

from copybench.detectors import WeightsMissingError, create_detector
from copybench.preprocess import Preprocess
from copybench.throughput.draft import decode_speedup, draft_gaps, drafted_paths, large_jpegs
from copybench.throughput.scale import write_scale_result

pytestmark = pytest.mark.benchmark(group="draft")
RESULTS = os.environ.get("COPYBENCH_BENCH_RESULTS")
MACHINE_NOTE = os.environ.get("COPYBENCH_BENCH_NOTE", "")
DETECTORS = ("sscd_disc_mixup.onnx_int8", "efficientnet_lite0", "pixel_gray_16")
TARGET = 1e-3
PREVIOUS_MARGIN = 4


def _speed(paths: list[str], min_side: int | None) -> dict | None:
    reduced = drafted_paths(paths, min_side) if min_side else []
    return decode_speedup(reduced, min_side) if reduced else None


def _measure(paths: list[str]) -> list[dict]:
    out = []
    for name in DETECTORS:
        try:
            det = create_detector(name)
        except WeightsMissingError:
            continue
        m = draft_gaps(det, paths)
        side = Preprocess(det.spec).min_decode_side
        previous = side // Preprocess.DRAFT_MARGIN * PREVIOUS_MARGIN if side else None
        m["decode"] = _speed(paths, m["min_decode_side"])
        m["decode_at_margin_4"] = _speed(paths, previous)
        m["draft_margin"] = Preprocess.DRAFT_MARGIN
        out.append(m)
    return out


def test_draft_decoding_on_real_large_jpegs(benchmark):
    paths = large_jpegs()
    if not paths:
        pytest.skip(
            "no real JPEG of 1500+ px installed (Debian wallpaper packages or COPYBENCH_LARGE_JPEGS=DIR)"
        )
    ms = benchmark.pedantic(_measure, args=(paths,), rounds=1, iterations=1)
    benchmark.extra_info.update({"measurements": ms})
    if RESULTS:
        note = (
            f"{len(paths)} real JPEGs of 1500+ px (Debian wallpaper packages, not committed). {MACHINE_NOTE}"
        )
        write_scale_result(RESULTS, "draft_accuracy", ms, note=note.strip(), detector="several")
    assert ms and all(m["worst_gap"] < TARGET for m in ms), ms
