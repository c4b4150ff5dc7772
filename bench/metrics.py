"""Retrieval metrics for copy detection, each defined exactly (docs/PROTOCOLS.md, "Metrics") and vectorised.

Input contract, as produced by the harness from a top-k search:

- ``scores``: float array (Q, k), each row the similarities of that query's top-k references in rank order;
  padding slots (fewer than k results) hold -inf or NaN.
- ``hits``: bool array (Q, k), True where the retrieved reference is a ground-truth positive of the query.
  A padding slot must not be a hit.
- ``n_pos``: int array (Q,), the number of ground-truth positives of each query in the WHOLE reference set
  (0 marks a distractor query). Positives not retrieved in the top k count as never retrieved.

Ties are ordered pessimistically everywhere (negatives before positives among equal scores), so a constant
score cannot game any metric. Functions that take ``hits`` alone (recall@k, precision@k, MRR) trust the
given rank order; ``evaluate`` hands them rows already re-sorted that way.

Means over queries (mAP, recall@k, precision@k, MRR) average only queries with ``n_pos > 0``; they are NaN
when there is none (``evaluate`` writes None). The exceptions say so: ``mrr_all`` averages over every query
(the study's code), ``recall_at_rank_pairs`` counts ground-truth pairs (the ISC 2021 evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = [
    "ap_revisitop",
    "ap_standard",
    "bootstrap_ci",
    "evaluate",
    "micro_ap",
    "mrr",
    "mrr_all",
    "pr_curve",
    "precision_at_k",
    "precision_at_k_capped",
    "precision_at_k_revisitop",
    "recall_at_k",
    "recall_at_k_fraction",
    "recall_at_precision",
    "recall_at_rank_pairs",
]

RANKS = (1, 5, 10)  # the k of every @k metric in ``evaluate``
_BOOT_CHUNK = 100  # bootstrap resamples drawn and scored together; bounds memory at about 100 * Q floats


class _Rows(NamedTuple):
    """Per-query rows re-sorted on (-score, hit); padding moved to the end with hit False."""

    scores: np.ndarray
    hits: np.ndarray
    valid: np.ndarray


class _Pool(NamedTuple):
    """All valid predictions of all queries in one pessimistic ranking."""

    query: np.ndarray
    score: np.ndarray
    hit: np.ndarray


# --- input handling -------------------------------------------------------------------------------


def _check(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray) -> tuple[np.ndarray, ...]:
    scores = np.asarray(scores, dtype=np.float64)
    hits = np.asarray(hits)
    n_pos = np.asarray(n_pos)
    if scores.ndim != 2 or hits.shape != scores.shape:
        raise ValueError(
            f"scores and hits must be (Q, k) arrays of one shape, got {scores.shape}, {hits.shape}"
        )
    _check_hits(hits, n_pos)
    valid = _valid(scores)
    if (hits & ~valid).any():
        raise ValueError("a padding slot (score -inf or NaN) is marked as a hit")
    return scores, hits, n_pos


def _check_hits(hits: np.ndarray, n_pos: np.ndarray) -> None:
    if hits.dtype != np.bool_ or hits.ndim != 2:
        raise ValueError(f"hits must be a 2-D bool array, got {hits.dtype} {hits.shape}")
    if n_pos.shape != (hits.shape[0],) or not np.issubdtype(n_pos.dtype, np.integer):
        raise ValueError(
            f"n_pos must be an int array of shape ({hits.shape[0]},), got {n_pos.dtype} {n_pos.shape}"
        )
    if (n_pos < 0).any():
        raise ValueError("n_pos must be non-negative")
    if (hits.sum(axis=1) > n_pos).any():
        raise ValueError("a query has more retrieved positives than n_pos")


def _valid(scores: np.ndarray) -> np.ndarray:
    return ~(np.isnan(scores) | np.isneginf(scores))


def _sort_rows(scores: np.ndarray, hits: np.ndarray) -> _Rows:
    # Re-sort rather than trust the input order: among equal scores a negative must come before a
    # positive (pessimistic), otherwise a detector returning a constant score could be ranked by luck or
    # by id order. lexsort is stable; keys are (hit, -score), last key primary, padding keyed +inf.
    valid = _valid(scores)
    key = np.where(valid, -scores, np.inf)
    order = np.lexsort((hits, key), axis=-1)
    return _Rows(*(np.take_along_axis(a, order, axis=1) for a in (scores, hits & valid, valid)))


def _pool(scores: np.ndarray, hits: np.ndarray) -> _Pool:
    # Same pessimistic rule across queries: equal scores put negatives first (see _sort_rows).
    valid = _valid(scores)
    query = np.nonzero(valid)[0]
    score, hit = scores[valid], hits[valid]
    order = np.lexsort((hit, -score))
    return _Pool(query[order], score[order], hit[order])


def _per_query_ap(value: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_pos > 0, value / n_pos, np.nan)


# --- per-query AP ---------------------------------------------------------------------------------


def _ap_revisitop_sorted(hits: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    query, rank = np.nonzero(hits)  # row-major: each query's positives in rank order
    j = np.arange(query.size) - np.searchsorted(query, query)  # 0-based index of the positive in its row
    p0 = np.where(rank == 0, 1.0, j / np.maximum(rank, 1))
    p1 = (j + 1.0) / (rank + 1.0)
    return _per_query_ap(np.bincount(query, weights=(p0 + p1) / 2.0, minlength=hits.shape[0]), n_pos)


def ap_revisitop(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """Per-query AP, revisitop variant (trapezoid of p0 = j/r, p1 = (j+1)/(r+1)); NaN where n_pos == 0."""
    scores, hits, n_pos = _check(scores, hits, n_pos)
    return _ap_revisitop_sorted(_sort_rows(scores, hits).hits, n_pos)


def _group_end(rows: _Rows) -> np.ndarray:
    """(Q, k) index of the last item of each item's tie group (equal scores) in its re-sorted row."""
    q, k = rows.hits.shape
    nxt = np.concatenate([rows.scores[:, 1:], np.full((q, 1), np.nan)], axis=1)
    nxt_valid = np.concatenate([rows.valid[:, 1:], np.zeros((q, 1), bool)], axis=1)
    is_end = rows.valid & (~nxt_valid | (rows.scores != nxt))
    end_at = np.where(is_end, np.arange(k), k - 1)
    return np.minimum.accumulate(end_at[:, ::-1], axis=1)[:, ::-1]


