"""The scan's numerics: input listing and fingerprints, exact blocked top-k search, the train-vs-train
baseline, and the statistics (distribution summaries, Wilson intervals). No model runs here.

Search streams the training descriptors in blocks of :data:`BLOCK_BYTES` and merges per-block top-k lists, so
memory stays bounded however large the training set.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np

from copybench.io import IMAGE_SUFFIXES, list_images
from copybench.retrieval import merge_topk

log = logging.getLogger(__name__)

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BLOCK_BYTES = 256 << 20  # float32 bytes of one descriptor block held in memory during search


def find_images(folder: str | Path, role: str) -> list[str]:
    """Image files under ``folder`` (recursive, suffixes in IMAGE_SUFFIXES), absolute and sorted."""
    root = Path(folder).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"--{role}: no such folder: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"--{role}: not a folder: {root}")
    # not resolved one by one: a symlinked image keeps its place under the folder (and its relative name)
    paths = sorted(str(p) for p in list_images(root))  # string order, as the cache key has always used
    if not paths:
        raise ValueError(
            f"--{role}: no images in {root} (looked recursively for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return paths


def files_fingerprint(paths: list[str]) -> str:
    """Hash of each file's size and mtime, so the descriptor cache is not reused for files changed in place."""
    h = hashlib.sha256()
    for p in paths:
        st = Path(p).stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()[:24]


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (stays inside [0, 1] and is sane at 0 or n successes)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def distribution_stats(values: np.ndarray) -> dict:
    """n, mean, std, min, median, 75/90/95th percentiles and max of a similarity sample."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    p50, p75, p90, p95 = np.percentile(v, [50, 75, 90, 95])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "median": float(p50),
        "p75": float(p75),
        "p90": float(p90),
        "p95": float(p95),
        "max": float(v.max()),
    }


def _rows_per_block(arr: np.ndarray) -> int:
    return max(1, BLOCK_BYTES // (4 * int(np.prod(arr.shape[1:]))))


def _gather(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a (possibly memory-mapped) array as float32; reads only those rows."""
    return np.ascontiguousarray(np.asarray(arr[rows]), dtype=np.float32)


def _search_block(q: np.ndarray, r: np.ndarray, k: int, similarity: str, device: str):
    from copybench.retrieval import search, search_split

    if similarity == "cosine":
        return search(q, r, k, device=device)
    return search_split(q, r, k, device=device)


def search_top_k(
    q_arr: np.ndarray,
    q_rows: np.ndarray,
    r_arr: np.ndarray,
    r_rows: np.ndarray,
    k: int,
    *,
    similarity: str = "cosine",
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of rows ``q_rows`` of ``q_arr`` among rows ``r_rows`` of ``r_arr``, both streamed in blocks.

    Returns (scores (Q, k) float32, indices (Q, k) into ``r_arr``), padded with -inf / -1.
    """
    q_rows, r_rows = np.asarray(q_rows, dtype=np.int64), np.asarray(r_rows, dtype=np.int64)
    scores = np.full((len(q_rows), k), -np.inf, dtype=np.float32)
    index = np.full((len(q_rows), k), -1, dtype=np.int64)
    q_step, r_step = _rows_per_block(q_arr), _rows_per_block(r_arr)
    for qs in range(0, len(q_rows), q_step):
        q = _gather(q_arr, q_rows[qs : qs + q_step])
        best_s, best_i = scores[qs : qs + q_step], index[qs : qs + q_step]
        for rs in range(0, len(r_rows), r_step):
            block_rows = r_rows[rs : rs + r_step]
            s, i = _search_block(q, _gather(r_arr, block_rows), k, similarity, device)
            best_s, best_i = merge_topk(
                best_s, best_i, s, np.where(i >= 0, block_rows[np.clip(i, 0, None)], -1), k
            )
        scores[qs : qs + q_step], index[qs : qs + q_step] = best_s, best_i
    return scores, index


def nearest_other(
    arr: np.ndarray,
    rows: np.ndarray,
    ok_rows: np.ndarray,
    *,
    similarity: str = "cosine",
    device: str = "cpu",
    search=search_top_k,
) -> np.ndarray:
    """Similarity of each of ``rows`` to its nearest OTHER row among ``ok_rows``.

    Self is dropped by index, not by score: with exact duplicates in the set, self and its twin tie at the top
    and either may come first, and the twin's similarity (1.0) is the right answer.
    """
    s, i = search(arr, rows, arr, ok_rows, 2, similarity=similarity, device=device)
    other = i != np.asarray(rows)[:, None]
    first = np.argmax(other, axis=1)
    return s[np.arange(len(rows)), first]


def baseline_rows(ok_rows: np.ndarray, sample: int | None, seed: int) -> np.ndarray:
    """All readable training rows, or a seeded random sample of ``sample`` of them (sorted)."""
    if sample is None or len(ok_rows) <= sample:
        return ok_rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ok_rows, size=sample, replace=False))
