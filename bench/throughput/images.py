"""Images for a throughput run: seeded synthetic JPEGs (or a user's folder) and synthetic reference vectors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..io import IMAGE_SUFFIXES
from ..io import list_images as _io_list_images
from .settings import ThroughputSettings


def _synthetic_image(i: int, size: tuple[int, int], seed: int):
    """Smooth colour gradients plus noise and a rectangle: compresses like a photo, not like flat colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([seed, i])  # per-item seed: any image can be regenerated alone
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(-1, 1, size=(2, 3)).astype(np.float32)
    base = 128 + 60 * (a * xx[..., None] / w + b * yy[..., None] / h) + rng.normal(0, 18, (h, w, 3))
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    base[y0 : y0 + h // 3, x0 : x0 + w // 3] += rng.uniform(-80, 80, size=3)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def _write_range(folder: str, start: int, stop: int, size: tuple[int, int], seed: int) -> None:
    for i in range(start, stop):
        _synthetic_image(i, size, seed).save(Path(folder) / f"synthetic_{i:06d}.jpg", quality=90)


def write_synthetic_jpegs(
    folder: str | Path, n: int, *, size: tuple[int, int] = (512, 384), seed: int = 0
) -> list[str]:
    """Write ``n`` seeded synthetic JPEGs into ``folder`` (in parallel processes when many); returns their paths."""
    from concurrent.futures import ProcessPoolExecutor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    procs = min(os.cpu_count() or 1, max(1, n // 128))
    if procs == 1:
        _write_range(str(folder), 0, n, size, seed)
    else:
        bounds = [(n * k // procs, n * (k + 1) // procs) for k in range(procs)]
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(_write_range, *zip(*[(str(folder), a, b, size, seed) for a, b in bounds])))
    return [str(folder / f"synthetic_{i:06d}.jpg") for i in range(n)]


def list_images(folder: str | Path, n: int | None = None) -> list[str]:
    """Sorted image files under ``folder`` (recursively), the first ``n`` when given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"--images: no such folder: {folder}")
    paths = sorted(str(p) for p in _io_list_images(folder))
    if not paths:
        raise FileNotFoundError(f"--images: no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return paths[:n] if n else paths


@contextlib.contextmanager
def image_paths(images: str | Path | None, settings: ThroughputSettings):
    if images is not None:
        yield list_images(images, settings.n_images)
        return
    with tempfile.TemporaryDirectory(prefix="copybench-throughput-") as tmp:
        yield write_synthetic_jpegs(tmp, settings.n_images, size=settings.image_size, seed=settings.seed)


def synthetic_references(n: int, dims: int, seed: int = 0):
    """(n, dims) float32 unit vectors, seeded."""
    import numpy as np

    x = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x
