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

from copybench.results import Result

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
    "strong_map": "strong mAP",
    "overall_uap": "µAP (SSCD CD)",
}
MIXED_NOTE = "rows of different protocols are not comparable: each protocol is ranked on its own"
IDENTITY = ("detector", "weights", "params", "similarity")
# what each protocol's original reports first (with its CI); `table --columns all` shows every column
HEADLINE = {
    "native": ("µAP", "µAP 95% CI", "mAP", "R@1", "R@P90"),
    "isc": ("µAP", "µAP 95% CI", "R@P90", "R@1 (ISC)"),
    "dcr": ("mAP", "mAP 95% CI", "R@1 (frac)", "MRR (all q)"),
    "dino": ("mAP", "mAP 95% CI", "µAP"),
}
COLUMN_SETS = ("headline", "all")
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
    parts += [f"norm {key['norm_set_sha256'][:8]}"] if key.get("norm_set_sha256") else []
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


def accuracy_frame(results: list[Result], flags: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per accuracy result, best micro-AP first within each dataset and protocol; ``flags`` (by
    result file) mark rows whose numbers failed verification (copybench.verify), in the detector column."""
    rows, columns = [], _columns(results)
    for r in results:
        if r.kind != "accuracy":
            continue
        m = r.metrics
        flag = (flags or {}).get(str(r.source))
        row = {
            "dataset": r.dataset_name,
            "fingerprint": r.fingerprint[:12],
            "detector": _detector_label(r) + (f" [{flag}]" if flag else ""),
            "weights": r.weights_status,
            "params": _params_label(r),
            "similarity": settings_label(r),
            "protocol": _protocol(r),
        }
        row.update({title: m.get(key) for key, title in columns.items()})
        for key, title in (("micro_ap", "µAP"), ("map", "mAP")):
            ci = m.get(f"{key}_ci") or [None, None]
            row[f"{title} 95% CI"] = f"{ci[0]:.3f}-{ci[1]:.3f}" if None not in ci else ""
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
    """Mean rank of each detector across datasets (1 = best on every dataset), within each protocol.

    Only detectors that ran on every dataset of their protocol are ranked, and over those datasets only: a
    detector run alone on one dataset is never ranked beside one that met them all. The others are listed with
    ``mean_rank`` empty and ``coverage`` saying how many of the datasets they ran on."""
    if frame.empty or frame["dataset"].nunique() < 2:
        return pd.DataFrame()
    if "protocol" not in frame:
        frame = frame.assign(protocol="native")
    rows = []
    for protocol, part in frame.groupby("protocol", sort=True):
        datasets = sorted(part["dataset"].unique())
        if len(datasets) < 2:
            continue
        seen = part.groupby("detector")["dataset"].nunique()
        complete = seen.index[seen == len(datasets)]
        shared = part[part["detector"].isin(complete)]
        ranks = shared.assign(rank=shared.groupby("dataset")[metric].rank(ascending=False, method="min"))
        mean = ranks.groupby("detector")["rank"].mean()
        for detector, n in seen.items():
            rows.append(
                {
                    "protocol": protocol,
                    "detector": detector,
                    "mean_rank": mean.get(detector),
                    "datasets": int(n),
                    "coverage": "all" if n == len(datasets) else f"incomplete: {n} of {len(datasets)}",
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values(["protocol", "mean_rank", "detector"], na_position="last").reset_index(drop=True)


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


def _headline(protocol: str) -> tuple[str, ...]:
    """The protocol's headline columns; for a protocol without an entry, its first metrics (with CIs)."""
    from copybench.protocols import PROTOCOLS

    if protocol in HEADLINE:
        return HEADLINE[protocol]
    titles = {**COLUMNS, **PROTOCOL_COLUMNS}
    keys = PROTOCOLS[protocol].metrics[:4] if protocol in PROTOCOLS else ("micro_ap", "map")
    out = []
    for key in keys:
        out += [titles[key]] if key in titles else []
        out += [f"{titles[key]} 95% CI"] if key in ("micro_ap", "map") else []
    return tuple(out)


COUNTS = ("n_queries", "n_queries_missing", "n_queries_undecodable", "n_with_match")


def protocol_metrics(protocol: str) -> set[str]:
    """The metric keys a protocol reports (with their CIs and the query counts): its board shows these only,
    though every result file holds every metric copybench computes."""
    from copybench.protocols import PROTOCOLS

    keys = set(PROTOCOLS[protocol].metrics if protocol in PROTOCOLS else COLUMNS)
    keys |= {f"{k}_ci" for k in keys} | set(COUNTS)
    return keys | ({"threshold_at_p90"} if "recall_at_p90" in keys else set())


def protocol_view(part: pd.DataFrame, protocol: str, columns: str = "headline") -> pd.DataFrame:
    """One (dataset, protocol) board: its own columns only, best first by its first headline metric.

    ``columns="headline"``: the identity columns, the protocol's headline metrics with CIs, the query count
    (and missing/undecodable counts where any is non-zero); ``"all"``: every column the protocol reports."""
    if columns not in COLUMN_SETS:
        raise ValueError(f"unknown column set {columns!r}; choose {' or '.join(COLUMN_SETS)}")
    titles = {**COLUMNS, **PROTOCOL_COLUMNS}
    own = {titles[k] for k in protocol_metrics(protocol) if k in titles}
    own |= {
        f"{titles[k[:-3]]} 95% CI"
        for k in protocol_metrics(protocol)
        if k.endswith("_ci") and k[:-3] in titles
    }
    foreign = [c for c in part if (c in titles.values() or c.endswith("95% CI")) and c not in own]
    view = part.drop(columns=[c for c in ("dataset", "fingerprint", "protocol", *foreign) if c in part])
    headline = [c for c in _headline(protocol) if c in view]
    if columns == "headline":
        keep = [*IDENTITY, *headline, "queries"]
        keep += [c for c in ("missing", "undecodable") if c in view and (view[c].fillna(0) > 0).any()]
        view = view[[c for c in keep if c in view]]
    first = next((c for c in headline if view[c].dtype.kind == "f"), None)
    if first is not None:
        view = view.sort_values(first, ascending=False, na_position="last", kind="stable")
    return view.reset_index(drop=True)


def boards(acc: pd.DataFrame):
    """(dataset, fingerprint, protocol, rows) for every board, in a stable order."""
    if acc.empty:
        return []
    return [(*key, part) for key, part in acc.groupby(["dataset", "fingerprint", "protocol"], sort=True)]


def board_title(name: str, fp: str, protocol: str) -> str:
    return f"{name} ({fp}), protocol {protocol} - µAP: ISC micro-AP, mAP: per-query AP (revisitop)"


def print_leaderboards(acc: pd.DataFrame, console=None, columns: str = "headline") -> None:
    """One compact terminal table per dataset and protocol, with that protocol's columns."""
    if acc.empty:
        print_terminal(acc, "no accuracy results", console)
        return
    for name, fp, protocol, part in boards(acc):
        print_terminal(protocol_view(part, protocol, columns), board_title(name, fp, protocol), console)


def group_frame(results: list[Result], metric: str = "micro_ap") -> pd.DataFrame:
    """Per-family breakdown: detectors x recipe families for one metric."""
    rows = {}
    for r in results:
        if r.kind == "accuracy":
            label = f"{_detector_label(r)} @ {r.dataset_name}"
            rows[label] = {g: (m or {}).get(metric) for g, m in r.groups.items() if "/" not in g}
    return pd.DataFrame.from_dict(rows, orient="index")


def _terminal(acc: pd.DataFrame, thr: pd.DataFrame, out: str | Path | None, columns: str = "headline") -> str:
    """Print the rich tables, or with ``out`` write them as plain text to that file."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, color_system=None) if out else None
    if not acc.empty or thr.empty:
        print_leaderboards(acc, console, columns)
    if not thr.empty:
        print_terminal(thr, "throughput (compare only rows on the same device)", console)
    both = side_by_side(acc, thr)
    if not both.empty:
        print_terminal(
            both, "accuracy and speed (speed from throughput results of the same detector name)", console
        )
    ranks = rank_aggregate(acc)
    if not ranks.empty:
        print_terminal(
            ranks,
            "mean rank across the datasets every ranked detector ran on (within each protocol)",
            console,
        )
    if console is None:
        return ""
    text = console.file.getvalue()
    Path(out).write_text(text)
    return text


def read_report_results(root: str | Path) -> list[Result]:
    """The results under ``root`` for a report.

    JSON files that are not result files (a dataset's dataset.json, a study's study.json, a scan's summary)
    are skipped with one summary line, not a warning each; a damaged result file is named; a result found
    twice (a copied folder: same detector, dataset, key and metrics) is listed once, and the copies named.
    """
    from copybench.results import KINDS, ResultError, iter_result_files, read_result

    results, foreign, seen = [], [], {}
    for path in iter_result_files(root):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("skipped %s: not readable JSON (%s)", path, exc)
            continue
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            foreign.append(path.name)
            continue
        try:
            result = read_result(path)
        except ResultError as exc:  # on stderr, never inside the CSV/HTML/Markdown written to stdout or --out
            log.warning("skipped %s", exc)
            continue
        identity = json.dumps([result.kind, result.detector_name, result.key, result.metrics], sort_keys=True)
        if identity in seen:
            log.warning("%s: the same result as %s, listed once", path, seen[identity])
            continue
        seen[identity] = path
        results.append(result)
    if foreign:
        names = ", ".join(sorted(set(foreign))[:4]) + (", ..." if len(set(foreign)) > 4 else "")
        log.info("%d JSON file(s) under %s are not result files (%s): not listed", len(foreign), root, names)
    return results


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


def board_key(result: Result) -> str:
    """The file-name key of a result's board: ``<dataset>-<fingerprint>``, plus ``__<protocol>`` when not
    native (so the native plots keep the names they always had)."""
    protocol = result.key.get("protocol", "native")
    base = f"{result.dataset_name}-{result.fingerprint[:12]}"
    return base if protocol == "native" else f"{base}__{protocol}"


def __getattr__(name: str):
    # render_table moved to copybench.report.render (it imports this module's renderers' modules)
    if name == "render_table":
        import importlib

        return importlib.import_module("copybench.report.render").render_table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
