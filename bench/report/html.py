"""One self-contained HTML leaderboard page: sortable tables (click a header), no external assets."""

from __future__ import annotations

import html
import math

import pandas as pd

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
td{white-space:nowrap}
div.scroll{overflow-x:auto;max-width:100%}
th{cursor:pointer;background:#f4f4f4;user-select:none}
th.text,td.text{text-align:left}
td.random{color:#b00;font-weight:600}
caption{text-align:left;font-weight:600;padding:4px 0}
p.meta{color:#555;font-size:90%}
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


def _is_text(series: pd.Series) -> bool:
    """A column is text unless every value is a number or missing (headers align like their cells)."""
    return not all(v is None or isinstance(v, (int, float)) for v in series)


def _cell(value, text: bool, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f'<td{" class=text" if text else ""} data-v="-1">-</td>'
    if text:
        # only the weights status is painted: a detector or setting whose name contains "random" is not
        random = column == "weights" and str(value) == "random"
        return f'<td class="text{" random" if random else ""}">{html.escape(str(value))}</td>'
    if isinstance(value, float):
        return (
            f'<td data-v="{value}">{value:,.1f}</td>'
            if abs(value) >= 100
            else f'<td data-v="{value}">{value:.3f}</td>'
        )
    return f"<td>{value}</td>"


def _table(frame: pd.DataFrame, caption: str, index: bool = False) -> str:
    if frame.empty:
        return ""
    if index:
        frame = frame.reset_index(names="detector")
    frame = frame.astype(object).where(frame.notna(), None)
    text = {c: _is_text(frame[c]) for c in frame.columns}
    head = "".join(f"<th{' class=text' if text[c] else ''}>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = [
        "<tr>" + "".join(_cell(v, text[c], str(c)) for c, v in zip(frame.columns, row)) + "</tr>"
        for row in frame.itertuples(index=False)
    ]
    # cells never wrap (names are copied from here); a table wider than the window scrolls sideways
    return (
        f'<div class="scroll"><table class="sortable"><caption>{html.escape(caption)}</caption><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def leaderboard_html(
    acc: pd.DataFrame,
    groups: pd.DataFrame,
    thr: pd.DataFrame,
    ranks: pd.DataFrame,
    *,
    both: pd.DataFrame | None = None,
    meta: str = "",
) -> str:
    """The page: leaderboard, accuracy beside speed, per-family micro-AP, throughput and rank aggregation;
    ``meta`` (date, commits) is shown under the title."""
    parts = [
        _table(acc, "Leaderboard (µAP: ISC micro-AP; mAP: per-query AP, revisitop). Click a header to sort."),
        _table(both if both is not None else pd.DataFrame(), "Accuracy beside end-to-end speed"),
        _table(groups, "Micro-AP per recipe family", index=True),
        _table(thr, "Throughput (compare only rows measured on the same device)"),
        _table(ranks, "Mean rank across datasets (within each protocol)"),
    ]
    note = (
        "<p>A weights cell in red says <b>random</b>: that detector ran with random weights, and its numbers "
        "say nothing about the published model.</p>"
    )
    if "protocol" in acc and acc["protocol"].nunique() > 1:  # sorting by a metric would mix them: say so
        note += (
            "<p><b>Several protocols</b> (column <i>protocol</i>, docs/PROTOCOLS.md): rows of different protocols "
            "are not comparable; the mean ranks are computed within each protocol.</p>"
        )
    meta_html = f'<p class="meta">{html.escape(meta)}</p>' if meta else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>copybench leaderboard</title>"
        f"<style>{_STYLE}</style></head><body><h1>copybench leaderboard</h1>{meta_html}{note}{''.join(parts)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
