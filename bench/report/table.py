"""Leaderboards from result files: terminal (rich), Markdown, CSV and a self-contained sortable HTML page.

Rows computed with random weights are marked in the detector column ("(random weights)") and in the weights
column, in every format. Throughput results, when present, join their accuracy rows by detector and device.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from copybench.results import Result, read_results

log = logging.getLogger(__name__)

COLUMNS = {  # metric key -> column title
    "micro_ap": "µAP",
    "map": "mAP",
    "recall@1": "R@1",
    "recall@10": "R@10",
    "recall_at_p90": "R@P90",
    "mrr": "MRR",
}
# the metric definitions only some protocols report (docs/PROTOCOLS.md): shown when such results are present
PROTOCOL_COLUMNS = {
    "recall_frac@1": "R@1 (frac)",
    "recall_frac@5": "R@5 (frac)",
    "recall_frac@10": "R@10 (frac)",
    "mrr_all": "MRR (all q)",
    "precision_rv@10": "P@10 (rv)",
    "isc_recall@1": "R@1 (ISC)",
    "isc_recall@10": "R@10 (ISC)",
}
MIXED_NOTE = "rows of different protocols are not comparable: each protocol is ranked on its own"
FORMATS = ("terminal", "md", "csv", "html", "parquet")
RANDOM_SUFFIX = " (random weights)"


def _detector_label(result: Result) -> str:
    return result.detector_name + RANDOM_SUFFIX if result.is_random else result.detector_name


def settings_label(result: Result) -> str:
    """Every setting that tells two results of one detector apart, e.g. ``split4+whitening+bf16+top10``."""
    s, key = result.settings, result.key
    similarity = s.get("similarity", "cosine")
    parts = [similarity + (str(s["chunks"]) if s.get("chunks") and similarity != "cosine" else "")]
    parts += [p for p in ("whitening", "score_norm") if s.get(p)]
    parts += [s["dtype"]] if s.get("dtype", "fp32") != "fp32" else []
    parts += ["ms" + "-".join(f"{x:g}" for x in s["multiscale"])] if s.get("multiscale") else []
    parts += [f"top{key['topk']}"] if key.get("topk") else []
    parts += [f"subset {key['subset']}"] if key.get("subset") else []
    return "+".join(parts)


def _protocol(result: Result) -> str:
    return result.key.get("protocol", "native")


def _columns(results: list[Result]) -> dict[str, str]:
    """The common metric columns plus those of every non-native protocol present."""
    from copybench.protocols import PROTOCOLS

    cols = dict(COLUMNS)
    for name in sorted({_protocol(r) for r in results if r.kind == "accuracy"}):
        for key in PROTOCOLS[name].metrics if name in PROTOCOLS else ():
            if key in PROTOCOL_COLUMNS:
                cols[key] = PROTOCOL_COLUMNS[key]
    return cols


def _params_label(result: Result) -> str:
    """Parameters of the detector's architecture, e.g. ``86.2M`` (blank for results without metadata)."""
    params = ((result.detector or {}).get("meta") or {}).get("params")
    return "" if params is None else f"{params / 1e6:.1f}M" if params else "0"


def accuracy_frame(results: list[Result]) -> pd.DataFrame:
    """One row per accuracy result, best micro-AP first within each dataset and protocol."""
    rows, columns = [], _columns(results)
    for r in results:
        if r.kind != "accuracy":
            continue
        m = r.metrics
        row = {
            "dataset": r.dataset_name,
            "fingerprint": r.fingerprint[:12],
            "detector": _detector_label(r),
            "weights": r.weights_status,
            "params": _params_label(r),
            "similarity": settings_label(r),
            "protocol": _protocol(r),
        }
        row.update({title: m.get(key) for key, title in columns.items()})
        ci = m.get("micro_ap_ci") or [None, None]
        row["µAP 95% CI"] = f"{ci[0]:.3f}-{ci[1]:.3f}" if None not in ci else ""
        row["queries"] = m.get("n_queries")
        # queries that counted as misses because they were missing or did not decode (None: older results)
        row["missing"] = m.get("n_queries_missing")
        row["undecodable"] = m.get("n_queries_undecodable")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = frame.sort_values(
        ["dataset", "protocol", "µAP"], ascending=[True, True, False], na_position="last"
    )
    return order.reset_index(drop=True)


