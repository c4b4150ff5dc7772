"""The example plugin's model (imported only when the detector is built): 8-bin gradient-orientation
histograms over a 4x4 grid (HOG-like, 128-d)."""

import torch
import torch.nn.functional as F


class EdgeHistogram(torch.nn.Module):
    def forward(self, x):
        gray = x.mean(dim=1, keepdim=True)
        gx = F.conv2d(gray, torch.tensor([[[[-1.0, 0.0, 1.0]]]]), padding=(0, 1))
        gy = F.conv2d(gray, torch.tensor([[[[-1.0], [0.0], [1.0]]]]), padding=(1, 0))
        angle = (torch.atan2(gy, gx) % torch.pi) / torch.pi * 8  # unsigned orientation, 8 bins
        votes = F.one_hot(angle.long().clamp(0, 7).squeeze(1), 8).permute(0, 3, 1, 2) * torch.hypot(gx, gy)
        return F.adaptive_avg_pool2d(votes, 4).flatten(1) + 1e-8


def edge_hist_128(path):
    return EdgeHistogram()
