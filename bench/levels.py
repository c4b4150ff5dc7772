"""Per-level scores of a sweep dataset (``sweep-AXIS-SIZE``): micro-AP and R@1, each with its bootstrap CI,
for every severity level of every axis, in the result's ``robustness`` section.

A level's numbers pool its own queries only, distractors included, scored from the run's one search (so under
the run's protocol, similarity and normalisation). A query that did not decode stays in its level as a miss,
as in the overall metrics; a level with no decodable query at all is reported as empty (its metrics null),
never dropped, so a curve shows the gap instead of silently joining its neighbours.
"""

from __future__ import annotations

import json

import numpy as np

LEVEL_METRICS = ("micro_ap", "recall@1", "map")


def sweep_levels(
    dataset,
    scores: np.ndarray,
    hits: np.ndarray,
    n_pos: np.ndarray,
    decoded: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    protocol: str,
) -> dict:
    """The ``robustness`` section of a result on a sweep dataset; {} for any other dataset."""
    sweep = dataset.meta.get("sweep")
    if not sweep:
        return {}
    from copybench.datasets.sweep import AXES

    tags = [json.loads(p).get("sweep") or {} for p in dataset.queries["params"]]
    axis = np.array([t.get("axis", "") for t in tags], dtype=object)
    level = np.array([t.get("level", -1) for t in tags], dtype=np.int64)
    axes = {}
    for a in sweep["axes"]:
        ax = AXES[a]
        rows = []
        for i, severity in enumerate(sweep["severities"][a]):
            row = score_level(
                scores, hits, n_pos, decoded, (axis == a) & (level == i), n_boot=n_boot, seed=seed
            )
            rows.append({"level": i, "severity": severity, "position": ax.position(severity), **row})
        axes[a] = {"unit": ax.unit, "mild": ax.mild, "severe": ax.severe, "levels": rows}
    return {"axes": axes, "protocol": protocol, "n_boot": int(n_boot), "ci": "95% percentile bootstrap"}


def score_level(
    scores: np.ndarray,
    hits: np.ndarray,
    n_pos: np.ndarray,
    decoded: np.ndarray,
    mask: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> dict:
    """Metrics of the queries in ``mask``; ``empty`` when none of them decoded."""
    from .metrics import evaluate

    n, n_valid = int(mask.sum()), int((mask & decoded).sum())
    counts = {"n_queries": n, "n_valid": n_valid, "n_with_match": int((n_pos[mask] > 0).sum())}
    if n_valid == 0:
        nulls = {m: None for m in LEVEL_METRICS} | {f"{m}_ci": [None, None] for m in LEVEL_METRICS[:2]}
        return {**counts, **nulls, "empty": True}
    s, h, p = scores[mask], hits[mask], n_pos[mask]
    overall = evaluate(s, h, p, n_boot=n_boot, seed=seed)["overall"]
    out = {**counts, **{m: overall[m] for m in LEVEL_METRICS}, "micro_ap_ci": overall["micro_ap_ci"]}
    out["recall@1_ci"] = _recall1_ci(h, p, n_boot, seed)
    return {**out, "empty": False}


def _recall1_ci(hits: np.ndarray, n_pos: np.ndarray, n_boot: int, seed: int) -> list[float | None]:
    """R@1's CI from the same query resamples as the micro-AP CI (same seed, same draws)."""
    from .metrics import bootstrap_ci

    if n_boot <= 0:
        return [None, None]
    has = (n_pos > 0).astype(np.float64)
    top = (hits[:, :1].any(axis=1) & (n_pos > 0)).astype(np.float64) if hits.shape[1] else np.zeros(len(has))

    def r1(c: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (c @ top) / (c @ has)

    lo, hi = bootstrap_ci(r1, len(has), n_boot=n_boot, seed=seed)
    return [float(v) if np.isfinite(v) else None for v in (lo, hi)]
