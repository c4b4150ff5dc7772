"""The robustness gate for ``copybench check --robustness-tolerance T``: per sweep result of the baseline, the
normalised AUC of each axis is compared with the new result's (matched by the result key, as every check);
a drop of more than T on any axis fails, and so does a baseline sweep result with no new one."""

from __future__ import annotations

import json
from pathlib import Path

from copybench.check import Change
from copybench.results import Result, read_results

from .profile import curves_of, normalised_auc


def axis_aucs(result: Result, metric: str) -> dict[str, float | None]:
    """Normalised AUC of ``metric`` per axis of one sweep result."""
    return {c.axis: normalised_auc(c.positions, c.values) for c in curves_of(result, metric)}


def auc_changes(
    baseline: str | Path, results: str | Path, *, tolerance: float, metric: str = "recall@1"
) -> list[Change]:
    """One :class:`~copybench.check.Change` per (baseline sweep result, axis), named ``auc:AXIS``."""
    if tolerance < 0:
        raise ValueError(f"--robustness-tolerance must be >= 0, got {tolerance}")
    base = [r for r in read_results(baseline, strict=True)[0] if r.kind == "accuracy" and r.robustness]
    if not base:
        raise ValueError(
            f"no sweep result (per-level scores) in baseline {baseline}: --robustness-tolerance gates robustness "
            "profiles; run a sweep recipe (sweep-all-xs) for the baseline first"
        )
    new = {_key(r): r for r in read_results(results, strict=True)[0] if r.kind == "accuracy" and r.robustness}
    changes = []
    for b in base:
        n = new.get(_key(b))
        theirs = axis_aucs(n, metric) if n is not None else {}
        for axis, bv in axis_aucs(b, metric).items():
            nv = theirs.get(axis)
            status = _status(n is not None and axis in theirs, bv, nv, tolerance)
            changes.append(Change(b.detector_name, b.dataset_name or "", f"auc:{axis}", bv, nv, status))
    return changes


def _key(result: Result) -> str:
    return json.dumps(result.key, sort_keys=True)


def _status(found: bool, bv: float | None, nv: float | None, tolerance: float) -> str:
    if not found:
        return "missing"
    if bv is None:
        return "ok"
    if nv is None or nv < bv - tolerance:
        return "dropped"
    return "improved" if nv > bv + tolerance else "ok"
