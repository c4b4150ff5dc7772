"""Pixel baselines: raw-pixel thumbnails, a perceptual hash and a colour histogram.

All parameter-free (weights status ``none``) and fed ``pixels / 255`` (mean 0, std 1). Each returns a vector whose
cosine similarity is the baseline's classic score:

- ``phash_64``: the pHash of ``imagehash`` (gray 32x32, 2-D DCT-II, the 8x8 lowest frequencies compared with their
  median) as 64 entries of +-1/8. The vector has unit norm and cosine = 1 - 2 * Hamming / 64, so ranking by cosine
  is ranking by Hamming distance.
- ``color_hist_512``: an 8x8x8 RGB histogram as probabilities, square-rooted (Hellinger embedding): unit norm, and
  cosine = sum_i sqrt(p_i q_i), the Bhattacharyya coefficient.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .builtin import builtin_spec
from .registry import register_detector


class Thumbnail(torch.nn.Module):
    """Area-downsample to ``size`` x ``size``, optionally gray, then zero-mean per image (brightness invariance)."""

    def __init__(self, size: int, gray: bool):
        super().__init__()
        self.size, self.gray = size, gray

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray:
            x = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        x = F.adaptive_avg_pool2d(x, self.size).flatten(1)
        return x - x.mean(dim=1, keepdim=True)


def _thumbnail(size: int, gray: bool) -> None:
    @register_detector(builtin_spec(f"pixel_{'gray' if gray else 'rgb'}_{size}"))
    def factory(path: Path | None) -> torch.nn.Module:
        return Thumbnail(size, gray)


for _size in (8, 16, 32):
    _thumbnail(_size, gray=True)
    _thumbnail(_size, gray=False)


_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, Pillow's convert("L")


def dct_matrix(n: int) -> torch.Tensor:
    """Unnormalised DCT-II (scipy's default norm=None): X_k = 2 sum_j x_j cos(pi k (2j + 1) / 2n), float64."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    return 2.0 * torch.cos(torch.pi * k * (2 * j + 1) / (2 * n))


class PHash(torch.nn.Module):
    """imagehash's phash on a 32x32 batch: (B, 3, 32, 32) in [0, 1] -> (B, 64) of +-1/8."""

    def __init__(self, size: int = 32, low: int = 8):
        super().__init__()
        self.low = low
        self.register_buffer("dct", dct_matrix(size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = sum(w * x[:, c].double() for c, w in enumerate(_GRAY)) * 255.0
        coeffs = (self.dct @ gray @ self.dct.T)[:, : self.low, : self.low].flatten(1)
        # numpy's median of an even count averages the two middle values; torch.median would take the lower one
        mid = (
            coeffs.sort(dim=1)
            .values[:, coeffs.shape[1] // 2 - 1 : coeffs.shape[1] // 2 + 1]
            .mean(1, keepdim=True)
        )
        bits = (coeffs > mid).float()
        return (2.0 * bits - 1.0) / float(self.low)


class ColorHistogram(torch.nn.Module):
    """Joint RGB histogram with ``bins`` per channel, as sqrt-probabilities: (B, 3, H, W) in [0, 1] -> (B, bins**3)."""

    def __init__(self, bins: int = 8):
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = (x.float() * 255.0).round().clamp(0, 255).long() * self.bins // 256  # exact uint8 binning
        index = (levels[:, 0] * self.bins + levels[:, 1]) * self.bins + levels[:, 2]
        index = index.flatten(1)
        counts = torch.zeros(x.shape[0], self.bins**3, dtype=torch.float64, device=x.device)
        counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))
        return (counts / counts.sum(1, keepdim=True)).sqrt().float()


@register_detector(builtin_spec("phash_64"))
def phash_64(path: Path | None) -> torch.nn.Module:
    return PHash()


@register_detector(builtin_spec("color_hist_512"))
def color_hist_512(path: Path | None) -> torch.nn.Module:
    return ColorHistogram(8)
