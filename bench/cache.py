"""The descriptor cache: one folder per extraction key, filled by shards, finalised into ``.npy`` files.

Shards of (rows, vectors, tokens, failures) are flushed atomically every ``SHARD_IMAGES`` images or
``SHARD_SECONDS`` seconds, so a run killed at any point (even ``kill -9``) resumes from the last shard and ends
with identical descriptors. With a cache folder a flushed shard lives on disk only (the store keeps its rows and
failures) and is read back, one at a time and re-verified, into the final ``.npy`` files opened as memory maps:
the descriptors are held once, and memory stays flat in the number of images.

Cache key: detector spec, weights hash, preprocessing, dtype, output kind and the exact list of image files
with their sizes and mtimes (plus the dataset fingerprint when there is one).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)
# bump whenever decoding, preprocessing or normalisation changes what a descriptor is
CACHE_VERSION = 4  # 3: reduced-size decoding of large JPEGs, the decoder in the key; 4: EXIF orientation
SHARD_IMAGES = 1024
SHARD_SECONDS = (
    30.0  # also flush a shard this often, so a kill -9 loses at most this much work on a slow model
)


@dataclass
class Descriptors:
    """Descriptors of ``paths``, L2-normalised unless extracted raw; failed rows are zero, listed in ``failed``."""

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
    raw: bool = False,
    decode: str = "pillow",
) -> str:
    """Stable hash identifying one extraction (``decode``: what decoded the pixels; decoders differ in pixels)."""
    h = hashlib.sha256()
    ident = {
        "v": CACHE_VERSION,
        "spec": detector.spec.to_dict(),
        "weights": detector.weights.sha256 or detector.weights.status,
        "dtype": dtype,
        "tokens": tokens,
        "fingerprint": fingerprint,
        "decode": decode,
    }
    if scales:
        ident["scales"] = list(scales)
    if raw:  # unnormalised global descriptors (only when asked, so other keys stay as they were)
        ident["raw"] = True
    if getattr(detector, "code", None):  # a plugin: its code decides what a descriptor is
        ident["code"] = detector.code
    h.update(json.dumps(ident, sort_keys=True).encode())
    for p in paths:
        h.update(p.encode() + b"\0" + _stat_tag(p))
    return h.hexdigest()[:24]


def _stat_tag(path: str) -> bytes:
    """Size and mtime of an image: a file replaced under the same name (a scan folder, say) is a new key."""
    try:
        st = os.stat(path)
    except OSError:
        return b"absent\0"
    return f"{st.st_size}:{st.st_mtime_ns}\0".encode()


class CacheWriteError(OSError):
    """The descriptor cache could not be written (disk full, read-only folder); the message names the file."""


class ShardStore:
    """Shards of (rows, vectors, tokens, failures) flushed atomically; finalised into memmapped .npy files.

    Use it as a context manager: it holds an exclusive lock on its folder, so two processes extracting the same
    key never interleave their shards; the second waits and then finds the first one's finished arrays.
    Every shard and final array carries the cache key and a sha256; one that does not match (corrupt,
    truncated, copied from another key) is named in a warning, discarded and its rows are recomputed.
    """

    def __init__(self, root: Path | None, n: int, key: str | None = None) -> None:
        self.root, self.n = root, n
        self.key = key if key is not None else (root.name if root is not None else "")
        self.rows: list[int] = []
        self.vecs: list[np.ndarray] = []
        self.toks: list[np.ndarray] = []
        self.failures: dict[int, str] = {}
        self.shards: list[dict] = []
        self.flushed_at = time.monotonic()
        self._lock = None

    def __enter__(self) -> Self:
        if self.root is not None:
            from copybench.io import file_lock

            _make_dir(self.root)
            self._lock = file_lock(
                self.root / ".lock", waiting=f"waiting for another process extracting into {self.root}"
            )
            self._lock.__enter__()
            for tmp in self.root.glob(".*.tmp"):  # left by a killed writer; we hold the lock, so none is live
                tmp.unlink(missing_ok=True)
            self.shards = [s for s in map(self._read_shard, sorted(self.root.glob("shard-*.npz"))) if s]
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    def complete(self) -> bool:
        """Whether finished arrays are here and verified (a bad set is discarded with a warning)."""
        if self.root is None or not (self.root / "done.json").is_file():
            return False
        problem = self._verify_done()
        if problem is None:
            return True
        _discard(self.root / "done.json", problem)
        for name in ("vectors.npy", "tokens.npy"):
            (self.root / name).unlink(missing_ok=True)
        return False

    def _verify_done(self) -> str | None:
        try:
            done = json.loads((self.root / "done.json").read_text())
            if done.get("key") != self.key or done.get("n") != self.n:
                return f"written for another extraction (key {done.get('key')}, {done.get('n')} images)"
            for name in ("vectors", "tokens"):
                want = done.get(f"{name}_sha256")
                if want is None and name == "vectors":
                    return "no checksum recorded (written by an older copybench)"
                if want is not None and _file_sha256(self.root / f"{name}.npy") != want:
                    return f"{name}.npy does not match its recorded sha256 (corrupt or replaced)"
        except (OSError, ValueError, AttributeError) as exc:
            return f"unreadable: {type(exc).__name__}: {exc}"
        return None

    def missing_rows(self) -> list[int]:
        done = set()
        for s in self.shards:
            done.update(s["rows"].tolist())
            done.update(int(r) for r in s["failures"])
        return [r for r in range(self.n) if r not in done]

    def _read_shard(self, path: Path) -> dict | None:
        """The shard's record (rows, failures, shapes, path; its arrays stay on disk until :meth:`finalize`),
        or None (with a warning, the file removed) when it cannot be trusted."""
        shard, problem = self._load_verified(path)
        if problem:
            _discard(path, problem)
            return None
        return _record(shard, path)

    def _load_verified(self, path: Path) -> tuple[dict, str | None]:
        """A shard file's arrays with its failures parsed, and what is wrong with it (None: key and sha256 match)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                shard = {k: z[k] for k in z.files}
            meta = json.loads(str(shard.pop("meta_json")))
            problem = self._shard_problem(shard, meta)
            shard["failures"] = json.loads(str(shard.pop("failures_json")))
        except Exception as exc:  # noqa: BLE001 - any way a shard fails to read means: recompute its rows
            return {}, f"unreadable: {type(exc).__name__}: {exc}"
        return shard, problem

    def _shard_arrays(self, record: dict) -> dict:
        """A shard's arrays for :meth:`finalize`: in RAM without a cache folder, else read back and verified
        again (the file could have changed since it was written or first read)."""
        if "path" not in record:
            return record
        shard, problem = self._load_verified(record["path"])
        if problem or not np.array_equal(shard["rows"], record["rows"]):
            problem = problem or "its rows changed since it was read"
            raise CacheWriteError(
                errno.EIO,
                f"descriptor cache: shard {record['path']} changed during the run: {problem}; rerun",
            )
        return shard

    def _shard_problem(self, shard: dict, meta: dict) -> str | None:
        if meta.get("key") != self.key:
            return f"written for another extraction (key {meta.get('key')})"
        if meta.get("sha256") != _shard_digest(shard):
            return "contents do not match the recorded sha256 (corrupt)"
        rows = shard["rows"]
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n or len(shard["vectors"]) != len(rows)):
            return f"rows outside 0..{self.n - 1} or not matching its vectors"
        return None

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
        path = self._write_shard(shard) if self.root is not None else None
        shard["failures"] = json.loads(str(shard.pop("failures_json")))
        # on disk, the shard's arrays are dropped here: finalize reads them back, so they are held only once
        self.shards.append(_record(shard, path) if path is not None else shard)
        self.rows, self.vecs, self.toks, self.failures = [], [], [], {}
        self.flushed_at = time.monotonic()

    def _write_shard(self, shard: dict) -> Path:
        from copybench.io import atomic_output

        meta = {"key": self.key, "sha256": _shard_digest(shard)}
        # unique and ordered: two writers (or a rerun after a kill) never reuse a name
        path = self.root / f"shard-{time.time_ns():020d}-{os.getpid()}.npz"
        try:
            with atomic_output(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **shard, meta_json=np.asarray(json.dumps(meta)))
        except OSError as exc:
            raise _write_error(path, exc) from exc
        return path

    def _allocate(self, name: str, shape: tuple, dtype) -> np.ndarray:
        if self.root is None:
            return np.zeros(shape, dtype=dtype)
        return _reserved_memmap(self.root / name, shape, dtype)

    def finalize(self, paths: list[str], dims: int, tokens: bool) -> Descriptors:
        failed: dict[int, str] = {}
        with_vecs = [s for s in self.shards if len(s["rows"])]
        dims = _shape(with_vecs[0], "vectors")[1] if with_vecs else dims
        vectors = self._allocate("vectors.npy", (self.n, dims), np.float32)
        tok_arr = None
        if tokens and with_vecs:
            t_shape = _shape(with_vecs[0], "tokens")[1:]
            tok_arr = self._allocate("tokens.npy", (self.n, *t_shape), np.float16)
        for record in self.shards:
            failed.update({int(k): v for k, v in record["failures"].items()})
            if len(record["rows"]):
                s = self._shard_arrays(record)  # one shard in RAM at a time
                vectors[s["rows"]] = s["vectors"]
                if tok_arr is not None:
                    tok_arr[s["rows"]] = s["tokens"]
        if self.root is not None:
            self._write_done(vectors, tok_arr, failed)
        return Descriptors(list(paths), vectors, tok_arr, failed)

    def _write_done(self, vectors: np.ndarray, tok_arr: np.ndarray | None, failed: dict[int, str]) -> None:
        from copybench.io import atomic_write_text

        done = {"key": self.key, "n": self.n, "failed": {str(k): v for k, v in failed.items()}}
        done["tokens"] = tok_arr is not None
        for name, arr in (("vectors", vectors), ("tokens", tok_arr)):
            if isinstance(arr, np.memmap):
                arr.flush()
                done[f"{name}_sha256"] = _file_sha256(self.root / f"{name}.npy")
        try:
            atomic_write_text(self.root / "done.json", json.dumps(done))
        except OSError as exc:
            raise _write_error(self.root / "done.json", exc) from exc
        for p in self.root.glob("shard-*.npz"):
            p.unlink()

    def load(self, paths: list[str]) -> Descriptors:
        done = json.loads((self.root / "done.json").read_text())
        vectors = np.load(self.root / "vectors.npy", mmap_mode="r")
        toks = np.load(self.root / "tokens.npy", mmap_mode="r") if done.get("tokens") else None
        return Descriptors(list(paths), vectors, toks, {int(k): v for k, v in done["failed"].items()})


