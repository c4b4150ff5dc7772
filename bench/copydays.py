"""SSCD's Copydays evaluation (``--protocol sscd-copydays``): the figures SSCD publishes for Copydays + 10k.

SSCD's ``sscd/copydays_eval.py`` searches every Copydays image, the originals included, against the originals plus
the distractors, keeps 100 predictions per query and reports two numbers (``sscd/datasets/copydays.py``):

- ``strong_map``: mean over the strong queries of the revisitop AP of each query's ranking (copybench's ``map``
  of the ``strong`` group);
- ``overall_uap``: its "macro AP": every prediction of every query (each original querying itself included)
  pooled and sorted by distance, then the revisitop trapezoid AP of the pooled ranks of the positives with the
  number of queries as the number of positives (SSCD counts one positive per query).

The originals are queries here although the dataset lists them as references only: their descriptors are the
references' own (SSCD embeds each image once), so nothing is extracted twice. Ties between equal scores are broken
pessimistically (negatives first) as in every copybench metric; SSCD leaves them to numpy's unstable argsort, so
the two agree whenever no positive ties with a negative.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ORIGINALS_PREFIX",
    "check_dataset",
    "metrics_from_predictions",
    "original_rows",
    "overall_uap",
    "pooled_ap",
]

ORIGINALS_PREFIX = "original:"  # query ids of the originals querying themselves (predictions file)


def dataset_rows(table):
    """The rows of a predictions table that rank the dataset's own queries: sscd-copydays also stores the
    originals' rankings (query ids ``original:<reference>``), which only SSCD's two figures read."""
    return table[~table["query_id"].astype(str).str.startswith(ORIGINALS_PREFIX)].reset_index(drop=True)


def original_rows(dataset) -> np.ndarray:
    """Reference rows of the Copydays originals: the references some query is a copy of (never a distractor)."""
    named = {r for q in dataset.query_ids for r in dataset.positives[q]}
    return np.array([i for i, r in enumerate(dataset.reference_ids) if r in named], dtype=np.int64)


def check_dataset(protocol_name: str, dataset) -> np.ndarray:
    """The originals' reference rows; ProtocolError when the dataset is not a Copydays import."""
    from .protocols import ProtocolError

    rows = original_rows(dataset)
    if dataset.meta.get("format") != "copydays" or not rows.size:
        raise ProtocolError(
            f"--protocol {protocol_name}: dataset {dataset.name!r} is not a Copydays import "
            "(copybench data import copydays DIR --out DATASET)"
        )
    return rows


def pooled_ap(scores: np.ndarray, hits: np.ndarray, n_positives: int) -> float:
    """Revisitop trapezoid AP of all predictions pooled into one ranking (higher score first, ties
    pessimistic), recall over ``n_positives``; padding (score -inf) is not a prediction."""
    scores, hits = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(hits, dtype=bool).ravel()
    valid = np.isfinite(scores)
    scores, hits = scores[valid], hits[valid]
    order = np.lexsort((hits, -scores))  # by score descending, then negatives (False) before positives
    ranks = np.flatnonzero(hits[order]).astype(np.float64)
    if n_positives <= 0:
        return float("nan")
    ntp = np.arange(ranks.size, dtype=np.float64)
    p0 = np.divide(ntp, ranks, out=np.ones_like(ranks), where=ranks > 0)  # rank 0: precision 1
    p1 = (ntp + 1.0) / (ranks + 1.0)
    return float(((p0 + p1) / 2.0).sum() / n_positives)


def overall_uap(query_scores, query_hits, original_scores, original_hits) -> float:
    """SSCD's overall µAP: the dataset's queries and the originals querying themselves, pooled."""
    scores = np.concatenate([np.asarray(query_scores).ravel(), np.asarray(original_scores).ravel()])
    hits = np.concatenate([np.asarray(query_hits).ravel(), np.asarray(original_hits).ravel()])
    n_queries = np.asarray(query_scores).shape[0] + np.asarray(original_scores).shape[0]
    return pooled_ap(scores, hits, n_queries)


def metrics_from_predictions(table, dataset) -> dict[str, float | None]:
    """``strong_map`` and ``overall_uap`` recomputed from a predictions table (``query_id, rank, reference_id,
    score``; the originals' rows named ``original:<reference id>``) and the dataset's ground truth."""
    qids, refs = table["query_id"].astype(str).to_numpy(), table["reference_id"].astype(str).to_numpy()
    scores = table["score"].to_numpy(dtype=np.float64)
    is_orig = np.char.startswith(qids.astype(str), ORIGINALS_PREFIX)
    hit = np.array(
        [r == q[len(ORIGINALS_PREFIX) :] if o else r in dataset.positives.get(q, ()) for q, r, o in
         zip(qids, refs, is_orig)], dtype=bool,
    )  # fmt: skip
    n_queries = len(dataset.query_ids) + len(set(qids[is_orig]))
    family = dict(zip(dataset.query_ids, dataset.queries["family"].astype(str)))
    strong = [q for q in dataset.query_ids if family[q] == "strong" and dataset.positives[q]]
    aps = [pooled_ap(scores[qids == q], hit[qids == q], len(dataset.positives[q])) for q in strong]
    overall = pooled_ap(scores, hit, n_queries)
    return {
        "strong_map": float(np.mean(aps)) if aps else None,
        "overall_uap": overall if np.isfinite(overall) else None,
    }
