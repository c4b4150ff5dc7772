"""``copybench check``: the CI regression gate.

Baseline and new results are matched by their key (detector, dataset fingerprint, protocol, similarity
settings, norm set, weights hash). A metric that drops by more than the tolerance fails the gate, and so does a
baseline entry with no new result (a detector that silently stopped running is a regression too); the row
says what it looked for. Improvements never fail. Results are refused (exit 2, file and field named) when a
metric is not a finite number in its range, and by default each result's metrics are first verified against
its stored predictions (:mod:`copybench.verify`). Results of other weights files are compared only on request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .results import Result, read_results

GATED_METRICS = ("micro_ap", "map", "recall@1", "recall_at_p90")
# None means "no operating point reaches 90 % precision" (as in the ISC evaluation): for the gate that is the
# worst recall, 0, so a detector that stops reaching 90 % precision is a drop, and one that never did is not.
UNREACHED_IS_ZERO = ("recall_at_p90",)
WEIGHTS_KEY = "weights_sha256"  # in the key of results computed with a weights file


@dataclass(frozen=True)
class Change:
    """One (key, metric) comparison; ``note`` says what a missing comparison looked for."""

    detector: str
    dataset: str
    metric: str
    baseline: float | None
    new: float | None
    status: str  # ok, improved, dropped, missing
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.new is None:
            return None
        return self.new - self.baseline


def weights_sha256(result: Result) -> str | None:
    """The weights hash a result was computed with: its key's, else (results written before the key held
    it) the one recorded in its detector section."""
    return result.key.get(WEIGHTS_KEY) or (result.detector.get("weights") or {}).get("sha256")


def _key(result: Result, weights: bool = True) -> str:
    """What the gate matches on: the result key, with the weights hash (``weights``) or without it."""
    key = {k: v for k, v in result.key.items() if k != WEIGHTS_KEY}
    if weights:
        key[WEIGHTS_KEY] = weights_sha256(result)
    return json.dumps(key, sort_keys=True)


def _refuse_duplicates(results: list[Result], where: str | Path, weights: bool = True) -> dict[str, Result]:
    """Results by key; two files with one key are refused by name (whichever won, an old copy could hide a
    regression or fake an improvement)."""
    by_key: dict[str, Result] = {}
    for r in results:
        first = by_key.setdefault(_key(r, weights), r)
        if first is not r:
            raise ValueError(
                f"{where}: two results for one key ({r.detector_name} on {r.dataset_name}): {first.source} and "
                f"{r.source}; keep one of them"
            )
    return by_key


def _accuracy_results(where: str | Path) -> list[Result]:
    """The accuracy results under ``where``, each refused (file and field named) when a metric value is not a
    finite number in its range or a metric key is unknown."""
    from .verify import check_metric_values

    found, _ = read_results(where, strict=True)
    found = [r for r in found if r.kind == "accuracy"]
    for r in found:
        check_metric_values(r)
    return found


def compare(
    baseline: str | Path,
    results: str | Path,
    *,
    tolerance: float = 0.01,
    metrics: tuple[str, ...] = GATED_METRICS,
    allow_weights_change: bool = False,
    verify: bool = True,
) -> list[Change]:
    """All comparisons between baseline and new accuracy results.

    ``verify``: every result's stored metrics are first checked against its predictions (cheaply, see
    :mod:`copybench.verify`); ``allow_weights_change``: compare results made with different weights files.
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"--tolerance must be a finite number >= 0, got {tolerance}")
    base, new = _accuracy_results(baseline), _accuracy_results(results)
    if not base:
        raise ValueError(f"no accuracy results in baseline {baseline}")
    _check_metric_names(metrics, base)
    _check_same_datasets(base, new, baseline, results)
    _check_same_protocols(base, new, baseline)
    if not allow_weights_change:
        _refuse_weights_change(base, new)
    if verify:
        from .verify import verify_for_gate

        verify_for_gate(base + new)
    _refuse_duplicates(base, baseline)
    by_key = _refuse_duplicates(new, results, weights=not allow_weights_change)
    changes = []
    for b in base:
        n = by_key.get(_key(b, weights=not allow_weights_change))
        note = "" if n is not None else _looked_for(b, new)
        for metric in metrics:
            bv = _value(b, metric)
            nv = None if n is None else _value(n, metric)
            status = _status(n is not None, bv, nv, tolerance)
            changes.append(Change(b.detector_name, b.dataset_name or "", metric, bv, nv, status, note))
    return changes


def _protocol(result: Result) -> str:
    return result.key.get("protocol", "native")


def _check_same_protocols(base: list[Result], new: list[Result], baseline) -> None:
    """Results of only other protocols are not a regression of every row: say which protocol has no
    baseline instead of listing every metric as missing."""
    base_p, new_p = {_protocol(b) for b in base}, {_protocol(r) for r in new}
    if new_p and not base_p & new_p:
        raise ValueError(
            f"no baseline under protocol {', '.join(sorted(new_p))} (the baseline {baseline} holds "
            f"{', '.join(sorted(base_p))}); the gate compares results of one protocol"
        )


def _refuse_weights_change(base: list[Result], new: list[Result]) -> None:
    """Results of other weights files under otherwise one key are not comparable: refused unless asked."""
    by_key = {_key(r, weights=False): r for r in new}
    changed = []
    for b in base:
        n = by_key.get(_key(b, weights=False))
        if n is not None and weights_sha256(n) != weights_sha256(b):
            old, now = ((weights_sha256(r) or "none")[:12] for r in (b, n))
            changed.append(f"{b.detector_name}: baseline {old} ({b.source}), results {now} ({n.source})")
    if changed:
        raise ValueError(
            "weights changed (sha256): " + "; ".join(changed) + "; the gate compares results of the same "
            "weights (--allow-weights-change compares them anyway)"
        )


def _looked_for(b: Result, new: list[Result]) -> str:
    """What a missing comparison looked for, and how the closest result of that detector differs."""
    looked = f"no result under protocol {_protocol(b)}"
    same = [r for r in new if r.detector_name == b.detector_name and r.fingerprint == b.fingerprint]
    if not same:
        return looked
    want = {**b.key, WEIGHTS_KEY: weights_sha256(b)}
    found = [{**r.key, WEIGHTS_KEY: weights_sha256(r)} for r in same]
    diffs = [sorted(k for k in want.keys() | f.keys() if want.get(k) != f.get(k)) for f in found]
    closest = min(range(len(diffs)), key=lambda i: len(diffs[i]))
    shown = ", ".join(
        f"{k} {_short(want.get(k))} (found {_short(found[closest].get(k))})" for k in diffs[closest]
    )
    return f"{looked} with {shown}"


def _short(value) -> str:
    return value[:12] if isinstance(value, str) and len(value) == 64 else str(value)


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
