"""The descriptor cache: one folder per extraction key, filled by shards, finalised into ``.npy`` files.

Shards of (rows, vectors, tokens, failures) are flushed atomically every ``SHARD_IMAGES`` images or
``SHARD_SECONDS`` seconds, so a run killed at any point (even ``kill -9``) resumes from the last shard and ends
with identical descriptors. The final arrays are ``.npy`` files opened as memory maps, so memory stays flat in
the number of images.

Cache key: detector spec, weights hash, preprocessing, dtype, output kind and the exact list of image files
(plus the dataset fingerprint when there is one).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CACHE_VERSION = 2  # bump whenever decoding, preprocessing or normalisation changes what a descriptor is
SHARD_IMAGES = 1024
SHARD_SECONDS = (
    30.0  # also flush a shard this often, so a kill -9 loses at most this much work on a slow model
)


@dataclass
class Descriptors:
    """L2-normalised descriptors of ``paths``; rows of failed images are zero and listed in ``failed``."""

    paths: list[str]
    vectors: np.ndarray  # (N, D) float32, possibly a memmap
    tokens: np.ndarray | None = None  # (N, T, D) float16 memmap when token output was asked for
    failed: dict[int, str] = field(default_factory=dict)  # row -> error message
    seconds: float = 0.0  # extraction time spent in this call (0 when fully cached)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows that decoded."""
        mask = np.ones(len(self.paths), dtype=bool)
        mask[list(self.failed)] = False
        return mask


def cache_key(
    detector,
    paths: list[str],
    *,
    dtype: str,
    tokens: bool,
    fingerprint: str | None = None,
    scales: tuple[float, ...] | None = None,
) -> str:
    """Stable hash identifying one extraction."""
    h = hashlib.sha256()
    ident = {
        "v": CACHE_VERSION,
        "spec": detector.spec.to_dict(),
        "weights": detector.weights.sha256 or detector.weights.status,
        "dtype": dtype,
        "tokens": tokens,
        "fingerprint": fingerprint,
    }
    if scales:
        ident["scales"] = list(scales)
    if getattr(detector, "code", None):  # a plugin: its code decides what a descriptor is
        ident["code"] = detector.code
    h.update(json.dumps(ident, sort_keys=True).encode())
    for p in paths:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:24]


class ShardStore:
    """Shards of (rows, vectors, tokens, failures) flushed atomically; finalised into memmapped .npy files."""

    def __init__(self, root: Path | None, n: int) -> None:
        self.root, self.n = root, n
        self.rows: list[int] = []
        self.vecs: list[np.ndarray] = []
        self.toks: list[np.ndarray] = []
        self.failures: dict[int, str] = {}
        self.shards: list[dict] = []
        self.flushed_at = time.monotonic()
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            self.shards = [self._read_shard(p) for p in sorted(root.glob("shard-*.npz"))]

    def complete(self) -> bool:
        return self.root is not None and (self.root / "done.json").is_file()

    def missing_rows(self) -> list[int]:
        done = set()
        for s in self.shards:
            done.update(s["rows"].tolist())
            done.update(int(r) for r in s["failures"])
        return [r for r in range(self.n) if r not in done]

    @staticmethod
    def _read_shard(path: Path) -> dict:
        with np.load(path, allow_pickle=False) as z:
            shard = {k: z[k] for k in z.files}
        shard["failures"] = json.loads(str(shard.pop("failures_json")))
        return shard

    def add(self, rows: list[int], vecs: np.ndarray, toks: np.ndarray | None) -> None:
        self.rows.extend(rows)
        self.vecs.append(vecs.astype(np.float32))
        if toks is not None:
            self.toks.append(toks)
        if len(self.rows) >= SHARD_IMAGES or time.monotonic() - self.flushed_at >= SHARD_SECONDS:
            self.flush()

    def add_failure(self, row: int, err: str) -> None:
        self.failures[row] = err

    def flush(self) -> None:
        if not self.rows and not self.failures:
            return
        shard = {
            "rows": np.asarray(self.rows, dtype=np.int64),
            "vectors": np.concatenate(self.vecs) if self.vecs else np.zeros((0, 0), np.float32),
            "failures_json": np.asarray(json.dumps({str(k): v for k, v in self.failures.items()})),
        }
        if self.toks:
            shard["tokens"] = np.concatenate(self.toks)
        if self.root is not None:
            tmp = self.root / f".tmp-{os.getpid()}.npz"
            np.savez(tmp, **shard)
            os.replace(tmp, self.root / f"shard-{len(self.shards):06d}.npz")
        shard["failures"] = json.loads(str(shard.pop("failures_json")))
        self.shards.append(shard)
        self.rows, self.vecs, self.toks, self.failures = [], [], [], {}
        self.flushed_at = time.monotonic()

    def _allocate(self, name: str, shape: tuple, dtype) -> np.ndarray:
        if self.root is None:
            return np.zeros(shape, dtype=dtype)
        return np.lib.format.open_memmap(self.root / name, mode="w+", dtype=dtype, shape=shape)

    def finalize(self, paths: list[str], dims: int, tokens: bool) -> Descriptors:
        failed: dict[int, str] = {}
        with_vecs = [s for s in self.shards if len(s["rows"])]
        dims = with_vecs[0]["vectors"].shape[1] if with_vecs else dims
        vectors = self._allocate("vectors.npy", (self.n, dims), np.float32)
        tok_arr = None
        if tokens and with_vecs:
            t_shape = with_vecs[0]["tokens"].shape[1:]
            tok_arr = self._allocate("tokens.npy", (self.n, *t_shape), np.float16)
        for s in self.shards:
            failed.update({int(k): v for k, v in s["failures"].items()})
            if len(s["rows"]):
                vectors[s["rows"]] = s["vectors"]
                if tok_arr is not None:
                    tok_arr[s["rows"]] = s["tokens"]
        if self.root is not None:
            for arr in (vectors, tok_arr):
                if isinstance(arr, np.memmap):
                    arr.flush()
            from copybench.io import atomic_write_text

            done = {
                "n": self.n,
                "failed": {str(k): v for k, v in failed.items()},
                "tokens": tok_arr is not None,
            }
            atomic_write_text(self.root / "done.json", json.dumps(done))
            for p in self.root.glob("shard-*.npz"):
                p.unlink()
        return Descriptors(list(paths), vectors, tok_arr, failed)

    def load(self, paths: list[str]) -> Descriptors:
        done = json.loads((self.root / "done.json").read_text())
        vectors = np.load(self.root / "vectors.npy", mmap_mode="r")
        toks = np.load(self.root / "tokens.npy", mmap_mode="r") if done.get("tokens") else None
        return Descriptors(list(paths), vectors, toks, {int(k): v for k, v in done["failed"].items()})
