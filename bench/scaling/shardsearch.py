"""Resumable exact search over a descriptor store: every (query block, reference shard) pair is one stored
partial top-k.

One task per reference shard reads that shard from the store itself (checking its sha256), computes the top-k
of each query block still missing against it and writes each partial as it finishes; the driver only lists
which partials exist and merges them, block by block, in shard order (earlier shards win exact ties, as in one
process). A scan killed at any point (driver or workers, even ``kill -9``) keeps every finished partial; the
rerun computes only the missing pairs and merges the same lists in the same order, so its result equals an
uninterrupted run's. A partial's name carries its reference shard's descriptor checksum, so a re-extracted
shard makes only its own pairs stale.

Matches are global ids ``shard_index << 32 | row``: the driver needs no per-row table to name a match.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

import numpy as np

from copybench.retrieval import merge_topk
from copybench.scaling.descstore import DescriptorStore, StoreError
from copybench.scaling.records import MAX_RETRIES

log = logging.getLogger(__name__)

QUERY_BLOCK = 4096  # queries per block: one partial file per (block, shard)


@dataclass
class SearchStats:
    """How the search went: (query block, shard) pairs in all, computed now, found finished."""

    pairs: int = 0
    computed: int = 0
    reused: int = 0


def gid(shard_index: int | np.ndarray, row: int | np.ndarray):
    """A match's global id: its shard's position in the shard list and its row in that shard."""
    return (np.int64(shard_index) << 32) | np.int64(row)


def split_gid(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(g, dtype=np.int64)
    return g >> 32, g & 0xFFFFFFFF


def search_tag(queries: np.ndarray, k: int, what: str = "cosine") -> str:
    """Names one search: its query vectors, k and scoring (a partial of another search is never used)."""
    h = hashlib.sha256(np.ascontiguousarray(queries, dtype=np.float32).tobytes())
    h.update(f"|{k}|{what}|{QUERY_BLOCK}".encode())
    return h.hexdigest()[:16]


def partial_name(tag: str, block: int, shard: dict) -> str:
    return f"search-{tag}/q{block:05d}-{shard['id']}-{shard['desc_sha256'][:12]}.npz"


def _pack(s: np.ndarray, i: np.ndarray) -> bytes:
    check = hashlib.sha256(s.tobytes() + i.tobytes()).hexdigest()
    buf = io.BytesIO()
    np.savez(buf, s=s, i=i, check=np.array(check))
    return buf.getvalue()


def _unpack(data: bytes | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A partial's arrays, or None when it is absent or does not match its own checksum."""
    if data is None:
        return None
    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
        s, i, check = z["s"], z["i"], str(z["check"])
    except (ValueError, KeyError, OSError, EOFError):
        return None
    return (s, i) if hashlib.sha256(s.tobytes() + i.tobytes()).hexdigest() == check else None


# ---------------------------------------------------------------------------------------------- tasks
def search_shard_blocks(
    store: DescriptorStore, shard: dict, queries: np.ndarray, blocks: list[int], k: int, tag: str, device: str
) -> int:
    """One search task: the missing query blocks of one reference shard, each partial stored as it is done."""
    from copybench.retrieval import search

    try:
        ref = np.ascontiguousarray(store.read(shard["id"], shard["desc_sha256"]), dtype=np.float32)
    except StoreError as exc:  # never searched; discarded so that the next run extracts that shard again
        store.discard(shard["id"])
        raise StoreError(f"{exc}; discarded: rerun to extract that shard again") from exc
    for b in blocks:
        q = np.ascontiguousarray(queries[b * QUERY_BLOCK : (b + 1) * QUERY_BLOCK], dtype=np.float32)
        s, i = search(q, ref, min(k, max(len(ref), 1)), device=device) if len(ref) else _empty(len(q), k)
        s, i = _pad(s, i, k)
        store.put_blob(partial_name(tag, b, shard), _pack(s.astype(np.float32), i.astype(np.int64)))
    return len(blocks)


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)


def _pad(s: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if s.shape[1] >= k:
        return s, i
    es, ei = _empty(len(s), k - s.shape[1])
    return np.concatenate([s, es], axis=1), np.concatenate([i, ei], axis=1)


# ---------------------------------------------------------------------------------------------- driver
def search_store(
    queries: np.ndarray,
    store: DescriptorStore,
    shards: list[dict],
    k: int,
    *,
    engine=None,
    device: str = "cpu",
    progress: bool = False,
    tag: str | None = None,
) -> tuple[np.ndarray, np.ndarray, SearchStats]:
    """Exact top-k of ``queries`` over every shard in ``shards`` (ids and descriptor checksums), resumable.

    Returns (scores (Q, k) float32, global ids (Q, k) int64, stats), padded with -inf / -1.
    """
    tag = tag or search_tag(queries, k)
    n_blocks = -(-len(queries) // QUERY_BLOCK)
    stats = SearchStats(pairs=n_blocks * len(shards))
    todo = []
    for shard in shards:
        missing = [b for b in range(n_blocks) if _unpack(store.get_blob(partial_name(tag, b, shard))) is None]
        stats.reused += n_blocks - len(missing)
        if missing:
            todo.append((shard, missing))
    stats.computed = sum(len(m) for _, m in todo)
    _run_tasks(todo, store, queries, k, tag, device, engine, progress)
    return (*_merge(store, shards, tag, n_blocks, len(queries), k, stats), stats)


def _run_tasks(todo, store, queries, k: int, tag: str, device: str, engine, progress: bool) -> None:
    from copybench.progress import progress_bar

    with progress_bar("search: reference shards", len(todo), progress) as bar:
        if engine is None:
            for shard, blocks in todo:
                search_shard_blocks(store, shard, queries, blocks, k, tag, device)
                bar.advance()
            return
        import ray

        engine.connect()
        task = ray.remote(search_shard_blocks).options(
            num_gpus=1 if str(device).startswith("cuda") else 0, num_cpus=1, max_retries=MAX_RETRIES
        )
        q_ref, window, pending = (
            ray.put(np.ascontiguousarray(queries, np.float32)),
            2 * engine.n_workers(device),
            [],
        )
        for shard, blocks in todo:
            pending.append(task.remote(store, shard, q_ref, blocks, k, tag, device))
            if len(pending) >= window:  # bounded in flight: the driver holds a handful of refs, not the store
                ready, pending = ray.wait(pending, num_returns=1)
                ray.get(ready)
                bar.advance()
        for ref in pending:
            ray.get(ref)
            bar.advance()


def _merge(store, shards, tag: str, n_blocks: int, n_q: int, k: int, stats: SearchStats):
    """Each block's partials merged in shard order (the order one process would meet them in)."""
    scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    ids = np.full((n_q, k), -1, dtype=np.int64)
    for b in range(n_blocks):
        sl = slice(b * QUERY_BLOCK, (b + 1) * QUERY_BLOCK)
        best_s, best_i = scores[sl], ids[sl]
        for j, shard in enumerate(shards):
            part = _unpack(store.get_blob(partial_name(tag, b, shard)))
            if part is None:  # it was there when listed: the store changed under this search
                raise RuntimeError(
                    f"search partial {partial_name(tag, b, shard)} vanished or was damaged during the search; "
                    "rerun to recompute it (finished partials are kept)"
                )
            s, i = part
            best_s, best_i = merge_topk(best_s, best_i, s, np.where(i >= 0, gid(j, i), -1), k)
        scores[sl], ids[sl] = best_s, best_i
    return scores, ids
