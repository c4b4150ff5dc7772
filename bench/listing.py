"""Listings that fit (``list detectors | protocols | recipes | subsets``, ``weights list``).

In the terminal a listing is a table laid out at the console's width (``$COLUMNS`` on a pipe): the columns the
listing exists for (a detector's name, its weights status) are never cut or wrapped; when the width is short,
the least needed columns are left out, the caption names them, and long sources are shortened to host and file.
``--format csv|json`` writes every column whole (full URLs), for scripts. Only rich is imported, on use.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

FORMATS = ("table", "csv", "json")
PAD = 3  # what a rich column adds to its text: one space each side and a border
FOLD_MIN = 16  # free text (descriptions, checks) may wrap, but not narrower than this


@dataclass(frozen=True)
class Column:
    """One column of a listing: ``key`` into the shown row, ``drop``: 0 is never left out, otherwise the
    highest number goes first when the terminal is too narrow; ``fold``: free text that may wrap."""

    key: str
    drop: int = 0
    fold: bool = False


def short_source(source: str) -> str:
    """A URL as host and file (``dl.fbaipublicfiles.com/.../dino_vitb16.pth``); anything else unchanged."""
    if not source.startswith(("http://", "https://")):
        return source
    parts = urlsplit(source)
    path = parts.path.rstrip("/")
    file = path.rsplit("/", 1)[-1]
    middle = "/.../" if path.count("/") > 1 else "/"
    return f"{parts.netloc}{middle}{file}" if file else parts.netloc


def _needed(column: Column, cells: Sequence[dict]) -> int:
    width = max(
        [len(column.key)] + [len(line) for row in cells for line in str(row[column.key]).splitlines()]
    )
    return min(width, max(FOLD_MIN, len(column.key))) if column.fold else width


def fit(columns: Sequence[Column], cells: Sequence[dict], width: int) -> tuple[list[Column], list[Column]]:
    """(shown, left out): the columns that fit in ``width``, leaving out the highest ``drop`` first."""
    shown, left_out = list(columns), []
    while 1 + sum(_needed(c, cells) + PAD for c in shown) > width:
        candidates = [c for c in shown if c.drop]
        if not candidates:
            break
        worst = max(candidates, key=lambda c: c.drop)
        shown.remove(worst)
        left_out.append(worst)
    return shown, left_out


def write_records(records: Sequence[dict], fmt: str) -> None:
    """Every field whole on stdout: CSV (a header row) or JSON (a list of objects)."""
    if fmt == "json":
        sys.stdout.write(json.dumps(list(records), indent=1, default=str) + "\n")
        return
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for record in records for key in record))  # every row's fields, in order
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    sys.stdout.write(buffer.getvalue())


def print_listing(
    title: str,
    columns: Sequence[Column],
    cells: Sequence[dict],
    records: Sequence[dict],
    fmt: str = "table",
    styles: Sequence[str | None] | None = None,
) -> None:
    """``records`` (every field, full values) as CSV/JSON, or ``cells`` (shortened for the terminal) as a table
    of ``columns`` that fits the console; ``styles``: one rich style per row."""
    if fmt != "table":
        write_records(records, fmt)
        return
    from rich.table import Table

    from .progress import console

    out = console()
    shown, left_out = fit(columns, cells, out.width)
    caption = None
    if left_out:
        names = ", ".join(c.key for c in left_out)
        caption = f"not shown at {out.width} columns: {names} (--format csv or json shows every column)"
    table = Table(title=title, caption=caption)
    for col in shown:
        if col.fold:
            table.add_column(col.key, overflow="fold", min_width=min(_needed(col, cells), FOLD_MIN))
        else:  # never cut, never wrapped: the table gives way elsewhere
            table.add_column(col.key, no_wrap=True, min_width=_needed(col, cells))
    for i, row in enumerate(cells):
        table.add_row(*(str(row[c.key]) for c in shown), style=styles[i] if styles else None)
    out.print(table)


def add_format_option(parser) -> None:
    """``--format table|csv|json`` on a listing command."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: fits the terminal (least needed columns left out, sources shortened to host and file); "
        "csv or json: every column whole, full URLs",
    )
