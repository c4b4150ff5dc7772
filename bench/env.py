"""The environment recorded with every result: versions, git commit, machine and device."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from ._version import __version__


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the copybench checkout this code runs from (None when not in a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def check_device(device: str) -> None:
    """Raise ValueError naming ``device`` when torch cannot parse it or CUDA is asked for but absent."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available on this machine")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
        )


def device_name(device: str) -> str:
    """Human name of a torch device: the GPU model, or the CPU model and thread count."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def environment(device: str = "cpu", dtype: str = "fp32") -> dict:
    """Versions, commit and device for a result file (no hostname: result files are published)."""
    import torch

    return {
        "copybench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{
            name: _version(name)
            for name in ("torchvision", "timm", "kornia", "faiss-cpu", "faiss-gpu", "onnxruntime", "numpy")
        },
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "dtype": dtype,
    }
