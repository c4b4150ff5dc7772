"""``copybench check``: the CI regression gate.

Baseline and new results are matched by their key (detector, dataset fingerprint, similarity settings). A
metric that drops by more than the tolerance fails the gate, and so does a baseline entry with no new result
(a detector that silently stopped running is a regression too). Improvements never fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .results import Result, read_results

GATED_METRICS = ("micro_ap", "map", "recall@1", "recall_at_p90")
# None means "no operating point reaches 90 % precision" (as in the ISC evaluation): for the gate that is the
# worst recall, 0, so a detector that stops reaching 90 % precision is a drop, and one that never did is not.
UNREACHED_IS_ZERO = ("recall_at_p90",)


@dataclass(frozen=True)
class Change:
    """One (key, metric) comparison."""

    detector: str
    dataset: str
    metric: str
    baseline: float | None
    new: float | None
    status: str  # ok, improved, dropped, missing

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.new is None:
            return None
        return self.new - self.baseline


def _key(result: Result) -> str:
    return json.dumps(result.key, sort_keys=True)


def _refuse_duplicates(results: list[Result], where: str | Path) -> dict[str, Result]:
    """Results by key; two files with one key are refused by name (whichever won, an old copy could hide a
    regression or fake an improvement)."""
    by_key: dict[str, Result] = {}
    for r in results:
        first = by_key.setdefault(_key(r), r)
        if first is not r:
            raise ValueError(
                f"{where}: two results for one key ({r.detector_name} on {r.dataset_name}): {first.source} and "
                f"{r.source}; keep one of them"
            )
    return by_key


def compare(
    baseline: str | Path,
    results: str | Path,
    *,
    tolerance: float = 0.01,
    metrics: tuple[str, ...] = GATED_METRICS,
) -> list[Change]:
    """All comparisons between baseline and new accuracy results."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    base, _ = read_results(baseline, strict=True)
    new, _ = read_results(results, strict=True)
    base = [r for r in base if r.kind == "accuracy"]
    if not base:
        raise ValueError(f"no accuracy results in baseline {baseline}")
    _check_metric_names(metrics, base)
    new = [r for r in new if r.kind == "accuracy"]
    _check_same_datasets(base, new, baseline, results)
    _refuse_duplicates(base, baseline)
    by_key = _refuse_duplicates(new, results)
    changes = []
    for b in base:
        n = by_key.get(_key(b))
        for metric in metrics:
            bv = _value(b, metric)
            nv = None if n is None else _value(n, metric)
            changes.append(
                Change(
                    b.detector_name,
                    b.dataset_name or "",
                    metric,
                    bv,
                    nv,
                    _status(n is not None, bv, nv, tolerance),
                )
            )
    return changes


def _check_same_datasets(base: list[Result], new: list[Result], baseline, results) -> None:
    """Results of only other datasets (other fingerprints) are not a regression of every row: say the
    fingerprint differs instead of listing each baseline result as missing."""
    base_sets = {(b.dataset_name, b.fingerprint) for b in base}
    new_sets = {(r.dataset_name, r.fingerprint) for r in new}
    if not new_sets or {f for _, f in base_sets} & {f for _, f in new_sets}:
        return
    raise ValueError(
        f"dataset fingerprint differs: baseline {baseline} is of {_datasets(base_sets)}, results {results} are "
        f"of {_datasets(new_sets)}; the gate compares results of the same dataset (recipe, seed, sources)"
    )


def _datasets(sets: set[tuple[str | None, str | None]]) -> str:
    return ", ".join(f"{name} ({(fingerprint or '')[:12]})" for name, fingerprint in sorted(sets))


def _value(result: Result, metric: str) -> float | None:
    value = result.metrics.get(metric)
    return 0.0 if value is None and metric in UNREACHED_IS_ZERO and metric in result.metrics else value


def _check_metric_names(metrics: tuple[str, ...], base: list[Result]) -> None:
    """A misspelt metric would compare nothing and pass: refuse names no baseline result has."""
    known = {k for r in base for k, v in r.metrics.items() if v is None or isinstance(v, (int, float))}
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        what = f"unknown metric(s) {', '.join(map(repr, unknown))}" if unknown else "no metrics given"
        raise ValueError(f"{what}; the baseline has {', '.join(sorted(known))}")


def _status(found: bool, bv: float | None, nv: float | None, tolerance: float) -> str:
    if not found:
        return "missing"
    if bv is None:
        return "ok"
    if nv is None or nv < bv - tolerance:
        return "dropped"
    return "improved" if nv > bv + tolerance else "ok"


def failed(changes: list[Change]) -> bool:
    """Whether the gate fails."""
    return any(c.status in ("dropped", "missing") for c in changes)
