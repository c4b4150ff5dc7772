"""The HTML leaderboard (``copybench table --format html``): one self-contained page, rendered from the Jinja2
template ``templates/leaderboard.html``.

One board per dataset and protocol, each with that protocol's headline columns and CIs (every column under a
fold), its per-family breakdown sorted by the metric, and its plots as inline SVG (precision-recall curves,
per-family bars); then throughput, accuracy beside speed and mean ranks. Dataset and fingerprint are said once
per board, not on every row, and nothing needs a horizontal scrollbar on a laptop screen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from copybench.report.cells import table
from copybench.report.table import (
    boards,
    protocol_view,
    rank_aggregate,
    side_by_side,
)
from copybench.results import Result

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).with_name("templates")
SITE_CSS = Path(__file__).parent / "site" / "static" / "style.css"  # shared with `copybench publish`
GROUP_METRIC = {"dcr": ("map", "mAP"), "dino": ("map", "mAP")}  # per-family metric; else micro-AP


def family_frame(results: list[Result], protocol: str) -> pd.DataFrame:
    """Detectors x recipe families of one board, best detector (overall) first."""
    key, _ = GROUP_METRIC.get(protocol, ("micro_ap", "µAP"))
    rows = {}
    for r in sorted(results, key=lambda r: -(r.metrics.get(key) or 0)):
        label = r.detector_name + (" (random weights)" if r.is_random else "")
        rows[label] = {g: (m or {}).get(key) for g, m in sorted(r.groups.items()) if "/" not in g}
    return pd.DataFrame.from_dict(rows, orient="index")


def _figures(results: list[Result], palette: dict, title: str) -> tuple[list[str], list[str]]:
    """Inline SVGs of the board's PR curves and family bars; a note instead where they cannot be drawn."""
    from copybench.report.plots import _label, family_figure, pr_figure, predictions_arrays, svg_text

    figures, notes = [], []
    try:
        arrays = {_label(r): predictions_arrays(r) for r in results}
        figures.append(svg_text(pr_figure(results, arrays, palette, f"pooled precision-recall: {title}")))
    except (OSError, ValueError, KeyError) as exc:  # predictions or dataset not here: the table still stands
        notes.append(f"no precision-recall plot: {exc}")
    if any(r.groups for r in results):
        figures.append(svg_text(family_figure(results, palette, f"micro-AP per recipe family: {title}")))
    return figures, notes


def _counts(results: list[Result]) -> str:
    counts = (results[0].dataset or {}).get("counts") or {}
    parts = [f"{counts[k]} {k}" for k in ("queries", "distractors", "references") if k in counts]
    return ", ".join(parts) or "counts not recorded"


def _boards(results: list[Result], acc: pd.DataFrame, columns: str, plots: bool) -> list[dict]:
    import matplotlib

    from copybench.report.plots import colours

    matplotlib.use("Agg")
    palette = colours([r for r in results if r.kind == "accuracy"])
    out = []
    for name, fp, protocol, part in boards(acc):
        own = [
            r
            for r in results
            if r.kind == "accuracy"
            and r.dataset_name == name
            and r.fingerprint.startswith(fp)
            and r.key.get("protocol", "native") == protocol
        ]
        own.sort(key=lambda r: -(r.metrics.get("micro_ap") or r.metrics.get("map") or 0))
        figures, notes = _figures(own, palette, f"{name} ({protocol})") if plots else ([], [])
        _, metric = GROUP_METRIC.get(protocol, ("micro_ap", "µAP"))
        out.append(
            {
                "dataset": name,
                "fingerprint": fp,
                "protocol": protocol,
                "counts": _counts(own),
                "leaderboard": table(protocol_view(part, protocol, columns)),
                "all_columns": table(protocol_view(part, protocol, "all"))
                if columns != "all"
                else table(pd.DataFrame()),
                "families": table(family_frame(own, protocol), f"{metric} per recipe family", index=True),
                "figures": figures,
                "notes": notes,
            }
        )
    return out


def _robustness(results: list[Result], plots: bool) -> list[dict]:
    """Robustness profiles of the sweep results shown (none for other recipes)."""
    from copybench.robustness.html import robustness_views

    return robustness_views(results, plot=plots)


def leaderboard_html(
    results: list[Result],
    acc: pd.DataFrame,
    thr: pd.DataFrame,
    *,
    columns: str = "headline",
    meta: str = "",
    plots: bool = True,
) -> str:
    """The page: a board per dataset and protocol, then speed and mean ranks; ``meta`` (date, commits) under the
    title. ``plots=False`` leaves the inline figures out."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    extra = [
        table(side_by_side(acc, thr), "Accuracy beside end-to-end speed"),
        table(thr, "Throughput (compare only rows measured on the same device)"),
        table(
            rank_aggregate(acc),
            "Mean rank over the datasets every ranked detector ran on (within each protocol)",
        ),
    ]
    return env.get_template("leaderboard.html").render(
        css=SITE_CSS.read_text(encoding="utf-8")
        + (TEMPLATES / "leaderboard.css").read_text(encoding="utf-8"),
        meta=meta,
        mixed="protocol" in acc and acc["protocol"].nunique() > 1,
        boards=_boards(results, acc, columns, plots),
        robustness=_robustness(results, plots),
        extra=extra,
    )
