"""Published figures (``published.csv``) beside the user's own results: ``copybench table --published``.

Each published row names its benchmark (``disc21``, ``copydays``), query subset (``all`` for the whole imported
set, or a name from :mod:`copybench.datasets.subsets`), protocol, detector, whether descriptors were whitened
and scores normalised, the metric and its value, and where the figure comes from. A result lines up with a
published row when all of these agree; the result's subset is its ``--subset`` or, for a whole-dataset result,
a family subset read from its per-family metrics (Copydays ``strong`` is the ``strong`` family's group).
Published query/reference counts, where the source gives them, are checked against the result's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from copybench.results import Result

PUBLISHED_FILE = Path(__file__).with_name("published.csv")
# subsets that are one family of the dataset: their metrics are in a whole-dataset result's groups
FAMILY_SUBSETS = {
    ("copydays", "strong"): "strong",
    ("copydays", "crops"): "crop",
    ("copydays", "jpeg"): "jpeg",
}


@dataclass(frozen=True)
class PublishedFigure:
    """One published number and its source."""

    benchmark: str
    subset: str
    protocol: str
    detector: str
    whitening: bool
    score_norm: bool
    metric: str
    value: float
    n_queries: int | None
    n_references: int | None
    source: str
    note: str = ""


def load_published(path: str | Path = PUBLISHED_FILE) -> list[PublishedFigure]:
    """The published figures of a CSV (default: the table shipped with copybench)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    count = lambda v: int(v) if v else None
    flag = lambda v: v.strip().lower() == "true"
    return [
        PublishedFigure(r.benchmark, r.subset, r.protocol, r.detector, flag(r.whitening), flag(r.score_norm),
                        r.metric, float(r.value), count(r.n_queries), count(r.n_references), r.source, r.note)
        for r in table.itertuples(index=False)
    ]  # fmt: skip


def result_benchmark(result: Result) -> str:
    """The benchmark of a result: the import format its dataset name starts with (disc21:NAME), else the name."""
    name = (result.dataset or {}).get("name", "")
    return name.split(":", 1)[0] if ":" in name else "synthetic"


def _measured(result: Result, fig: PublishedFigure) -> tuple[float | None, str]:
    """The result's value of the figure's metric on its subset, and where it was read from."""
    subset = result.key.get("subset") or "all"
    if subset == fig.subset:
        return result.metrics.get(fig.metric), "result"
    family = FAMILY_SUBSETS.get((fig.benchmark, fig.subset))
    if subset == "all" and family and family in result.groups:
        return result.groups[family].get(fig.metric), f"group {family}"
    return None, ""


def _matches(result: Result, fig: PublishedFigure) -> bool:
    key = result.key
    return (
        result_benchmark(result) == fig.benchmark
        and key.get("protocol", "native") == fig.protocol
        and result.detector_name == fig.detector
        and bool(key.get("whitening")) == fig.whitening
        and bool(key.get("score_norm")) == fig.score_norm
    )


def _count_note(result: Result, fig: PublishedFigure, where: str) -> str:
    counts = (result.dataset or {}).get("counts", {})
    notes = []
    for what, published in (("queries", fig.n_queries), ("references", fig.n_references)):
        mine = counts.get(what)
        if published and mine is not None and where == "result" and int(mine) != published:
            notes.append(f"{what}: yours {int(mine):,}, published {published:,}")
    return "; ".join(notes)


def compare_published(results: list[Result], figures: list[PublishedFigure] | None = None) -> pd.DataFrame:
    """One row per (accuracy result, published figure) that line up, with the difference measured -
    published; a result that lines up with none gets one row saying so (published columns empty)."""
    figures = load_published() if figures is None else figures
    rows = []
    for r in results:
        if r.kind != "accuracy":
            continue
        base = {"benchmark": result_benchmark(r), "subset": r.key.get("subset") or "all",
                "protocol": r.key.get("protocol", "native"),
                "detector": r.detector_name + (" (random weights)" if r.is_random else ""),
                "whitening": bool(r.key.get("whitening")), "score_norm": bool(r.key.get("score_norm"))}  # fmt: skip
        matched = False
        for fig in figures:
            if not _matches(r, fig):
                continue
            value, where = _measured(r, fig)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            matched = True
            rows.append({**base, "subset": fig.subset, "metric": fig.metric, "measured": float(value),
                         "published": fig.value, "difference": float(value) - fig.value, "read_from": where,
                         "counts": _count_note(r, fig, where), "source": fig.source})  # fmt: skip
        if not matched:
            rows.append({**base, "metric": "", "measured": None, "published": None, "difference": None,
                         "read_from": "", "counts": "", "source": "no published figure matches"})  # fmt: skip
    return pd.DataFrame(rows)


def render_published(
    results_dir: str | Path, fmt: str = "terminal", out: str | Path | None = None, subset: str | None = None
) -> str:
    """The comparison table of every result under ``results_dir`` (terminal, md or csv), optionally of one
    subset; returns the text written or to print."""
    from copybench.results import read_results

    if fmt not in ("terminal", "md", "csv"):
        raise ValueError(f"table --published supports terminal, md and csv, not {fmt!r}")
    results, _ = read_results(results_dir)
    frame = compare_published(results)
    if subset and not frame.empty:
        frame = frame[frame["subset"] == subset]
    if frame.empty:
        text = "no accuracy results" + (f" on subset {subset!r}" if subset else "") + "\n"
    elif fmt == "csv":
        text = frame.to_csv(index=False, float_format=lambda v: repr(float(v)))
    else:
        text = _markdown(frame) if fmt == "md" else _terminal(frame)
    if out:
        Path(out).write_text(text)
    return text


def _cells(frame: pd.DataFrame) -> list[list[str]]:
    fmt = lambda v, signed=False: "" if v is None or pd.isna(v) else (f"{v:+.4f}" if signed else f"{v:.4f}")
    rows = []
    for r in frame.itertuples(index=False):
        settings = "+".join(n for n, on in (("whitening", r.whitening), ("score_norm", r.score_norm)) if on)
        rows.append([r.benchmark, r.subset, r.protocol, r.detector, settings or "-", r.metric or "-",
                     fmt(r.measured), fmt(r.published), fmt(r.difference, True), r.read_from, r.counts,
                     r.source])  # fmt: skip
    return rows


_HEADER = ["benchmark", "subset", "protocol", "detector", "settings", "metric", "measured", "published",
           "difference", "read from", "counts differ", "source"]  # fmt: skip


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in _cells(frame)]
    return "\n".join(lines) + "\n"


def _terminal(frame: pd.DataFrame) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(title="measured beside published figures (difference = measured - published)")
    for col in _HEADER:
        table.add_column(col, overflow="fold")
    for row in _cells(frame):
        table.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=220, color_system=None).print(table)
    return buf.getvalue()
