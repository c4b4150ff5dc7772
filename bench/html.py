"""One self-contained HTML leaderboard page: sortable tables (click a header), no external assets."""

from __future__ import annotations

import html
import math

import pandas as pd

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th{cursor:pointer;background:#f4f4f4;user-select:none}
td:first-child,th:first-child,td.text{text-align:left}
tr.random td{color:#b00}
caption{text-align:left;font-weight:600;padding:4px 0}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  const key = tr => { const t = tr.cells[col].dataset.v ?? tr.cells[col].textContent;
                      const n = parseFloat(t); return isNaN(n) ? t : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
"""


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td data-v="-1">-</td>'
    if isinstance(value, float):
        return f'<td data-v="{value}">{value:.3f}</td>'
    if isinstance(value, int):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(frame: pd.DataFrame, caption: str, index: bool = False) -> str:
    if frame.empty:
        return ""
    if index:
        frame = frame.reset_index(names="detector")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cls = ' class="random"' if any("random" in str(v) for v in row) else ""
        rows.append(f"<tr{cls}>" + "".join(_cell(v) for v in row) + "</tr>")
    return (
        f'<table class="sortable"><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def leaderboard_html(acc: pd.DataFrame, groups: pd.DataFrame, thr: pd.DataFrame, ranks: pd.DataFrame) -> str:
    """The page: leaderboard, per-family micro-AP, throughput and rank aggregation."""
    parts = [
        _table(acc, "Leaderboard (µAP: ISC micro-AP; mAP: per-query AP, revisitop). Click a header to sort."),
        _table(groups, "Micro-AP per recipe family", index=True),
        _table(thr, "Throughput (compare only rows measured on the same device)"),
        _table(ranks, "Mean rank across datasets"),
    ]
    note = "<p>Rows in red ran with <b>random weights</b>: their numbers say nothing about the published model.</p>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>copybench leaderboard</title>"
        f"<style>{_STYLE}</style></head><body><h1>copybench leaderboard</h1>{note}{''.join(parts)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