def throughput_frame(results: list[Result]) -> pd.DataFrame:
    """One row per throughput measurement (detector, device, dtype, batch)."""
    rows = []
    for r in results:
        if r.kind != "throughput":
            continue
        for m in r.measurements:
            rows.append(
                {
                    "detector": _detector_label(r),
                    "weights": r.weights_status,
                    "device": r.environment.get("device_name"),
                    "dtype": m.get("dtype"),
                    "batch": m.get("batch_size"),
                    "model img/s": m.get("model_ips"),
                    "end-to-end img/s": m.get("e2e_ips"),
                    "e2e/model": m.get("e2e_over_model"),
                    "e2e x reference": m.get("e2e_speedup_vs_reference"),
                    "retrieval q/s": m.get("retrieval_qps"),
                }
            )
    return pd.DataFrame(rows)


def side_by_side(acc: pd.DataFrame, thr: pd.DataFrame) -> pd.DataFrame:
    """Accuracy beside speed: each accuracy row with its detector's best end-to-end rate on each device."""
    if acc.empty or thr.empty:
        return pd.DataFrame()
    # speed does not depend on weight values, so rows join on the bare detector name
    bare = thr.assign(name=thr["detector"].str.removesuffix(RANDOM_SUFFIX))
    best = bare.groupby(["name", "device"])["end-to-end img/s"].max().unstack("device")
    best.columns = [f"e2e img/s ({c})" for c in best.columns]
    keep = acc[["dataset", "detector", "weights", "similarity", "µAP", "mAP"]]
    keep = keep.assign(name=keep["detector"].str.removesuffix(RANDOM_SUFFIX))
    return keep.merge(best, left_on="name", right_index=True, how="inner").drop(columns="name")


def rank_aggregate(frame: pd.DataFrame, metric: str = "µAP") -> pd.DataFrame:
    """Mean rank of each detector across datasets (1 = best on every dataset), with the number of datasets;
    ranked within each protocol, never across protocols."""
    if frame.empty or frame["dataset"].nunique() < 2:
        return pd.DataFrame()
    by = ["dataset", "protocol"] if "protocol" in frame else ["dataset"]
    ranks = frame.assign(rank=frame.groupby(by)[metric].rank(ascending=False, method="min"))
    who = ["protocol", "detector"] if "protocol" in frame else ["detector"]
    agg = ranks.groupby(who).agg(mean_rank=("rank", "mean"), datasets=("dataset", "nunique"))
    return agg.sort_values(who[:-1] + ["mean_rank"]).reset_index()


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table."""
    if frame.empty:
        return "_no results_\n"
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    body = "".join("| " + " | ".join(_fmt(v) for v in row) + " |\n" for row in frame.itertuples(index=False))
    return head + body


def print_terminal(frame: pd.DataFrame, title: str, console=None) -> None:
    """Rich tables that fit the console: cells are never cut; columns that do not fit continue in a further
    table that repeats the first (identifier) column. Random-weight rows in red."""
    from copybench.progress import console as make_console

    console = console or make_console()
    formatted = frame.map(_fmt) if not frame.empty else frame
    columns = list(frame.columns)
    for n, part in enumerate(column_chunks(formatted, console.width)):
        label = title if n == 0 else f"{title} (continued: {', '.join(map(str, part[1:]))})"
        console.print(_rich_table(frame, formatted, [columns[0], *part[1:]] if n else part, label))


def _rich_table(frame: pd.DataFrame, formatted: pd.DataFrame, columns: list, title: str):
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        numeric = frame[col].dtype.kind in "fi"
        widest = max([len(v) for v in formatted[col]] + [len(str(col))])
        # identifiers, numbers and headers are never wrapped or cut (a cut header hides which metric it is)
        table.add_column(str(col), justify="right" if numeric else "left", no_wrap=True, min_width=widest)
    weights = list(frame["weights"]) if "weights" in frame.columns else [""] * len(frame)
    for row, status in zip(formatted[columns].itertuples(index=False), weights):
        table.add_row(*row, style="red" if "random" in str(status) else None)
    return table


def column_chunks(formatted: pd.DataFrame, width: int) -> list[list]:
    """Columns split into groups that each fit ``width`` (rich: 3 characters of padding and rule per column,
    plus 1); every group after the first starts with the first column again, so each row stays identified."""
    columns = list(formatted.columns)
    if not columns:
        return [columns]
    need = {c: max([len(v) for v in formatted[c]] + [len(str(c))]) + 3 for c in columns}
    chunks, current, used = [], [columns[0]], 1 + need[columns[0]]
    for col in columns[1:]:
        if used + need[col] > width and len(current) > 1:
            chunks.append(current)
            current, used = [columns[0]], 1 + need[columns[0]]
        current.append(col)
        used += need[col]
    return [*chunks, current]


def _foreign(frame: pd.DataFrame, protocol: str) -> list[str]:
    """Columns of metric definitions that this protocol does not report."""
    from copybench.protocols import PROTOCOLS

    own = PROTOCOLS[protocol].metrics if protocol in PROTOCOLS else ()
    return [title for key, title in PROTOCOL_COLUMNS.items() if title in frame and key not in own]


def print_leaderboards(acc: pd.DataFrame, console=None) -> None:
    """One compact terminal table per dataset."""
    if acc.empty:
        print_terminal(acc, "no accuracy results", console)
        return
    for (name, fp, protocol), part in acc.groupby(["dataset", "fingerprint", "protocol"], sort=True):
        title = f"{name} ({fp}), protocol {protocol} - µAP: ISC micro-AP, mAP: per-query AP (revisitop)"
        print_terminal(
            part.drop(columns=["dataset", "fingerprint", "protocol", *_foreign(part, protocol)]),
            title,
            console,
        )


def group_frame(results: list[Result], metric: str = "micro_ap") -> pd.DataFrame:
    """Per-family breakdown: detectors x recipe families for one metric."""
    rows = {}
    for r in results:
        if r.kind == "accuracy":
            label = f"{_detector_label(r)} @ {r.dataset_name}"
            rows[label] = {g: (m or {}).get(metric) for g, m in r.groups.items() if "/" not in g}
    return pd.DataFrame.from_dict(rows, orient="index")


def _terminal(acc: pd.DataFrame, thr: pd.DataFrame, out: str | Path | None) -> str:
    """Print the rich tables, or with ``out`` write them as plain text to that file."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, color_system=None) if out else None
    if not acc.empty or thr.empty:
        print_leaderboards(acc, console)
    if not thr.empty:
        print_terminal(thr, "throughput (compare only rows on the same device)", console)
    both = side_by_side(acc, thr)
    if not both.empty:
        print_terminal(
            both, "accuracy and speed (speed from throughput results of the same detector name)", console
        )
    ranks = rank_aggregate(acc)
    if not ranks.empty:
        print_terminal(ranks, "mean rank across datasets (within each protocol)", console)
    if console is None:
        return ""
    text = console.file.getvalue()
    Path(out).write_text(text)
    return text


