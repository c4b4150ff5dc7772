"""Published figures (``published.csv``) beside the user's own results: ``copybench table --published``.

Each published row names its benchmark (``disc21``, ``copydays``), query subset (``all`` for the whole imported
set, or a name from :mod:`copybench.datasets.subsets`), protocol, detector, whether descriptors were whitened
and scores normalised, the metric and its value, and where the figure comes from. A result lines up with a
published row when all of these agree; the result's subset is its ``--subset`` or, for a whole-dataset result,
a family subset read from its per-family metrics (Copydays ``strong`` is the ``strong`` family's group).

A published figure is shown beside a result only when :func:`pair_published` pairs them: same benchmark,
detector, subset, protocol, whitening and score normalisation, and the query/reference counts the source gives
equal the result's. A figure of the same benchmark and detector that fails any of these is listed apart with the
reason (a 188-query DISC21 import is not SSCD's 25,000-query validation set; a row whose source ran 500,000
predictions in total is no ``isc`` run).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from copybench.results import Result

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Pairing:
    """Whether a published figure may be shown beside a result, the value measured for it, and why not."""

    paired: bool
    measured: float | None
    read_from: str
    reason: str  # "" when paired
    counts: str = ""  # the counts that differ, "" when they agree (or the source gives none)


def candidate(result: Result, fig: PublishedFigure) -> bool:
    """The figure is about this result's benchmark and detector (so it is either paired, or listed apart)."""
    return result_benchmark(result) == fig.benchmark and result.detector_name == fig.detector


def _setting_reason(result: Result, fig: PublishedFigure) -> str:
    key = result.key
    protocol = key.get("protocol", "native")
    if protocol != fig.protocol:
        return f"published under protocol {fig.protocol}, this run under {protocol}"
    for name, published in (("whitening", fig.whitening), ("score_norm", fig.score_norm)):
        if bool(key.get(name)) != published:
            has, lacks = ("with", "without") if published else ("without", "with")
            return f"published {has} {name}, this run {lacks}"
    return ""


def _count_note(result: Result, fig: PublishedFigure, where: str) -> str:
    """The counts that differ ("" when equal): queries of the subset read, references of the dataset."""
    counts = dict((result.dataset or {}).get("counts", {}))
    if where.startswith("group "):
        counts["queries"] = (result.groups.get(where[6:]) or {}).get("n_queries")
    notes = []
    for what, published in (("queries", fig.n_queries), ("references", fig.n_references)):
        mine = counts.get(what)
        if published and (mine is None or int(mine) != published):
            notes.append(
                f"{what}: yours {'unknown' if mine is None else f'{int(mine):,}'}, published {published:,}"
            )
    return "; ".join(notes)


def pair_published(result: Result, fig: PublishedFigure) -> Pairing:
    """The pairing rule of every published comparison (``table --published``, the site): a figure is shown
    beside a result only when benchmark, detector, subset, protocol, whitening, score normalisation and the
    query/reference counts its source gives all agree; otherwise ``reason`` says which does not."""
    if not candidate(result, fig):
        return Pairing(False, None, "", "another benchmark or detector")
    value, where = _measured(result, fig)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Pairing(False, None, "", f"this run has no {fig.metric} on subset {fig.subset!r}")
    reason = _setting_reason(result, fig)
    if result.is_random:  # a figure is for the released weights; random ones say nothing about them
        reason = "this run has random weights; the figure is for the released ones"
    counts = _count_note(result, fig, where)
    if not reason and counts:
        reason = f"another query/reference set ({counts})"
    return Pairing(not reason, float(value), where, reason, counts)


def compare_published(results: list[Result], figures: list[PublishedFigure] | None = None) -> pd.DataFrame:
    """One row per (accuracy result, published figure of its benchmark and detector): ``paired`` rows carry
    the difference measured - published, the others (``paired`` False) the ``reason`` they are not
    comparable and no difference; a result with no such figure gets one row saying so."""
    figures = load_published() if figures is None else figures
    rows = []
    for r in results:
        if r.kind != "accuracy":
            continue
        base = {"benchmark": result_benchmark(r), "subset": r.key.get("subset") or "all",
                "protocol": r.key.get("protocol", "native"),
                "detector": r.detector_name + (" (random weights)" if r.is_random else ""),
                "whitening": bool(r.key.get("whitening")), "score_norm": bool(r.key.get("score_norm"))}  # fmt: skip
        found = [(fig, pair_published(r, fig)) for fig in figures if candidate(r, fig)]
        for fig, p in found:
            rows.append({**base, "subset": fig.subset, "metric": fig.metric, "measured": p.measured,
                         "published": fig.value, "difference": p.measured - fig.value if p.paired else None,
                         "read_from": p.read_from, "counts": p.counts, "paired": p.paired, "reason": p.reason,
                         "published_protocol": fig.protocol, "source": fig.source})  # fmt: skip
        if not found:
            rows.append({**base, "metric": "", "measured": None, "published": None, "difference": None,
                         "read_from": "", "counts": "", "paired": False, "reason": "no published figure",
                         "published_protocol": "", "source": "no published figure matches"})  # fmt: skip
    return pd.DataFrame(rows)


def render_published(
    results_dir: str | Path, fmt: str = "terminal", out: str | Path | None = None, subset: str | None = None
) -> str:
    """The comparison table of every result under ``results_dir`` (terminal, md or csv), optionally of one
    subset; returns the text written or to print."""
    from copybench.results import read_results

    if fmt not in ("terminal", "md", "csv"):
        raise ValueError(f"table --published supports terminal, md and csv, not {fmt!r}")
    results, errors = read_results(results_dir)
    for error in errors:  # named on stderr, never dropped without a word
        log.warning("skipped %s", error)
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


def _cells(frame: pd.DataFrame, apart: bool = False) -> list[list[str]]:
    fmt = lambda v, signed=False: "" if v is None or pd.isna(v) else (f"{v:+.4f}" if signed else f"{v:.4f}")
    rows = []
    for r in frame.itertuples(index=False):
        settings = "+".join(n for n, on in (("whitening", r.whitening), ("score_norm", r.score_norm)) if on)
        head = [r.benchmark, r.subset, r.protocol, r.detector, settings or "-", r.metric or "-"]
        if apart:
            rows.append([*head, fmt(r.published), r.published_protocol or "-", r.reason, r.source])
        else:
            rows.append(
                [*head, fmt(r.measured), fmt(r.published), fmt(r.difference, True), r.read_from, r.source]
            )
    return rows


_HEADER = ["benchmark", "subset", "protocol", "detector", "settings", "metric", "measured", "published",
           "difference", "read from", "source"]  # fmt: skip
_APART = ["benchmark", "subset", "protocol", "detector", "settings", "metric", "published", "published under",
          "not comparable because", "source"]  # fmt: skip
_TITLES = ("measured beside published figures (difference = measured - published)",
           "published figures listed apart (not the same protocol, settings or query/reference set)")  # fmt: skip


def _split(frame: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    paired, apart = frame[frame["paired"]], frame[~frame["paired"]]
    parts = [(_TITLES[0], _HEADER, _cells(paired))] if not paired.empty else []
    return parts + ([(_TITLES[1], _APART, _cells(apart, apart=True))] if not apart.empty else [])


def _markdown(frame: pd.DataFrame) -> str:
    out = []
    for title, header, rows in _split(frame):
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _terminal(frame: pd.DataFrame) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    for title, header, rows in _split(frame):
        table = Table(title=title)
        for col in header:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=buf, width=220, color_system=None).print(table)
    return buf.getvalue()
