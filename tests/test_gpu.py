"""GPU paths against their CPU counterparts (run on a CUDA machine with `pytest -m gpu`; skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from copybench.retrieval import search, search_split

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _unit(rng, *shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cuda_search_matches_cpu():
    rng = np.random.default_rng(0)
    q, r = _unit(rng, 300, 64), _unit(rng, 5000, 64)
    s_cpu, i_cpu = search(q, r, 10)
    s_gpu, i_gpu = search(q, r, 10, device="cuda", block=1500)
    np.testing.assert_allclose(s_gpu, s_cpu, atol=1e-4)
    assert (i_gpu == i_cpu).mean() > 0.99  # near-ties may swap under different summation orders


def test_cuda_split_search_matches_cpu():
    rng = np.random.default_rng(1)
    q, r = (
        rng.standard_normal((20, 4, 16)).astype(np.float32),
        rng.standard_normal((300, 4, 16)).astype(np.float32),
    )
    s_cpu, _ = search_split(q, r, 5)
    s_gpu, _ = search_split(q, r, 5, device="cuda")
    np.testing.assert_allclose(s_gpu, s_cpu, atol=1e-4)


@pytest.mark.parametrize("dtype,tol", [("fp32", 1e-3), ("bf16", 3e-2)])
def test_cuda_extraction_matches_cpu(tmp_path, dtype, tol):
    from PIL import Image

    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    rng = np.random.default_rng(2)
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    torch.manual_seed(0)
    cpu_det = create_detector("resnet50.tv_in1k", allow_random=True)
    gpu_det = create_detector("resnet50.tv_in1k", allow_random=True)
    gpu_det.load_state_dict(cpu_det.state_dict())
    cpu = Extractor(cpu_det, num_workers=0, progress=False).run(paths)
    gpu = Extractor(gpu_det.to("cuda"), device="cuda", dtype=dtype, num_workers=2, progress=False).run(paths)
    cos = (np.asarray(cpu.vectors) * np.asarray(gpu.vectors)).sum(1)
    assert cos.min() > 1 - tol, cos