def render_table(results_dir: str | Path, fmt: str = "terminal", out: str | Path | None = None) -> str:
    """Render the leaderboard of every result under ``results_dir``; returns the text written (or printed)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not out:
            raise ValueError("--format parquet writes a binary file: give --out FILE.parquet")
        from copybench.report.tidy import export_results

        export_results(results_dir, out, "parquet")
        return ""
    results, errors = read_results(results_dir)
    for error in errors:  # on stderr, never inside the CSV/HTML/Markdown written to stdout or --out
        log.warning("skipped %s", error)
    acc, thr = accuracy_frame(results), throughput_frame(results)
    if fmt == "terminal":
        return _terminal(acc, thr, out)
    if fmt == "csv":  # tidy: one row per (result, group), identifier headers, CIs as two columns
        from copybench.report.tidy import results_frame

        text = results_frame(results, "accuracy", Path(results_dir)).to_csv(index=False)
    elif fmt == "html":
        from copybench.report.html import leaderboard_html

        both = side_by_side(acc, thr)
        text = leaderboard_html(
            acc, group_frame(results), thr, rank_aggregate(acc), both=both, meta=_meta(results)
        )
    else:
        parts = [frame for frame in (acc, thr, side_by_side(acc, thr)) if not frame.empty]
        text = "\n".join(to_markdown(frame) for frame in parts) if parts else to_markdown(acc)
        if not acc.empty and acc["protocol"].nunique() > 1:
            text = f"_{MIXED_NOTE}_\n\n" + text
    if out:
        Path(out).write_text(text)
    return text


def _meta(results: list[Result]) -> str:
    """When the page was made and from which code: the commits the results were computed at."""
    from datetime import datetime, timezone

    from copybench.env import git_commit

    commits = sorted({(r.environment.get("git_commit") or "unknown")[:12] for r in results})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (git_commit() or "unknown")[:12]
    return f"generated {now} at commit {page}; results computed at commit {', '.join(commits) or '-'}"


def records(frame: pd.DataFrame) -> str:
    """JSON records of a frame (for the HTML page's data)."""
    return json.dumps(json.loads(frame.to_json(orient="records")))
