"""Speed: segmix_hard rendered as kornia batches vs a per-image torchvision loop doing the same transforms.

Run with ``pytest -m benchmark --benchmark-enable tests/benchmarks``; the ratio test prints and records the
speed-up and fails below its target, 3x on CPU (both sides run on the same machine in the same process, so the
ratio, unlike a time, carries over between machines).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.benchmark(group="segmix_hard")
N = 64
TARGET_SPEEDUP = 3.0  # kornia batched over the per-image torchvision loop, same transforms, CPU


@pytest.fixture(scope="module")
def work():
    from copybench.datasets.params import PoolView, sample_query
    from copybench.datasets.recipes import parse_recipe
    from copybench.datasets.sources import load_pool

    try:
        pool = load_pool(None, 50, need_masks=True)
    except ValueError as exc:
        pytest.skip(f"no masks: {exc}")
    view, rec = PoolView.of(pool), parse_recipe("segmix_hard-s", N)
    plist = [sample_query(rec, 0, i, view, True) for i in range(N)]
    return plist, pool.by_id()


def kornia_batched(plist, pool):
    from copybench.datasets.render import render_group

    return (
        render_group(plist, pool, "cpu")
        if len({tuple(p["out"]) for p in plist}) == 1
        else _grouped(plist, pool)
    )


def _grouped(plist, pool):
    from copybench.datasets.render import group_key, render_group

    groups: dict = {}
    for p in plist:
        groups.setdefault(group_key(p), []).append(p)
    return [img for g in groups.values() for img in render_group(g, pool, "cpu")]


def torchvision_loop(plist, pool):
    """The straightforward way: one image at a time through torchvision.transforms.v2.functional."""
    from torchvision.transforms.v2 import functional as TF

    out = []
    for p in plist:
        src, bg = pool[p["source"]], pool[p["bg"]]
        oh, ow = p["out"]
        x = torch.from_numpy(np.array(src.rgb)).permute(2, 0, 1).float() / 255
        a = torch.from_numpy((src.mask == p["label"]).astype(np.float32))[None]
        x, a = TF.resize(x, [oh, ow], antialias=False), TF.resize(a, [oh, ow], antialias=False)
        if p["jitter"]:
            b, c, s, h = p["jitter"]
            x = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x, b), c), s), h)
        if p["gray"]:
            x = TF.rgb_to_grayscale(x, 3)
        if p["solarize"] is not None:
            x = TF.solarize(x, p["solarize"])
        if p["autocontrast"]:
            x = TF.autocontrast(x)
        fx, fy = p["flips"]
        x, a = (TF.hflip(x), TF.hflip(a)) if fx else (x, a)
        x, a = (TF.vflip(x), TF.vflip(a)) if fy else (x, a)
        shift = [int(p["paste_at"][0] - ow / 2), int(p["paste_at"][1] - oh / 2)]
        x = TF.affine(x, angle=-p["angle"], translate=shift, scale=p["scale"], shear=[0.0])
        a = TF.affine(a, angle=-p["angle"], translate=shift, scale=p["scale"], shear=[0.0])
        g = torch.from_numpy(np.array(bg.rgb)).permute(2, 0, 1).float() / 255
        g = TF.resize(g, [oh, ow], antialias=False)
        comp = x * a + g * (1 - a)
        k, sigma = p["blur"]
        comp = TF.gaussian_blur(comp, [k, k], [sigma, sigma])
        out.append((comp.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    return out


def test_bench_kornia_batched(benchmark, work):
    plist, pool = work
    benchmark.pedantic(kornia_batched, args=(plist, pool), rounds=3, warmup_rounds=1)


def test_bench_torchvision_loop(benchmark, work):
    plist, pool = work
    benchmark.pedantic(torchvision_loop, args=(plist, pool), rounds=3, warmup_rounds=1)


def _median(fn, *args, rounds=3) -> float:
    fn(*args)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def test_speed_ratio(work, record_property):
    plist, pool = work
    fast, slow = _median(kornia_batched, plist, pool), _median(torchvision_loop, plist, pool)
    ratio = slow / fast
    record_property("segmix_hard_speedup", ratio)
    print(
        f"segmix_hard {N} queries: kornia batched {fast:.3f}s, torchvision loop {slow:.3f}s, ratio {ratio:.2f}x"
    )
    assert math.isfinite(ratio) and ratio >= TARGET_SPEEDUP, f"kornia batches only {ratio:.2f}x the loop"
