"""The detector contract, checked the way the harness runs a detector.

Images go through the harness's own preprocessing (``Preprocess(spec)``), then the model, then L2 normalisation.
A detector passes when its output has the declared shape and dims, is finite and non-zero (so it normalises to
unit norm), is deterministic, and each image gets the same descriptor alone as in a batch. Any failure raises
:class:`ContractError` naming the detector and what is wrong, so a broken plugin is easy to tell apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .load import Detector, create_detector


class ContractError(AssertionError):
    """A detector breaks the contract; the message names it and the broken rule."""


@dataclass(frozen=True)
class ContractReport:
    """What a passing detector produced: output shape and seconds for the whole check."""

    name: str
    output_shape: tuple[int, ...]
    weights: str
    seconds: float


def sample_images(n: int, size: tuple[int, int] = (180, 240), seed: int = 0) -> torch.Tensor:
    """``n`` distinct smooth-plus-noise uint8 images (n, 3, H, W): deterministic, not square, not constant."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 8, generator=gen)
    smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    noise = 0.08 * torch.randn(n, 3, *size, generator=gen)
    return ((smooth + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def _fail(name: str, problem: str) -> ContractError:
    return ContractError(f"detector {name!r} breaks the detector contract: {problem}")


def _check_output(name: str, out: object, spec, batch: int) -> torch.Tensor:
    """Shape, dims, dtype, finiteness and non-zero norm of one raw output."""
    if not isinstance(out, torch.Tensor):
        raise _fail(name, f"forward returned {type(out).__name__}, expected a torch.Tensor")
    if not out.is_floating_point():
        raise _fail(name, f"output dtype {out.dtype} is not floating point")
    want = "(B, D)" if spec.output == "global" else "(B, T, D)"
    ndim = 2 if spec.output == "global" else 3
    if out.ndim != ndim or out.shape[0] != batch:
        raise _fail(
            name,
            f"output shape {tuple(out.shape)} for a batch of {batch}; output={spec.output!r} needs {want}",
        )
    if out.shape[-1] != spec.dims:
        raise _fail(name, f"output dims {out.shape[-1]} but the spec declares dims={spec.dims}")
    if not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).sum().item()
        raise _fail(name, f"output holds {bad} non-finite values (NaN or inf)")
    norms = out.float().norm(dim=-1)
    if (norms <= 1e-12).any():
        raise _fail(name, "output has an all-zero descriptor, which cannot be L2-normalised")
    return F.normalize(out.float(), dim=-1)


def _close(name: str, a: torch.Tensor, b: torch.Tensor, atol: float, what: str) -> None:
    if a.shape != b.shape:
        raise _fail(name, f"{what}: output shape {tuple(b.shape)} differs from {tuple(a.shape)}")
    diff = (a - b).abs().max().item()
    if diff > atol:
        raise _fail(name, f"{what}: L2-normalised outputs differ by up to {diff:.3g} (tolerance {atol:g})")


def check_detector_contract(
    name_or_detector: str | Detector,
    *,
    batch: int = 2,
    image_size: tuple[int, int] = (180, 240),
    device: str | torch.device = "cpu",
    weights_file: str | Path | None = None,
    allow_random: bool = True,
    quick: bool = False,
    atol: float = 1e-4,
) -> ContractReport:
    """Build (random weights allowed by default) and check a detector; raise ContractError naming it on failure.

    ``quick`` runs one forward of one image (shape, dims, finite, unit norm) and skips the determinism and
    batch-invariance checks: for very large models on a CPU.
    """
    from copybench.preprocess import Preprocess

    start = time.perf_counter()
    detector = _build(name_or_detector, weights_file, allow_random, device)
    name, spec = detector.spec.name, detector.spec
    n = 1 if quick else max(2, batch)
    try:
        pre = Preprocess(spec)
        x = pre(sample_images(n, image_size)).to(device)
    except Exception as exc:
        raise _fail(name, f"the harness cannot preprocess for this spec: {exc}") from exc
    with torch.no_grad():
        first = _check_output(name, _forward(name, detector, x), spec, n)
        if not quick:
            alone = [_check_output(name, _forward(name, detector, x[i : i + 1]), spec, 1) for i in range(n)]
            again = _check_output(name, _forward(name, detector, x[:1]), spec, 1)
            _close(name, alone[0], again, atol, "not deterministic (two runs on the same image)")
            for i in range(n):
                _close(name, first[i : i + 1], alone[i], atol, f"image {i} alone vs in a batch of {n}")
    return ContractReport(name, tuple(first.shape), detector.weights.status, time.perf_counter() - start)


def _build(name_or_detector, weights_file, allow_random, device) -> Detector:
    if isinstance(name_or_detector, Detector):
        return name_or_detector.eval().to(device)
    try:
        return create_detector(
            name_or_detector, weights_file=weights_file, allow_random=allow_random, device=device
        )
    except Exception as exc:
        raise ContractError(f"detector {name_or_detector!r} could not be built: {exc}") from exc


def _forward(name: str, detector: Detector, x: torch.Tensor) -> torch.Tensor:
    try:
        return detector(x)
    except Exception as exc:
        raise _fail(name, f"forward failed on a batch of shape {tuple(x.shape)}: {exc}") from exc
