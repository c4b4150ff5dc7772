"""Pixel baselines against independent computations: imagehash-style pHash (scipy) and a numpy histogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.fftpack import dct

from copybench.detectors import create_detector


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(n, 3, size, size)).astype(np.float32) / 255.0)


def _phash_bits(rgb: np.ndarray) -> np.ndarray:
    """imagehash.phash on an image already at 32x32: luma, 2-D DCT (scipy, norm=None), 8x8 low band > median."""
    gray = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) * 255.0
    low = dct(dct(gray, axis=0), axis=1)[:8, :8]
    return (low > np.median(low)).flatten()


def test_phash_matches_imagehash_definition():
    x = _images(6, 32)
    out = create_detector("phash_64")(x)
    for i in range(len(x)):
        bits = _phash_bits(x[i].double().numpy())
        assert np.array_equal(out[i].numpy() > 0, bits)
    assert torch.allclose(out.abs(), torch.full_like(out, 1 / 8)) and torch.allclose(
        out.norm(dim=1), torch.ones(6)
    )


def test_phash_cosine_is_one_minus_twice_normalised_hamming():
    out = create_detector("phash_64")(_images(5, 32, seed=1))
    cos = out @ out.T
    hamming = ((out.unsqueeze(1) > 0) != (out.unsqueeze(0) > 0)).sum(-1).float()
    assert torch.allclose(cos, 1 - 2 * hamming / 64, atol=1e-6)


def test_color_histogram_is_hellinger_of_an_rgb_histogram():
    x = _images(3, 20, seed=2)
    out = create_detector("color_hist_512")(x)
    probs = []
    for img in x:
        pixels = (img.numpy() * 255).round().astype(int).reshape(3, -1).T // 32
        hist, _ = np.histogramdd(pixels, bins=(8, 8, 8), range=((0, 8),) * 3)
        probs.append(hist.flatten() / hist.sum())
    probs = np.stack(probs)
    np.testing.assert_allclose(out.numpy(), np.sqrt(probs), atol=1e-6)
    bhattacharyya = np.sqrt(probs[0] * probs[1]).sum()
    assert (out[0] @ out[1]).item() == pytest.approx(bhattacharyya, abs=1e-6)
    assert torch.allclose(out.norm(dim=1), torch.ones(3))
