"""Reduced-size (draft) JPEG decoding against the full decode: descriptor gap and decode speed on real photos.

The workers decode path (:mod:`copybench.decode`) decodes a large JPEG at 1/2, 1/4 or 1/8 scale by libjpeg's DCT
scaling when the model needs far fewer pixels. The target is descriptors within 1e-3 cosine of the full decode.
:func:`draft_gaps` measures it per detector over a set of large JPEGs (the worst image matters: smooth gradients,
such as desktop wallpapers, are the hard case), and :func:`decode_speedup` what the draft saves in decoding.

Real large JPEGs ship with desktop wallpaper packages (Debian's plasma-workspace-wallpapers, mate-backgrounds,
ukui-wallpapers install under ``/usr/share/wallpapers`` and ``/usr/share/backgrounds``); :func:`large_jpegs`
finds them there or in the folders named by ``COPYBENCH_LARGE_JPEGS`` (``os.pathsep``-separated).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

WALLPAPER_FOLDERS = ("/usr/share/wallpapers", "/usr/share/backgrounds")
FOLDERS_ENV = "COPYBENCH_LARGE_JPEGS"
JPEG_SUFFIXES = (".jpg", ".jpeg")


def large_jpeg_folders() -> list[Path]:
    """Folders searched for real large JPEGs: ``COPYBENCH_LARGE_JPEGS`` when set, else the wallpaper folders."""
    env = os.environ.get(FOLDERS_ENV)
    names = env.split(os.pathsep) if env else WALLPAPER_FOLDERS
    return [Path(n) for n in names if n and Path(n).is_dir()]


def large_jpegs(folders: list[Path] | None = None, *, min_side: int = 1500) -> list[str]:
    """Distinct JPEG files (symlinks resolved) under ``folders`` whose shorter side is at least ``min_side``."""
    from PIL import Image

    found = set()
    for folder in large_jpeg_folders() if folders is None else folders:
        for p in Path(folder).rglob("*"):
            if p.suffix.lower() in JPEG_SUFFIXES and p.is_file():
                found.add(str(p.resolve()))
    out = []
    for p in sorted(found):
        try:
            with Image.open(p) as img:
                if img.format == "JPEG" and min(img.size) >= min_side:
                    out.append(p)
        except OSError:
            continue  # not an image after all: a benchmark set, not a dataset, so skip it silently
    return out


def draft_gaps(detector, paths: list[str], *, batch_size: int = 8) -> dict:
    """1 - cosine between each image's descriptor from the full decode and from the Extractor's own (draft)
    decode, as ``copybench run`` decodes: worst, median, and over the images the draft actually reduced."""
    import numpy as np

    from ..extract import Extractor

    full = Extractor(detector, batch_size=batch_size, num_workers=0, progress=False, draft=False)
    ext = Extractor(detector, batch_size=batch_size, num_workers=0, progress=False)
    a, b = np.asarray(full.run(paths).vectors), np.asarray(ext.run(paths).vectors)
    gaps = 1.0 - (a * b).sum(1).astype(np.float64)
    min_side = ext.preprocess.min_decode_side if ext.draft else None
    reduced = set(drafted_paths(paths, min_side)) if min_side else set()
    drafted = [i for i, p in enumerate(paths) if p in reduced]
    worst = int(gaps.argmax())
    return {
        "detector": detector.spec.name,
        "weights": detector.weights.status,
        "draft": ext.draft,
        "min_decode_side": min_side,
        "n_images": len(paths),
        "n_drafted": len(drafted),
        "worst_gap": float(gaps.max()),
        "median_gap": float(np.median(gaps)),
        "median_gap_drafted": float(np.median(gaps[drafted])) if drafted else None,
        "worst_image": paths[worst] if gaps[worst] > 0 else None,  # a packaged file: its path names it
    }


def drafted_paths(paths: list[str], min_side: int) -> list[str]:
    """The files of ``paths`` that a draft keeping both sides at least ``min_side`` decodes at reduced size."""
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as img:
            full = img.size
            img.draft(img.mode, (min_side, min_side))  # sets the decode scale only: no pixels decoded
            if img.size != full:
                out.append(p)
    return out


def decode_speedup(paths: list[str], min_side: int, *, rounds: int = 3) -> dict:
    """Seconds to decode ``paths`` in full and at reduced size (no resize), interleaved over ``rounds``."""
    from ..preprocess import read_image

    full_s, draft_s = [], []
    for _ in range(rounds):
        for sink, side in ((full_s, None), (draft_s, min_side)):
            start = time.perf_counter()
            for p in paths:
                read_image(p, min_side=side)
            sink.append(time.perf_counter() - start)
    ratios = sorted(f / d for f, d in zip(full_s, draft_s))
    return {
        "n_images": len(paths),
        "min_decode_side": min_side,
        "full_decode_s": statistics.median(full_s),
        "draft_decode_s": statistics.median(draft_s),
        "speedup_median": statistics.median(ratios),
        "speedup_range": [ratios[0], ratios[-1]],
        "rounds": rounds,
    }
