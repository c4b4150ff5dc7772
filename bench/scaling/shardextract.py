"""Sharded extraction: each input shard becomes one descriptor shard, written by whoever computed it.

On Ray, a pool of detector actors each takes a whole input shard, reads it (tarfile or Parquet, hashing its bytes
on the way), decodes and runs the detector, and writes the descriptor shard straight into the store; the driver
gets back a few numbers per shard (rows, problems, checksum), never a descriptor, so its memory does not grow
with the training set. Locally the same function runs in this process. Ray Data's ``read_webdataset`` is not
used here on purpose: it streams samples without their shard's checksum or a named truncation, and the store's
unit of work and of invalidation is the shard.

A shard already in the store is reused when the input shard's size and mtime are those recorded; if they
differ its bytes are hashed again, and only when the sha256 differs are its descriptors discarded and
recomputed: a changed shard invalidates its own descriptors and nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from copybench.scaling.descstore import DescriptorStore, shard_id
from copybench.scaling.records import MAX_RETRIES
from copybench.scaling.shards import ShardRef, ShardSamples, read_bytes, read_shard

log = logging.getLogger(__name__)

ERRORS_RETURNED = 20  # problems per shard sent back to the driver; the store's record keeps them all


@dataclass
class ShardExtraction:
    """What the driver keeps of an extraction: per shard a few numbers, the problems it was told of."""

    shards: list[dict] = field(default_factory=list)  # id, uri, rows, sha256 (input), desc_sha256, n_errors
    errors: list[str] = field(default_factory=list)  # at most ERRORS_RETURNED per shard
    computed: int = 0  # shards computed in this call
    reused: int = 0  # shards found done in the store
    changed: list[str] = field(default_factory=list)  # input shards whose bytes changed since extraction
    wall_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def n_errors(self) -> int:
        return sum(s["n_errors"] for s in self.shards)


# ---------------------------------------------------------------------------------------------- runners
class DetectorRunner:
    """Image bytes to descriptors with the Ray engine's detector actor code (same decode, same forward)."""

    def __init__(self, load: dict | None = None, options: dict | None = None, actor=None) -> None:
        self.load, self.options, self._actor = load, options, actor

    @classmethod
    def from_extractor(cls, ext) -> DetectorRunner:
        """This process's runner over a local Extractor (no second model load)."""
        from copybench.decode import make_decoder
        from copybench.scaling.actor import _DetectorActor

        actor = _DetectorActor.__new__(_DetectorActor)
        actor.ext, actor.tokens, actor.worker = ext, False, "local"
        actor.feeder = make_decoder(
            ext.decode, ext.preprocess, device=ext.device, batch_size=ext.batch_size, num_workers=0,
            draft=ext.draft,
        )  # fmt: skip
        return cls(actor=actor)

    def __getstate__(self) -> dict:
        return {"load": self.load, "options": self.options, "_actor": None}

    @property
    def actor(self):
        if self._actor is None:
            from copybench.scaling.actor import _DetectorActor

            self._actor = _DetectorActor(self.load, self.options)
        return self._actor

    def read(self, ref: ShardRef) -> ShardSamples:
        return read_shard(ref)

    def describe(self, s: ShardSamples) -> tuple[np.ndarray, list[str], list[str]]:
        """(descriptors of the decodable samples, their keys, one message per sample that failed)."""
        actor, step = self.actor, self.actor.ext.batch_size
        out, keys, errors = [], [], []
        for start in range(0, len(s.keys), step):
            ks = s.keys[start : start + step]
            batch = {
                "row": np.arange(len(ks)),
                "job": np.zeros(len(ks), dtype=np.int64),
                "path": np.array([f"{s.ref.uri}:{k}" for k in ks], dtype=object),
                "data": np.array(s.data[start : start + step], dtype=object),
                "read_error": np.array([""] * len(ks), dtype=object),
            }
            res = actor(batch)
            ok = res["error"] == ""
            out.append(res["vector"][ok])
            keys += [k for k, good in zip(ks, ok) if good]
            errors += [str(e) for e in res["error"][~ok]]
        dims = actor.ext.detector.spec.dims
        return (np.concatenate(out) if out else np.zeros((0, dims), np.float32)), keys, errors


