"""Trust in stored numbers: every metric of a result file is checked before it is shown or gated.

Two levels. :func:`metric_problems` reads the file alone: every metric value is a finite number in its range
(rates and APs in [0, 1], counts non-negative integers), and every metric key is one copybench computes.
:func:`verify_result` recomputes the metrics from the stored raw predictions and the dataset's ground truth
(as ann-benchmarks recomputes from raw neighbours): ``full`` recomputes every metric, per group and with its
confidence intervals (``copybench verify``); the default, cheap check used by ``table`` and ``check``
recomputes the overall point metrics only, after checking the predictions file's sha256.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .results import Result

log = logging.getLogger(__name__)
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


def _dataset_for(result: Result, datasets: dict[str, Any]):
    """The dataset a result was computed on: one already loaded with its fingerprint (a baseline copied
    without its dataset is checked against the new results' copy), else the one its file records."""
    from .results import load_result_dataset

    if result.fingerprint in datasets:
        return datasets[result.fingerprint]
    failed = f"unreadable:{result.dataset_root}"  # tried once per folder: a failed load is not retried
    if failed not in datasets:
        try:
            dataset = load_result_dataset(result)
        except (OSError, ValueError) as exc:  # DatasetError and a changed fingerprint are ValueErrors
            datasets[failed] = str(exc).removeprefix(f"{result.source}: ")
        else:
            datasets[dataset.fingerprint] = dataset
            return dataset
    why = datasets[failed]
    raise VerifyError(why if why.startswith("its dataset") else f"its dataset cannot be read: {why}")


def warn_unverified(checks: list[Verification]) -> None:
    """One warning per reason a result could not be verified, naming its files (not one line per file)."""
    by_reason: dict[str, list[str]] = {}
    for c in checks:
        if c.unverified:
            by_reason.setdefault(c.unverified, []).append(c.path.name if c.path else "result")
    for reason, names in by_reason.items():
        log.warning(
            "%d result(s) not verified (%s): %s; `copybench verify --dataset DIR` checks them",
            len(names),
            reason,
            ", ".join(names),
        )


def _prediction_arrays(result: Result, dataset):
    """(scores, reference rows) of shape (Q, k) rebuilt from the stored predictions, exactly as scored."""
    import numpy as np
    import pandas as pd

    from .copydays import dataset_rows
    from .results import predictions_sha256

    path = result.predictions_path
    if path is None or not path.is_file():
        raise VerifyError(f"its predictions file {path or '(none recorded)'} is missing")
    if result.predictions_sha256 and predictions_sha256(path) != result.predictions_sha256:
        raise ValueError(f"its predictions file {path.name} is not the one it recorded (sha256 differs)")
    try:
        table = pd.read_csv(path, dtype={"query_id": str, "reference_id": str}, keep_default_na=False)
        table = dataset_rows(table)
        rank, scores = table["rank"].to_numpy(np.int64), table["score"].to_numpy(np.float64)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise VerifyError(f"its predictions file {path} cannot be read ({exc})") from exc
    depth = result.settings.get("topk")
    k = int(depth) if isinstance(depth, int) and depth > 0 else int(rank.max(initial=0)) + 1
    rows = pd.Series(range(len(dataset.query_ids)), index=dataset.query_ids)
    cols = pd.Series(range(len(dataset.reference_ids)), index=dataset.reference_ids)
    q, r = table["query_id"].map(rows), table["reference_id"].map(cols)
    if q.isna().any() or r.isna().any() or (rank < 0).any() or (rank >= k).any():
        raise ValueError(
            "its predictions name queries, references or ranks its dataset and depth do not have"
        )
    out_scores = np.full((len(rows), k), -np.inf, dtype=np.float32)  # as scored: float32, -inf padding
    out_idx = np.full((len(rows), k), -1, dtype=np.int64)
    out_scores[q.to_numpy(np.int64), rank] = scores.astype(np.float32)
    out_idx[q.to_numpy(np.int64), rank] = r.to_numpy(np.int64)
    return out_scores, out_idx


def _copydays_figures(result: Result, dataset) -> dict:
    """SSCD's strong mAP and overall µAP recomputed from the predictions file (originals' rows included)."""
    import pandas as pd

    from .copydays import metrics_from_predictions

    table = pd.read_csv(
        result.predictions_path, dtype={"query_id": str, "reference_id": str}, keep_default_na=False
    )
    return metrics_from_predictions(table, dataset)


def recompute_metrics(result: Result, dataset, *, full: bool) -> dict:
    """The metrics the stored predictions give: overall point metrics, or (``full``) every metric of every
    group with confidence intervals, drawn with the result's own bootstrap settings."""
    import numpy as np

    from .evaluate import _hits, family_groups
    from .metrics import evaluate

    if result.key.get("subset"):  # the queries that were scored
        from copybench.datasets.subsets import select_subset

        dataset = select_subset(dataset, result.key["subset"])
    scores, idx = _prediction_arrays(result, dataset)
    hits, n_pos = _hits(dataset, idx)
    groups = family_groups(dataset, np.ones(len(n_pos), dtype=bool)) if full else None
    n_boot = int(result.settings.get("n_boot", 0)) if full else 0
    out = evaluate(
        scores, hits, n_pos, groups=groups, n_boot=n_boot, seed=int(result.settings.get("seed", 0))
    )
    if result.key.get("protocol") == "sscd-copydays":
        out["overall"].update(_copydays_figures(result, dataset))
    for kind in ("missing", "undecodable"):  # counted from the skipped images the result lists
        out["overall"][f"n_queries_{kind}"] = sum(
            1 for s in result.skipped if s.get("role") == "query" and s.get("kind") == kind
        )
    return out


def _differs(stored: Any, computed: Any) -> bool:
    if isinstance(computed, list):
        return (
            not isinstance(stored, list)
            or len(stored) != len(computed)
            or any(map(_differs, stored, computed))
        )
    if stored is None or computed is None:
        return stored is not computed
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return True
    return not abs(stored - computed) <= TOLERANCE


def _disagreements(where: str, stored: dict, computed: dict, full: bool) -> list[str]:
    out = []
    for key, value in computed.items():
        if key.endswith("_ci") and not full:
            continue
        if key not in stored:
            out.append(f"{where}.{key} is absent, its predictions give {value!r}")
        elif _differs(stored[key], value):
            out.append(f"{where}.{key} is {stored[key]!r}, its predictions give {value!r}")
    return out


def verify_result(result: Result, *, full: bool = False, datasets: dict | None = None) -> Verification:
    """Recompute ``result``'s metrics from its stored predictions and its dataset's ground truth and name
    every stored value that disagrees (``full``: groups and CIs too). ``datasets``: loaded datasets by
    fingerprint, shared between calls (one load per dataset)."""
    check = Verification(result.source)
    if result.kind != "accuracy":
        return check
    datasets = {} if datasets is None else datasets
    try:
        computed = recompute_metrics(result, _dataset_for(result, datasets), full=full)
    except VerifyError as exc:
        check.unverified = str(exc)
        return check
    except ValueError as exc:  # predictions that do not fit the dataset: they are not what was scored
        check.disagreements.append(str(exc))
        return check
    check.disagreements += _disagreements("metrics", result.metrics, computed["overall"], full)
    for name, values in computed["groups"].items():
        stored = result.groups.get(name)
        if stored is None:
            check.disagreements.append(f"groups.{name} is absent")
        else:
            check.disagreements += _disagreements(f"groups.{name}", stored, values, full)
    return check


def verify_results(
    results: str | Path | list[Result], *, full: bool = True, dataset: str | Path | None = None
) -> list[Verification]:
    """Verify every accuracy result under a folder (or in a list), in full by default (``copybench verify``;
    the publish path calls this). ``dataset``: the dataset folder to check against, when the results do not
    lie where they recorded theirs."""
    from .results import read_results

    if not isinstance(results, list):
        results, _ = read_results(results, strict=True)
    datasets: dict[str, Any] = {}
    if dataset is not None:
        from copybench.datasets.dataset import load_dataset

        loaded = load_dataset(dataset)
        datasets[loaded.fingerprint] = loaded
    return [verify_result(r, full=full, datasets=datasets) for r in results if r.kind == "accuracy"]


def verify_for_gate(results: list[Result]) -> None:
    """What ``check`` runs before comparing: the cheap verification of every result (the overall point
    metrics recomputed from the predictions); ValueError naming every file whose numbers its predictions do
    not give. A result that cannot be verified (its predictions or dataset are not there) is warned about."""
    datasets: dict[str, Any] = {}
    # results whose dataset is where they say first: a baseline copied without its dataset then finds it
    unique = list({str(r.source): r for r in results}.values())  # a baseline folder given as results too
    ordered = sorted(
        unique, key=lambda r: not (r.dataset_root and (r.dataset_root / "dataset.json").is_file())
    )
    checks = [verify_result(r, datasets=datasets) for r in ordered]
    warn_unverified(checks)
    bad = [f"{c.path}: {'; '.join(c.disagreements[:3])}" for c in checks if c.disagreements]
    if bad:
        raise ValueError(
            "results whose numbers their predictions do not give (edited, or not what was computed): "
            + " | ".join(bad)
            + "; `copybench verify` lists every difference, --no-verify skips this check"
        )


def table_flags(root: str | Path) -> tuple[dict[str, str], list[str]]:
    """What ``table`` marks, by result file, and the error lines naming each file and field: rows with
    invalid metric values, and rows whose overall metrics their predictions do not give (the cheap
    verification). A result that cannot be verified is warned about (logged), not marked."""

    from .results import read_results

    results, _ = read_results(root)  # unreadable files: table warns about them itself
    flags, errors, datasets, checks = {}, [], {}, []
    for r in (r for r in results if r.kind == "accuracy"):
        problems = metric_problems(r)
        if problems:
            errors.append(f"{r.source}: {'; '.join(problems)}")
            flags[str(r.source)] = "invalid: " + ", ".join(p.split(" ", 1)[0].rstrip(":") for p in problems)
            continue
        check = verify_result(r, datasets=datasets)
        checks.append(check)
        if check.disagreements:
            errors.append(f"{r.source}: {'; '.join(check.disagreements)}")
            flags[str(r.source)] = "does not match its predictions"
    warn_unverified(checks)
    return flags, errors
