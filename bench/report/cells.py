"""Frames as the HTML templates' tables: columns (name, text or number) and rows of cells (text, sort value,
class). Shared by the leaderboard page and the robustness section, below both."""

from __future__ import annotations

import math

import pandas as pd


def _is_text(series: pd.Series) -> bool:
    """A column is text unless every value is a number or missing (headers align like their cells)."""
    return not all(v is None or isinstance(v, (int, float)) for v in series)


def _cell(value, text: bool, column: str) -> dict:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"text": "-", "v": -1, "cls": "text" if text else None}
    if text:
        # only the weights status is painted: a detector or setting whose name contains "random" is not
        random = column == "weights" and str(value) == "random"
        return {"text": str(value), "v": None, "cls": "text random" if random else "text"}
    if isinstance(value, float):
        return {"text": f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}", "v": value, "cls": None}
    return {"text": str(value), "v": None, "cls": None}


def table(frame: pd.DataFrame, caption: str = "", index: bool = False) -> dict:
    """A frame as the template's table: columns (name, text?) and rows of cells (text, sort value, class)."""
    if frame.empty:
        return {"caption": caption, "columns": [], "rows": []}
    if index:
        frame = frame.reset_index(names="detector")
    frame = frame.astype(object).where(frame.notna(), None)
    text = {c: _is_text(frame[c]) for c in frame.columns}
    columns = [{"name": str(c), "text": text[c]} for c in frame.columns]
    rows = [
        [_cell(v, text[c], str(c)) for c, v in zip(frame.columns, row)]
        for row in frame.itertuples(index=False)
    ]
    return {"caption": caption, "columns": columns, "rows": rows}
