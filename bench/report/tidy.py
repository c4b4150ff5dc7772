"""Results as tidy tables (pandas): one row per (result, group), machine-friendly column names.

``group`` is ``all`` for the overall metrics, a recipe family (``crop``) or a family and tier (``crop/light``,
split into the ``family`` and ``tier`` columns), so per-family analysis is a filter, not a parse. Metric keys
become identifiers (``recall@1`` -> ``recall_at_1``) and each confidence interval two numeric columns
(``micro_ap_ci_low``, ``micro_ap_ci_high``). Throughput results get their own frame, one row per measurement.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from copybench.results import Result, read_results

if TYPE_CHECKING:
    import pandas as pd

EXPORT_FORMATS = ("csv", "parquet")


def column_name(metric: str) -> str:
    """A metric key as a column identifier: ``recall@1`` -> ``recall_at_1``."""
    return re.sub(r"[^0-9a-zA-Z_]+", "_", metric.replace("@", "_at_")).strip("_")


def _metric_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(metrics.items()):
        name = column_name(key)
        if name.endswith("_ci"):
            low, high = value if isinstance(value, (list, tuple)) and len(value) == 2 else (None, None)
            out[name + "_low"], out[name + "_high"] = low, high
        elif value is None or isinstance(value, (int, float)):
            out[name] = value
    return out


def _identity(result: Result, root: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Columns that say which result a row belongs to: the leading ones, and settings/provenance ones."""
    s, env = result.settings, result.environment
    source = result.source
    if source is not None and root is not None and root.is_dir() and source.is_relative_to(root):
        source = source.relative_to(root)
    lead = {
        "dataset": result.dataset_name,
        "detector": result.detector_name,
        "weights": result.weights_status,
        "random_weights": result.is_random,
    }
    rest = {
        "fingerprint": result.fingerprint,
        "recipe": (result.dataset or {}).get("recipe"),
        **{k: v for k, v in result.key.items() if k not in ("detector", "dataset_fingerprint", "multiscale")},
        "multiscale": ",".join(f"{x:g}" for x in result.key.get("multiscale") or []) or None,
        "topk": s.get("topk"),
        "n_boot": s.get("n_boot"),
        "device": s.get("device"),
        "git_commit": env.get("git_commit"),
        "copybench_version": env.get("copybench"),
        "result_file": None if source is None else str(source),
        **_meta_columns(result),
    }
    return lead, rest


def _meta_columns(result: Result) -> dict[str, Any]:
    """The detector's metadata (parameters, license, release month and the URL it is read from, weights hash);
    None where an older result file does not hold it."""
    meta = (result.detector or {}).get("meta") or {}
    keys = ("params", "license", "release_date", "release_source", "weights_hash")
    return {f"detector_{k}" if k != "params" else "params": meta.get(k) for k in keys}


def accuracy_rows(result: Result, root: Path | None = None) -> list[dict[str, Any]]:
    """The tidy rows of one accuracy result: overall first, then each family and family/tier."""
    lead, rest = _identity(result, root)
    groups = [("all", result.metrics)] + sorted(result.groups.items())
    rows = []
    for group, metrics in groups:
        family, _, tier = group.partition("/")
        where = {"group": group, "family": family, "tier": tier or None}
        rows.append({**lead, **where, **_metric_columns(metrics or {}), **rest})
    return rows


def throughput_rows(result: Result) -> list[dict[str, Any]]:
    """One row per measurement of a throughput result (IQRs as two columns)."""
    base = {
        "detector": result.detector_name,
        "weights": result.weights_status,
        "random_weights": result.is_random,
        "device_name": result.environment.get("device_name"),
        "git_commit": result.environment.get("git_commit"),
    }
    rows = []
    for m in result.measurements:
        row = dict(base)
        for key, value in sorted(m.items()):
            if key.endswith("_iqr") and isinstance(value, (list, tuple)) and len(value) == 2:
                row[key + "_low"], row[key + "_high"] = value
            elif value is None or isinstance(value, (int, float, str, bool)):
                row[key] = value
        rows.append(row)
    return rows


def results_frame(results: list[Result], kind: str = "accuracy", root: Path | None = None) -> pd.DataFrame:
    """Tidy frame of records of one kind (see the module docstring for the columns)."""
    import pandas as pd

    if kind not in ("accuracy", "throughput"):
        raise ValueError(f"unknown result kind {kind!r}; choose accuracy or throughput")
    rows: list[dict[str, Any]] = []
    for r in results:
        if r.kind == kind:
            rows += accuracy_rows(r, root) if kind == "accuracy" else throughput_rows(r)
    return pd.DataFrame(rows)


def load_results(root: str | Path, *, kind: str = "accuracy", strict: bool = True) -> pd.DataFrame:
    """Every result file under ``root`` (a folder searched recursively, or one file) as a tidy DataFrame.

    Accuracy: one row per (result, group) with ``group == "all"`` for the overall metrics. Throughput
    (``kind="throughput"``): one row per measurement. An unreadable file or one of an unknown schema version
    raises :class:`copybench.results.ResultError` naming it; ``strict=False`` skips such files instead.
    """
    results, _ = read_results(root, strict=strict)
    return results_frame(results, kind, Path(root))


def export_results(root: str | Path, out: str | Path, fmt: str | None = None, kind: str = "accuracy") -> Path:
    """Write the tidy frame of ``root`` as CSV or Parquet (from ``fmt`` or the suffix of ``out``)."""
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {fmt!r} for {out}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    frame = load_results(root, kind=kind, strict=False)
    from copybench.io import atomic_write_bytes

    if fmt == "csv":
        atomic_write_bytes(out, frame.to_csv(index=False).encode())
    else:
        atomic_write_bytes(out, frame.to_parquet(index=False, engine="pyarrow"))
    return out
