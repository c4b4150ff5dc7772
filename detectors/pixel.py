"""Pixel baselines: tiny raw-pixel thumbnails. Parameter-free, so their weights status is ``none``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import UNIT_MEAN, UNIT_STD, DetectorSpec, register_detector

_REF = "raw-pixel baseline, as in the copy-detection literature"


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


def _thumbnail(size: int, gray: bool):
    channels = 1 if gray else 3
    name = f"pixel_{'gray' if gray else 'rgb'}_{size}"
    spec = DetectorSpec(
        name=name, dims=channels * size * size, input_size=max(64, size * 4), resize="square",
        interpolation="bilinear", mean=UNIT_MEAN, std=UNIT_STD, paper=_REF, family="pixel",
    )
    register_detector(spec)(lambda path, size=size, gray=gray: Thumbnail(size, gray))


for _size in (8, 16, 32):
    _thumbnail(_size, gray=True)
    _thumbnail(_size, gray=False)