def _record(shard: dict, path: Path) -> dict:
    """What the store keeps of a shard on disk: rows, failures, array shapes and its file, not its arrays."""
    shapes = {k: shard[k].shape for k in ("vectors", "tokens") if k in shard}
    return {"rows": shard["rows"], "failures": shard["failures"], "shapes": shapes, "path": path}


def _shape(shard: dict, name: str) -> tuple:
    return shard["shapes"][name] if "shapes" in shard else shard[name].shape


def _shard_digest(shard: dict) -> str:
    """sha256 over a shard's arrays (names, dtypes, shapes and bytes), so any flipped byte is caught."""
    h = hashlib.sha256()
    for name in sorted(k for k in shard if k not in ("meta_json", "failures")):
        arr = np.ascontiguousarray(shard[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    from copybench.io import file_sha256

    return file_sha256(path)


def _discard(path: Path, problem: str) -> None:
    log.warning("descriptor cache: discarding %s: %s; its descriptors are recomputed", path, problem)
    path.unlink(missing_ok=True)


def _make_dir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(root, exc) from exc


def _write_error(path: Path, exc: OSError) -> CacheWriteError:
    why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return CacheWriteError(
        exc.errno,
        f"descriptor cache: cannot write {path}: {why}; free space, pass another --cache-dir or --no-cache",
    )


def _reserved_memmap(path: Path, shape: tuple, dtype) -> np.ndarray:
    """A writable .npy memmap whose blocks are reserved on disk first: writing into a sparse memmap on a full
    disk kills the process with SIGBUS, while a failed reservation is an ordinary, named error."""
    header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = path.stat().st_size
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL) and _free_bytes(path.parent) > size:
            return header  # the filesystem cannot reserve, but there is room: write as before
        del header
        path.unlink(missing_ok=True)
        raise _write_error(path, exc) from exc
    return header


def _free_bytes(folder: Path) -> int:
    import shutil

    return shutil.disk_usage(folder).free