def _ap_standard_sorted(rows: _Rows, n_pos: np.ndarray) -> np.ndarray:
    # sklearn steps once per distinct score: every positive of a tie group gets the precision measured
    # at the END of its group (all tied items included), so tie order inside a group does not matter.
    group_end = _group_end(rows)
    tp = np.cumsum(rows.hits, axis=1)
    prec_end = np.take_along_axis(tp, group_end, axis=1) / (group_end + 1.0)
    return _per_query_ap(np.where(rows.hits, prec_end, 0.0).sum(axis=1), n_pos)


def ap_standard(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """Per-query AP as sklearn average_precision_score, recall over n_pos; NaN where n_pos == 0."""
    scores, hits, n_pos = _check(scores, hits, n_pos)
    return _ap_standard_sorted(_sort_rows(scores, hits), n_pos)


# --- pooled metrics -------------------------------------------------------------------------------


def _micro_ap_pool(hit: np.ndarray, n_gt: int) -> float:
    if n_gt == 0:
        return float("nan")
    precision = np.cumsum(hit) / np.arange(1.0, hit.size + 1.0)
    # recall rises by 1/n_gt at each positive and not at all at a negative
    return float(precision[hit].sum() / n_gt)


def micro_ap(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray) -> float:
    """ISC 2021 micro-AP over all pooled predictions, N_gt = n_pos.sum(); NaN when N_gt == 0."""
    scores, hits, n_pos = _check(scores, hits, n_pos)
    return _micro_ap_pool(_pool(scores, hits).hit, int(n_pos.sum()))


def _pr_pool(pool: _Pool, n_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.cumsum(pool.hit)
    precision = tp / np.arange(1.0, tp.size + 1.0)
    recall = tp / n_gt if n_gt > 0 else np.full(tp.size, np.nan)
    return precision, recall, pool.score


def pr_curve(
    scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds), one point per pooled prediction in micro-AP order."""
    scores, hits, n_pos = _check(scores, hits, n_pos)
    return _pr_pool(_pool(scores, hits), int(n_pos.sum()))


def _recall_at_precision_pool(pool: _Pool, n_gt: int, precision: float) -> tuple[float, float]:
    if n_gt == 0:
        return float("nan"), float("nan")
    tp = np.cumsum(pool.hit)
    ok = tp >= precision * np.arange(1.0, tp.size + 1.0)
    if not ok.any():  # as the ISC evaluation: no operating point, so no recall (not a recall of 0)
        return float("nan"), float("nan")
    # First prefix with the most positives among qualifying ones. It ends on a positive that, with
    # pessimistic ties, closes its tie group, so "score >= threshold" selects exactly this prefix; a
    # prefix cut inside a tie group never beats the group's end (its extra items are all positives).
    best = int(np.argmax(np.where(ok, tp, -1)))
    return float(tp[best] / n_gt), float(pool.score[best])


def recall_at_precision(
    scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray, precision: float = 0.9
) -> tuple[float, float]:
    """Largest pooled recall at a prefix with precision >= target, and its threshold (NaN, NaN if none)."""
    scores, hits, n_pos = _check(scores, hits, n_pos)
    return _recall_at_precision_pool(_pool(scores, hits), int(n_pos.sum()), precision)


# --- rank metrics ---------------------------------------------------------------------------------


def _mean_over_matched(values: np.ndarray, n_pos: np.ndarray) -> float:
    has = n_pos > 0
    return float(values[has].mean()) if has.any() else float("nan")


def recall_at_k(hits: np.ndarray, n_pos: np.ndarray, k: int) -> float:
    """Hit rate: fraction of queries with a match having a positive in the top min(k, hits.shape[1]) ranks."""
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    return _mean_over_matched(hits[:, :k].any(axis=1), n_pos)


def recall_at_k_fraction(hits: np.ndarray, n_pos: np.ndarray, k: int) -> float:
    """The study's recall@k: mean over queries with a match of (positives in the top k) / n_pos."""
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _mean_over_matched(hits[:, :k].sum(axis=1) / n_pos, n_pos)


def _recall_pairs_sorted(rows: _Rows, n_pos: np.ndarray, k: int) -> float:
    # ISC ranks a ground-truth pair by how many of the query's predictions score >= it, minus one: the
    # end of its tie group, so tied predictions all count against it.
    n_gt = int(n_pos.sum())
    if n_gt == 0:
        return float("nan")
    return float((rows.hits & (_group_end(rows) < k)).sum() / n_gt)


def recall_at_rank_pairs(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray, k: int) -> float:
    """ISC 2021 recall at rank k: ground-truth pairs whose rank (predictions scoring >= it, minus 1) < k."""
    scores, hits, n_pos = _check(scores, hits, n_pos)
    return _recall_pairs_sorted(_sort_rows(scores, hits), n_pos, k)


def precision_at_k(hits: np.ndarray, n_pos: np.ndarray, k: int) -> float:
    """Textbook precision@k: positives in the top k over k (unfilled ranks count as misses)."""
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    return _mean_over_matched(hits[:, :k].sum(axis=1) / k, n_pos)


def precision_at_k_capped(hits: np.ndarray, n_pos: np.ndarray, k: int) -> float:
    """Precision@k capped at the number of positives: positives in the top k over min(k, n_pos).

    Neither textbook precision nor revisitop's (which caps at the rank of the last positive, see
    :func:`precision_at_k_revisitop`); a query with fewer than k positives can still reach 1.
    """
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    return _mean_over_matched(hits[:, :k].sum(axis=1) / np.maximum(np.minimum(k, n_pos), 1), n_pos)


def precision_at_k_revisitop(hits: np.ndarray, n_pos: np.ndarray, k: int) -> float:
    """Revisitop's (and the study's) precision@k: with kq = min(k, 1-based rank of the last retrieved
    positive), positives ranked <= kq over kq; 0 for a query with no positive retrieved."""
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    width = hits.shape[1]
    last = width - np.argmax(hits[:, ::-1], axis=1)  # 1-based rank of the last positive in the row
    kq = np.minimum(last, k)
    found = np.cumsum(hits, axis=1)[np.arange(hits.shape[0]), np.clip(kq, 1, width) - 1]
    return _mean_over_matched(np.where(hits.any(axis=1), found / kq, 0.0), n_pos)


def _reciprocal_ranks(hits: np.ndarray) -> np.ndarray:
    return np.where(hits.any(axis=1), 1.0 / (np.argmax(hits, axis=1) + 1.0), 0.0)


def mrr(hits: np.ndarray, n_pos: np.ndarray) -> float:
    """Mean reciprocal rank of the first positive (0 when none in the top k) over queries with a match."""
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    return _mean_over_matched(_reciprocal_ranks(hits), n_pos)


def mrr_all(hits: np.ndarray, n_pos: np.ndarray) -> float:
    """The study's MRR: reciprocal rank of the first positive summed over queries with a match, divided by
    ALL queries (a distractor query counts 0); NaN when there is no query."""
    hits, n_pos = np.asarray(hits), np.asarray(n_pos)
    _check_hits(hits, n_pos)
    return float(_reciprocal_ranks(hits).mean()) if hits.shape[0] else float("nan")


# --- bootstrap ------------------------------------------------------------------------------------


def _draw_counts(rng: np.random.Generator, n_queries: int, n: int) -> np.ndarray:
    """(n, n_queries) multiplicities of n resamples of n_queries rows drawn with replacement."""
    idx = rng.integers(0, n_queries, size=(n, n_queries)) + np.arange(n)[:, None] * n_queries
    return np.bincount(idx.ravel(), minlength=n * n_queries).reshape(n, n_queries)


def bootstrap_ci(
    fn: Callable[[np.ndarray], np.ndarray],
    n_queries: int,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> np.ndarray:
    """Percentile bootstrap over queries: fn maps (B, n_queries) resample counts to B values -> [lo, hi]."""
    # fn gets multiplicities, not index lists, so statistics can be computed as weighted sums in bulk;
    # fn may return (B, S) for S statistics sharing the same resamples, giving a (2, S) result.
    rng = np.random.default_rng(seed)
    stats = [
        np.asarray(fn(_draw_counts(rng, n_queries, min(_BOOT_CHUNK, n_boot - start))), dtype=np.float64)
        for start in range(0, n_boot, _BOOT_CHUNK)
    ]
    stats = np.concatenate(stats, axis=0)
    flat = stats.reshape(stats.shape[0], -1)
    ci = np.array([_percentiles(col, alpha) for col in flat.T]).T
    return ci.reshape((2,) + stats.shape[1:])


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float, float]:
    # A resample can leave a statistic undefined (e.g. no query with a match); such draws are dropped.
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _boot_map(ap: np.ndarray, counts: np.ndarray) -> np.ndarray:
    has = ~np.isnan(ap)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (counts @ np.where(has, ap, 0.0)) / (counts @ has.astype(np.float64))


def _micro_ap_resampler(pool: _Pool, n_pos: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Function mapping (B, Q) resample counts to the exact micro-AP of each resample."""
    # A query drawn c times contributes c adjacent copies of each of its predictions. Inserting the
    # copies next to the original keeps the pooled order pessimistic, so the sort is done once. Only
    # positives change recall; each needs the weighted count of predictions up to it: a cumulative sum
    # over "segments" (the predictions after the previous positive, up to this one), i.e. a sparse
    # (positives x queries) membership matrix times the counts, built once for all resamples.
    from scipy import sparse  # scipy ships with scikit-learn; imported here to keep `import copybench` fast

    n_pos = n_pos.astype(np.float64)
    pos = np.flatnonzero(pool.hit)
    n = pos[-1] + 1 if pos.size else 0  # predictions after the last positive change nothing
    # float32 halves the memory traffic and is exact while every segment sum stays below 2**24
    per_query = np.bincount(pool.query[:n], minlength=n_pos.size).max(initial=0)
    dtype = np.float32 if n_pos.size * per_query < 2**24 else np.float64
    ones = np.ones(n, dtype)
    member = sparse.csr_matrix(
        (ones, (np.searchsorted(pos, np.arange(n)), pool.query[:n])), (pos.size, n_pos.size)
    )
    pos_query = pool.query[pos]

    def resample(counts: np.ndarray) -> np.ndarray:
        n_gt = counts @ n_pos
        seen = np.cumsum((member @ np.ascontiguousarray(counts.T, dtype=dtype)).astype(np.float64), axis=0)
        c = counts[:, pos_query].T.astype(np.float64)
        tp = np.cumsum(c, axis=0)
        total = _copies_precision_sum(tp - c, seen - c, c).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n_gt > 0, total / n_gt, np.nan)

    return resample


def _copies_precision_sum(tp_before: np.ndarray, seen_before: np.ndarray, c: np.ndarray) -> np.ndarray:
    """sum_{m=1..c} (tp_before + m) / (seen_before + m): precisions at the c copies of one positive."""
    out = np.where(c >= 1, (tp_before + 1.0) / (seen_before + 1.0), 0.0)
    a, b, cf, flat = tp_before.ravel(), seen_before.ravel(), c.ravel(), out.ravel()
    idx, m = np.flatnonzero(cf >= 2), 2
    while idx.size:  # about max(c) ~ 10 rounds over a shrinking index set (c >= 2 for ~26 % of entries)
        flat[idx] += (a[idx] + m) / (b[idx] + m)
        idx = idx[cf[idx] > m]
        m += 1
    return out


# --- evaluate -------------------------------------------------------------------------------------


class _Prepared(NamedTuple):
    hits: np.ndarray
    n_pos: np.ndarray
    ap_rv: np.ndarray
    ap_std: np.ndarray
    pool: _Pool
    pair_rank: np.ndarray  # ISC's rank of each hit (end of its tie group); int64 max for non-hits


def _prepare(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray) -> _Prepared:
    scores, hits, n_pos = _check(scores, hits, n_pos)
    rows = _sort_rows(scores, hits)
    ap_rv, ap_std = _ap_revisitop_sorted(rows.hits, n_pos), _ap_standard_sorted(rows, n_pos)
    pair_rank = np.where(rows.hits, _group_end(rows), np.iinfo(np.int64).max)  # never below any k
    return _Prepared(rows.hits, n_pos, ap_rv, ap_std, _pool(scores, hits), pair_rank)


def _subset(prep: _Prepared, mask: np.ndarray) -> _Prepared:
    # Filtering the global ranking keeps it sorted, so groups never re-sort.
    new_id = np.cumsum(mask) - 1
    keep = mask[prep.pool.query]
    pool = _Pool(new_id[prep.pool.query[keep]], prep.pool.score[keep], prep.pool.hit[keep])
    return _Prepared(
        prep.hits[mask], prep.n_pos[mask], prep.ap_rv[mask], prep.ap_std[mask], pool, prep.pair_rank[mask]
    )


def _isc_recall(prep: _Prepared, k: int) -> float:
    n_gt = int(prep.n_pos.sum())
    return float((prep.pair_rank < k).sum() / n_gt) if n_gt else float("nan")


def _json(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None  # JSON has no NaN/inf: undefined is None


def _summary(prep: _Prepared, n_boot: int, seed: int) -> dict:
    n_gt = int(prep.n_pos.sum())
    has = prep.n_pos > 0
    rec90, thr90 = _recall_at_precision_pool(prep.pool, n_gt, 0.9)
    ci = _summary_ci(prep, n_boot, seed)
    out = {
        "map": _mean_over_matched(prep.ap_rv, prep.n_pos),
        "map_std": _mean_over_matched(prep.ap_std, prep.n_pos),
        "micro_ap": _micro_ap_pool(prep.pool.hit, n_gt),
        "recall_at_p90": rec90,
        "threshold_at_p90": thr90,
        "mrr": mrr(prep.hits, prep.n_pos),
        "mrr_all": mrr_all(prep.hits, prep.n_pos),
    }
    for k in RANKS:
        out[f"recall@{k}"] = recall_at_k(prep.hits, prep.n_pos, k)
        out[f"recall_frac@{k}"] = recall_at_k_fraction(prep.hits, prep.n_pos, k)
        out[f"isc_recall@{k}"] = _isc_recall(prep, k)
        out[f"precision@{k}"] = precision_at_k(prep.hits, prep.n_pos, k)
        out[f"precision_rv@{k}"] = precision_at_k_revisitop(prep.hits, prep.n_pos, k)
    out = {key: _json(v) for key, v in out.items()}
    out["map_ci"] = [_json(ci[0, 0]), _json(ci[1, 0])]
    out["micro_ap_ci"] = [_json(ci[0, 1]), _json(ci[1, 1])]
    out["n_queries"] = int(prep.n_pos.size)
    out["n_with_match"] = int(has.sum())
    return out


def _summary_ci(prep: _Prepared, n_boot: int, seed: int) -> np.ndarray:
    if n_boot <= 0 or prep.n_pos.size == 0:
        return np.full((2, 2), np.nan)

    micro = _micro_ap_resampler(prep.pool, prep.n_pos)

    def stats(counts: np.ndarray) -> np.ndarray:
        return np.stack([_boot_map(prep.ap_rv, counts), micro(counts)], axis=1)

    return bootstrap_ci(stats, prep.n_pos.size, n_boot=n_boot, seed=seed)


def evaluate(
    scores: np.ndarray,
    hits: np.ndarray,
    n_pos: np.ndarray,
    *,
    groups: dict[str, np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """All metrics, overall and per query group (bool mask), JSON-ready; @10 uses the k ranks given."""
    # recall@k / precision@k use at most the k columns given (precision still divides by k). The CIs come
    # from one shared set of n_boot query resamples per group (95 % percentile), exact for both mAP and
    # micro-AP; n_boot = 0 skips them. A group's micro-AP pools only its own queries, distractors included.
    prep = _prepare(scores, hits, n_pos)
    out = {"overall": _summary(prep, n_boot, seed), "groups": {}}
    for name, mask in (groups or {}).items():
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != prep.n_pos.shape:
            raise ValueError(f"group {name!r} must be a bool mask of shape {prep.n_pos.shape}")
        out["groups"][name] = _summary(_subset(prep, mask), n_boot, seed)
    return out
