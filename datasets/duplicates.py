"""Duplicates that would corrupt an imported benchmark's ground truth, found before the index is written.

Exact duplicates (same sha256, which ``files.csv`` records anyway) are refused: two references with the same
bytes tie on every detector, and the tie is counted against the true one; a query identical to a reference it is
not paired with is a positive the ground truth calls a miss. Near-duplicates (a distractor that is a resized or
re-encoded copy of a reference) cannot be decided by bytes: each image gets imagehash's 64-bit pHash (gray
32x32, 2-D DCT-II, the 8x8 lowest frequencies against their median) and a distractor within
``NEAR_DUPLICATE_BITS`` of a reference is reported and listed in ``dataset.json``.

The threshold is measured on the embedded photos (``docs``: datasets page): over the 23 whole photos, their
2x, 4x and 8x downscales and JPEG re-encodings at quality 90, 50 and 20 (also combined), every copy lies within
4 bits of its photo, while the closest two different photos are 20 bits apart; 10 bits sits between with room
on both sides (a random pair of 64-bit hashes is 32 +- 4 bits apart).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SourceError

log = logging.getLogger(__name__)
NEAR_DUPLICATE_BITS = 10  # a distractor whose pHash is at most this far from a reference's is reported


@dataclass(frozen=True)
class Item:
    """One image of an import: its role ('reference', 'distractor' or 'query'), id, file and sha256."""

    role: str
    id: str
    path: Path
    sha256: str


def refuse_exact_duplicates(items: Sequence[Item], positives: dict[str, frozenset[str]]) -> None:
    """SourceError naming both files for two references with one sha256, or a query whose bytes equal a
    reference it is not paired with (``positives``: query id -> its reference ids)."""
    refs: dict[str, Item] = {}
    for item in items:
        if item.role == "query":
            continue
        first = refs.setdefault(item.sha256, item)
        if first is not item:
            raise SourceError(
                f"{item.path} ({item.role} {item.id!r}) is byte-identical to {first.path} ({first.role} "
                f"{first.id!r}): two identical references tie on every detector and the true match loses the "
                "tie; remove one of them"
            )
    for item in items:
        ref = refs.get(item.sha256) if item.role == "query" else None
        if ref is not None and ref.id not in positives.get(item.id, frozenset()):
            raise SourceError(
                f"query {item.path} ({item.id!r}) is byte-identical to {ref.path} ({ref.role} {ref.id!r}), "
                "a reference the ground truth does not pair it with: a detector finding it would be counted "
                "wrong; fix the ground truth or remove one file"
            )


def phash64(path: Path) -> int | None:
    """imagehash's ``phash`` of the file as a 64-bit integer; None when it cannot be decoded."""
    from PIL import Image
    from scipy.fft import dct

    from copybench.preprocess import ImageReadError, read_image

    try:
        img = read_image(path, min_side=64)  # a reduced JPEG decode: 32x32 is all the hash looks at
    except ImageReadError as exc:
        log.debug("near-duplicate check skips %s: %s", path, exc)
        return None
    gray = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dct(dct(gray, axis=0), axis=1)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hashes(paths: Sequence[Path], progress: bool = False) -> list[int | None]:
    """pHash of each file, decoded on a thread pool (Pillow releases the GIL while it decodes)."""
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results: Iterable[int | None] = pool.map(phash64, paths)
        if progress:
            from rich.progress import track

            results = track(results, total=len(paths), description="near-duplicate check", transient=True)
        return list(results)


def near_duplicates(
    distractors: Sequence[Item], references: Sequence[Item], progress: bool = False
) -> list[dict]:
    """Every (distractor, reference) pair whose pHashes are at most NEAR_DUPLICATE_BITS apart, closest first:
    ``{"distractor", "reference", "distractor_path", "reference_path", "bits"}``."""
    if not distractors or not references:
        return []
    found = hashes([i.path for i in (*distractors, *references)], progress)
    d_ok = [(i, h) for i, h in zip(distractors, found[: len(distractors)]) if h is not None]
    r_ok = [(i, h) for i, h in zip(references, found[len(distractors) :]) if h is not None]
    if not d_ok or not r_ok:
        return []
    d_bits = np.array([h for _, h in d_ok], dtype=np.uint64)
    r_bits = np.array([h for _, h in r_ok], dtype=np.uint64)
    pairs = []
    for start in range(0, len(d_bits), 4096):  # bounded memory: 4096 x n_references distances at a time
        block = np.bitwise_count(d_bits[start : start + 4096, None] ^ r_bits[None, :])
        for di, ri in zip(*np.nonzero(block <= NEAR_DUPLICATE_BITS)):
            (d, _), (r, _) = d_ok[start + di], r_ok[ri]
            pairs.append({"distractor": d.id, "reference": r.id, "distractor_path": str(d.path),
                          "reference_path": str(r.path), "bits": int(block[di, ri])})  # fmt: skip
    return sorted(pairs, key=lambda p: (p["bits"], p["distractor"], p["reference"]))
