"""Trust in stored numbers: every metric of a result file is checked before it is shown or gated.

Two levels. :func:`metric_problems` reads the file alone: every metric value is a finite number in its range
(rates and APs in [0, 1], counts non-negative integers), and every metric key is one copybench computes.
:func:`verify_result` recomputes the metrics from the stored raw predictions and the dataset's ground truth
(as ann-benchmarks recomputes from raw neighbours): ``full`` recomputes every metric, per group and with its
confidence intervals (``copybench verify``); the default, cheap check used by ``table`` and ``check``
recomputes the overall point metrics only, after checking the predictions file's sha256.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .results import Result

# result files written before full precision rounded metrics to 6 digits: up to 5e-7 off the recomputation
TOLERANCE = 1e-6
COUNT_PREFIX = "n_"
UNBOUNDED = ("threshold_at_p90",)  # a score, not a rate: any finite number
EXTRA_METRICS = ("n_queries_missing", "n_queries_undecodable")  # counted by the run, not by metrics.evaluate


class VerifyError(ValueError):
    """A result cannot be verified (no predictions, no dataset): bad input, not a disagreement."""


@lru_cache(maxsize=1)
def known_metrics() -> frozenset[str]:
    """Every metric key copybench writes: those :func:`copybench.metrics.evaluate` returns (computed on a
    two-query case, so a metric added there is known here) and the run's skipped-query counts."""
    import numpy as np

    from .metrics import evaluate
    from .protocols import PROTOCOLS

    scores = np.array([[0.9, 0.1], [0.8, 0.2]])
    hits = np.array([[True, False], [False, False]])
    overall = evaluate(scores, hits, np.array([1, 0]), n_boot=0)["overall"]
    declared = {m for p in PROTOCOLS.values() for m in p.metrics}
    return frozenset(overall) | frozenset(EXTRA_METRICS) | frozenset(declared)


def _value_problem(key: str, value: Any) -> str | None:
    """Why one metric value is not a valid one (None when it is)."""
    if key.startswith(COUNT_PREFIX):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else f"{value!r} is not a count (a non-negative integer)"
    if key.endswith("_ci"):
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            return f"{value!r} is not a [low, high] interval"
        problems = [_value_problem(key[: -len("_ci")], v) for v in value]
        return next((p for p in problems if p), None)
    if value is None:  # undefined (no query with a match, no operating point): written as null
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if key not in UNBOUNDED and not 0.0 <= value <= 1.0:
        return f"{value!r} is outside [0, 1]"
    return None


def metric_problems(result: Result) -> list[str]:
    """Every invalid metric value or unknown metric key of an accuracy result, each naming its field."""
    if result.kind != "accuracy":
        return []
    sections = [("metrics", result.metrics)]
    sections += [(f"groups.{name}", values) for name, values in sorted(result.groups.items())]
    known, problems = known_metrics(), []
    for where, values in sections:
        if not isinstance(values, dict):
            problems.append(f"{where} is not a mapping of metrics")
            continue
        for key, value in sorted(values.items()):
            if key not in known:
                problems.append(f"{where}.{key}: unknown metric (copybench writes no such key)")
            elif (why := _value_problem(key, value)) is not None:
                problems.append(f"{where}.{key} = {why}")
    return problems


def check_metric_values(result: Result) -> None:
    """ValueError naming the file and every invalid field (what ``check`` refuses)."""
    problems = metric_problems(result)
    if problems:
        raise ValueError(f"{result.source or 'result'}: {'; '.join(problems)}")


@dataclass
class Verification:
    """The outcome of verifying one result file: ``disagreements`` name each metric whose stored value is
    not what its predictions give; ``unverified`` says why nothing could be recomputed (if so)."""

    path: Path | None
    disagreements: list[str] = field(default_factory=list)
    unverified: str | None = None

    @property
    def ok(self) -> bool:
        return not self.disagreements and self.unverified is None


def verify_for_gate(results: list[Result]) -> None:
    """The cheap verification ``check`` runs before comparing (filled in with the predictions check)."""