class SyntheticRunner:
    """Seeded random unit descriptors for ``synthetic://ROWS/NAME`` shards: measures the store, search and
    driver memory at sizes no image set here reaches (no image is read; the figures say so)."""

    def __init__(self, dims: int = 512, seed: int = 0) -> None:
        self.dims, self.seed = dims, seed

    def read(self, ref: ShardRef) -> ShardSamples:
        rows = int(ref.uri.split("://", 1)[1].split("/", 1)[0])
        digest = hashlib.sha256(f"{ref.uri}|{self.seed}".encode()).hexdigest()
        return ShardSamples(ref, keys=[f"{i:08d}" for i in range(rows)], sha256=digest, size=ref.size)

    def describe(self, s: ShardSamples) -> tuple[np.ndarray, list[str], list[str]]:
        rng = np.random.default_rng(int(s.sha256[:15], 16))
        v = rng.standard_normal((len(s.keys), self.dims), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v, list(s.keys), []


def synthetic_shards(total: int, rows_per_shard: int) -> list[ShardRef]:
    """``synthetic://ROWS/NNNNNN`` refs covering ``total`` rows (size = rows, mtime 0: they never change)."""
    return [
        ShardRef(
            f"synthetic://{min(rows_per_shard, total - s)}/{i:06d}",
            "synthetic",
            min(rows_per_shard, total - s),
            0,
        )
        for i, s in enumerate(range(0, total, rows_per_shard))
    ]


# ---------------------------------------------------------------------------------------------- one shard
def process_shard(ref: ShardRef, store: DescriptorStore, runner, dtype: str = "float32") -> dict:
    """Read, describe and store one input shard; the small record the driver keeps (no keys, no vectors)."""
    samples = runner.read(ref)
    vectors, keys, failed = runner.describe(samples)
    errors = [msg for _, msg in samples.errors] + failed
    import os
    import socket

    meta = {
        "writer": f"{socket.gethostname()}:{os.getpid()}",  # the process that computed and wrote it
        "keys": keys,
        "errors": errors,
        "n_errors": len(errors),
        "input": {"uri": ref.uri, "size": ref.size, "mtime_ns": ref.mtime_ns, "sha256": samples.sha256},
    }
    rec = store.write(shard_id(ref.uri), vectors.astype(dtype, copy=False), meta)
    return _summary(rec, errors)


def _summary(rec: dict, errors: list[str]) -> dict:
    return {
        "id": rec["id"],
        "uri": rec["input"]["uri"],
        "rows": rec["rows"],
        "sha256": rec["input"]["sha256"],
        "desc_sha256": rec["sha256"],
        "bytes": rec["bytes"],
        "n_errors": rec["n_errors"],
        "writer": rec["writer"],
        "errors": errors[:ERRORS_RETURNED],
    }


def reusable(ref: ShardRef, store: DescriptorStore, changed: list[str]) -> dict | None:
    """The stored shard's summary when it still describes ``ref``; discards it (and notes why) when not."""
    sid = shard_id(ref.uri)
    rec = store.record(sid)
    if rec is None:
        return None
    was = rec["input"]
    if (was["size"], was["mtime_ns"]) != (ref.size, ref.mtime_ns) and ref.kind != "synthetic":
        now = hashlib.sha256(read_bytes(ref.uri)).hexdigest()
        if now != was["sha256"]:
            changed.append(ref.uri)
            log.warning("%s changed since its descriptors were extracted; recomputing that shard", ref.uri)
            store.discard(sid)
            return None
    return _summary(rec, rec.get("errors", []))


# ---------------------------------------------------------------------------------------------- driver
def extract_shards(
    refs: list[ShardRef],
    store: DescriptorStore,
    runner,
    *,
    engine=None,
    dtype: str = "float32",
    progress: bool = False,
) -> ShardExtraction:
    """Every shard's descriptors in the store: reused when still valid, else computed (Ray actors or here)."""
    from copybench.progress import progress_bar

    t0 = time.perf_counter()
    result, todo = ShardExtraction(), []
    done: dict[str, dict] = {}
    for ref in refs:
        found = reusable(ref, store, result.changed)
        if found is None:
            todo.append(ref)
        else:
            done[ref.uri] = found
    result.reused, result.computed = len(done), len(todo)
    with progress_bar("descriptor shards", len(todo), progress) as bar:
        for summary in _compute(todo, store, runner, engine, dtype):
            done[summary["uri"]] = summary
            bar.advance()
    for ref in refs:
        s = done[ref.uri]
        result.errors += s.pop("errors")
        result.shards.append(s)
    result.wall_s = time.perf_counter() - t0
    return result


def _compute(todo: list[ShardRef], store: DescriptorStore, runner, engine, dtype: str):
    """Summaries of the computed shards as they finish (in this process, or from a pool of Ray actors)."""
    if engine is None or not todo:
        for ref in todo:
            yield process_shard(ref, store, runner, dtype)
        return
    import ray
    from ray.util import ActorPool

    engine.connect()
    device = str((getattr(runner, "options", None) or {}).get("device", "cpu"))
    n, gpu = min(len(todo), engine.n_workers(device)), device.startswith("cuda")
    cls = ray.remote(_ShardWorker).options(
        num_cpus=0 if gpu else engine.cpus_per_worker,
        num_gpus=1 if gpu else 0,
        max_restarts=MAX_RETRIES,
        max_task_retries=MAX_RETRIES,  # a worker killed mid-shard: the shard is redone on its restart
    )
    pool = ActorPool([cls.remote(runner, store, dtype) for _ in range(n)])
    yield from pool.map_unordered(lambda a, ref: a.run.remote(ref), todo)


class _ShardWorker:
    """A Ray actor holding one detector (built once) that turns whole input shards into descriptor shards."""

    def __init__(self, runner, store: DescriptorStore, dtype: str) -> None:
        self.runner, self.store, self.dtype = runner, store, dtype

    def run(self, ref: ShardRef) -> dict:
        return process_shard(ref, self.store, self.runner, self.dtype)


def duplicate_keys(store: DescriptorStore, shard_ids: list[str], limit: int = 100) -> tuple[int, list[str]]:
    """Keys found in more than one shard: (count, up to ``limit`` messages naming key and shards). Reads the
    records one at a time and keeps 8 bytes per key (a hash), then names the duplicates in a second pass."""
    hashes = []
    for sid in shard_ids:
        keys = (store.record(sid) or {}).get("keys", [])
        hashes.append(np.array([_key_hash(k) for k in keys], dtype=np.uint64))
    allh = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    owner = np.repeat(np.arange(len(hashes)), [len(h) for h in hashes])
    order = np.argsort(allh, kind="stable")
    dup = allh[order][1:] == allh[order][:-1]
    dup_hashes = set(allh[order][1:][dup].tolist())
    if not dup_hashes:
        return 0, []
    seen: dict[str, list[str]] = {}
    for j in sorted(set(owner[np.isin(allh, list(dup_hashes))].tolist())):
        for k in store.record(shard_ids[j])["keys"]:
            if _key_hash(k) in dup_hashes:
                seen.setdefault(k, []).append(shard_ids[j])
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    msgs = [f"duplicate key {k!r} in shards {', '.join(v)}" for k, v in sorted(dups.items())[:limit]]
    return len(dups), msgs


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
