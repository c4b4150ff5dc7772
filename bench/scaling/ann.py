"""Opt-in approximate search for training sets too large to scan exactly: a faiss IVF index (IVF-Flat, or IVF-PQ
at a few bytes per image) built from the descriptor store, shard by shard.

An ANN miss is a replication nobody sees, so an ANN scan is never reported alone: on a seeded sample of the
generated images the exact search runs as well (the resumable store search), and the summary carries the
recall@k of the index against it and the replication rate on that sample under both searches, side by side.
Exact search stays the default.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from copybench.scaling.shardscan import baseline_sample, gather_rows
from copybench.scaling.shardsearch import gid, search_store

log = logging.getLogger(__name__)

ANN_INDEXES = ("ivf-flat", "ivf-pq")


@dataclass(frozen=True)
class AnnOptions:
    """The index and how it is checked: ``nlist`` lists (default 4 sqrt(N)), ``nprobe`` searched, ``pq_m``
    bytes per vector for IVF-PQ, ``train_rows`` the k-means sample (default 40 per list), ``sample`` generated
    images also searched exactly."""

    index: str = "ivf-flat"
    nlist: int | None = None
    nprobe: int = 16
    pq_m: int = 32
    train_rows: int | None = None
    sample: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index not in ANN_INDEXES:
            raise ValueError(f"--ann must be one of {', '.join(ANN_INDEXES)}, got {self.index!r}")
        if self.nprobe < 1 or self.sample < 1 or (self.nlist is not None and self.nlist < 1):
            raise ValueError("--ann-nprobe, --ann-nlist and --ann-sample must be at least 1")


def build_index(store, shards: list[dict], opts: AnnOptions):
    """The IVF index over every training descriptor, ids = global ids; trained on a seeded sample."""
    import faiss

    total = sum(s["rows"] for s in shards)
    nlist = opts.nlist or max(1, int(4 * np.sqrt(total)))
    nlist = min(nlist, total)
    train_ids = baseline_sample(shards, opts.train_rows or 40 * nlist, opts.seed)
    train = gather_rows(store, shards, train_ids)
    d = train.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    if opts.index == "ivf-pq":
        if d % opts.pq_m:
            raise ValueError(f"--ann-pq-m {opts.pq_m} must divide the descriptor size {d}")
        index = faiss.IndexIVFPQ(quantizer, d, nlist, opts.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    for j, s in enumerate(shards):
        v = np.ascontiguousarray(store.read(s["id"], s["desc_sha256"]), dtype=np.float32)
        index.add_with_ids(v, gid(j, np.arange(len(v))).astype(np.int64))
    index.nprobe = min(opts.nprobe, nlist)
    return index, nlist, len(train_ids)


def recall_at_k(ann_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of the share of the exact top-k (real ids only) that the index also returned."""
    hits = []
    for a, e in zip(ann_ids, exact_ids):
        want = set(e[e >= 0].tolist())
        if want:
            hits.append(len(want & set(a[a >= 0].tolist())) / len(want))
    return float(np.mean(hits)) if hits else float("nan")


def ann_scan(
    q: np.ndarray, store, shards: list[dict], k: int, opts: AnnOptions, thr: float, rule: str, engine
):
    """(scores, global ids, the check): the index's top-k for every query, checked on a sample against exact."""
    from copybench.scan.pipeline import _rate

    index, nlist, n_train = build_index(store, shards, opts)
    s, i = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
    s = np.where(i >= 0, s, -np.inf).astype(np.float32)
    rng = np.random.default_rng(opts.seed)
    sample = np.sort(rng.choice(len(q), size=min(opts.sample, len(q)), replace=False))
    es, ei, _ = search_store(q[sample], store, shards, k, engine=engine)
    info = {
        "index": opts.index,
        "options": asdict(opts),
        "nlist": nlist,
        "trained_on": n_train,
        "sample": {"n": len(sample), "of": len(q), "seed": opts.seed},
        "recall_at_k": recall_at_k(i[sample], ei),
        "k": k,
        "replication_rate_sample": {
            "ann": _rate(s[sample, 0], thr, rule),
            "exact": _rate(es[:, 0], thr, rule),
        },
        "note": "approximate search: the replication rate of the whole scan comes from the index; the exact "
        "search's rate on the sample is beside it",
    }
    log.info("ANN %s: recall@%d %.4f on %d sampled queries", opts.index, k, info["recall_at_k"], len(sample))
    return s, i, info
