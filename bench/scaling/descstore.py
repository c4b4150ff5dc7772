"""The descriptor store of sharded extraction: one checksummed descriptor shard per input shard.

Writers (detector actors, or this process) put ``<id>.npy`` (the descriptors, one row per readable sample) and
``<id>.json`` (its sha256, the sample keys, the problems, the input shard's uri, size, mtime and sha256) into
``ROOT/<key>/``, where ROOT is a folder or a URI pyarrow's filesystems write and ``key`` names the detector and
its settings. Each file is written under a dot-name and moved into place, the JSON last, so a reader sees a
shard whole or not at all, and a writer killed half-way leaves nothing that counts as done. The driver never
holds descriptors: it asks which shards are done and hands ids to search tasks, which read the shards themselves
and check their sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

STORE_VERSION = 1


class StoreError(RuntimeError):
    """A descriptor shard that does not match its own checksum or record (named; it is recomputed)."""


def shard_id(uri: str) -> str:
    """A file-safe id for an input shard: its readable name plus a hash of the full URI (names may repeat)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.rstrip("/").rsplit("/", 1)[-1])[-60:]
    return f"{name}-{hashlib.sha1(uri.encode()).hexdigest()[:10]}"


class DescriptorStore:
    """``ROOT/<key>/`` on a local or pyarrow filesystem; picklable (tasks rebuild the filesystem from ``root``)."""

    def __init__(self, root: str | Path, key: str) -> None:
        self.root, self.key = str(root), key
        self._fs = None

    def __getstate__(self) -> dict:
        return {"root": self.root, "key": self.key}

    def __setstate__(self, state: dict) -> None:
        self.root, self.key, self._fs = state["root"], state["key"], None

    @property
    def fs_path(self):
        """(pyarrow filesystem, folder path in it), the folder created on first use."""
        if self._fs is None:
            import pyarrow.fs

            if "://" in self.root:
                fs, base = pyarrow.fs.FileSystem.from_uri(self.root)
            else:
                fs, base = pyarrow.fs.LocalFileSystem(), str(Path(self.root).expanduser().resolve())
            folder = f"{base.rstrip('/')}/{self.key}"
            fs.create_dir(folder, recursive=True)
            self._fs = (fs, folder)
        return self._fs

    def _put(self, name: str, data: bytes) -> None:
        fs, folder = self.fs_path
        sub, _, base = name.rpartition("/")
        if sub:
            fs.create_dir(f"{folder}/{sub}", recursive=True)
        tmp = f"{folder}/{sub + '/' if sub else ''}.{base}.part"
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, f"{folder}/{name}")

    def _get(self, name: str) -> bytes | None:
        fs, folder = self.fs_path
        try:
            with fs.open_input_stream(f"{folder}/{name}") as f:
                return f.readall()
        except (FileNotFoundError, OSError):
            return None

    def write(self, sid: str, vectors: np.ndarray, meta: dict) -> dict:
        """Store one descriptor shard (vectors (n, D)) and its record; returns the record without the keys."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(vectors), allow_pickle=False)
        data = buf.getvalue()
        record = {
            "version": STORE_VERSION,
            "id": sid,
            "rows": len(vectors),
            "dims": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
            "dtype": str(vectors.dtype),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            **meta,
        }
        self._put(f"{sid}.npy", data)
        self._put(f"{sid}.json", json.dumps(record).encode())  # last: its presence means the shard is done
        return {k: v for k, v in record.items() if k not in ("keys", "errors")}

    def record(self, sid: str) -> dict | None:
        """A shard's record, or None when it is not done (or its record is unreadable)."""
        raw = self._get(f"{sid}.json")
        if raw is None:
            return None
        try:
            rec = json.loads(raw)
        except ValueError:
            log.warning(
                "descriptor store %s: unreadable record %s.json; recomputing that shard", self.root, sid
            )
            return None
        return rec if rec.get("version") == STORE_VERSION else None

    def read(self, sid: str, sha256: str | None = None) -> np.ndarray:
        """A shard's descriptors, checked against its record's sha256 (and ``sha256`` when given)."""
        rec = self.record(sid)
        data = self._get(f"{sid}.npy")
        if rec is None or data is None:
            raise StoreError(f"descriptor store {self.root}/{self.key}: shard {sid} is missing")
        digest = hashlib.sha256(data).hexdigest()
        if digest != rec["sha256"] or (sha256 is not None and digest != sha256):
            raise StoreError(
                f"descriptor store {self.root}/{self.key}: shard {sid} does not match its checksum "
                f"({digest[:12]} != {rec['sha256'][:12]})"
            )
        return np.load(io.BytesIO(data), allow_pickle=False)

    def discard(self, sid: str) -> None:
        """Remove a shard (its record first, so it stops counting as done before its data goes)."""
        fs, folder = self.fs_path
        for name in (f"{sid}.json", f"{sid}.npy"):
            try:
                fs.delete_file(f"{folder}/{name}")
            except (FileNotFoundError, OSError):
                pass

    def put_blob(self, name: str, data: bytes) -> None:
        """Any other file of the store (search partials), written whole or not at all."""
        self._put(name, data)

    def get_blob(self, name: str) -> bytes | None:
        return self._get(name)
