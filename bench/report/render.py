"""``copybench table``: the leaderboard of a results folder in one format (terminal, Markdown, tidy CSV or
Parquet, the HTML page). It picks the renderer; :mod:`.table` builds the frames the renderers share."""

from __future__ import annotations

from pathlib import Path

from copybench.report.table import (
    COLUMN_SETS,
    FORMATS,
    _meta,
    _protocol,
    _terminal,
    accuracy_frame,
    read_report_results,
    throughput_frame,
)


def render_table(
    results_dir: str | Path,
    fmt: str = "terminal",
    out: str | Path | None = None,
    *,
    columns: str = "headline",
    protocol: str | None = None,
    flags: dict[str, str] | None = None,
) -> str:
    """Render the leaderboard of every result under ``results_dir``; returns the text written (or printed).

    One board per dataset and protocol, with that protocol's columns (``columns="all"``: every column);
    ``protocol`` keeps one protocol's results only; ``flags``: rows to mark, by result file
    (:func:`copybench.verify.table_flags`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if columns not in COLUMN_SETS:
        raise ValueError(f"unknown column set {columns!r}; choose {' or '.join(COLUMN_SETS)}")
    if fmt == "parquet":
        if not out:
            raise ValueError("--format parquet writes a binary file: give --out FILE.parquet")
        from copybench.report.tidy import export_results

        export_results(results_dir, out, "parquet")
        return ""
    results = read_report_results(results_dir)
    if protocol is not None:
        results = [r for r in results if r.kind != "accuracy" or _protocol(r) == protocol]
        if not any(r.kind == "accuracy" for r in results):
            raise ValueError(f"no accuracy result under protocol {protocol!r} in {results_dir}")
    acc, thr = accuracy_frame(results, flags), throughput_frame(results)
    if fmt == "terminal":
        return _terminal(acc, thr, out, columns)
    if fmt == "csv":
        from copybench.report.formats import tidy_csv

        return tidy_csv(results, Path(results_dir), out)
    if fmt == "html":
        from copybench.report.html import leaderboard_html

        text = leaderboard_html(results, acc, thr, columns=columns, meta=_meta(results))
    else:
        from copybench.report.formats import markdown

        text = markdown(acc, thr, columns)
    if out:
        Path(out).write_text(text)
    return text
