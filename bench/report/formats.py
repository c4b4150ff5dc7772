"""The leaderboard as Markdown (one table per dataset and protocol) and as tidy CSV (one file per protocol):
each protocol's board keeps its own columns, never another protocol's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from copybench.report.table import (
    MIXED_NOTE,
    board_title,
    boards,
    protocol_metrics,
    protocol_view,
    side_by_side,
    to_markdown,
)
from copybench.results import Result


def markdown(acc: pd.DataFrame, thr: pd.DataFrame, columns: str) -> str:
    """One Markdown table per dataset and protocol (each with its own columns), then speed."""
    parts = [
        f"### {board_title(name, fp, protocol)}\n\n{to_markdown(protocol_view(part, protocol, columns))}"
        for name, fp, protocol, part in boards(acc)
    ]
    parts += [f"### throughput\n\n{to_markdown(thr)}"] if not thr.empty else []
    both = side_by_side(acc, thr)
    parts += [f"### accuracy and speed\n\n{to_markdown(both)}"] if not both.empty else []
    text = "\n".join(parts) if parts else to_markdown(acc)
    if not acc.empty and acc["protocol"].nunique() > 1:
        text = f"_{MIXED_NOTE}_\n\n" + text
    return text


def tidy_csv(results: list[Result], root: Path, out: str | Path | None) -> str:
    """Tidy CSV (one row per result and group, identifier headers, CIs as two columns), one table per
    protocol: several protocols need ``--out`` (FILE becomes FILE.<protocol>.csv each) or ``--protocol``."""
    from copybench.report.tidy import _metric_columns, column_name, results_frame

    frame = results_frame(results, "accuracy", root)
    protocols = sorted(frame["protocol"].unique()) if "protocol" in frame and not frame.empty else []
    if len(protocols) <= 1:
        text = frame.to_csv(index=False)
        if out:
            Path(out).write_text(text)
        return text
    if not out:
        raise ValueError(
            f"results of {len(protocols)} protocols ({', '.join(protocols)}) make {len(protocols)} tables with "
            "their own columns: give --out FILE (one FILE.<protocol>.csv each) or --protocol NAME"
        )
    out = Path(out)
    texts = []
    metric_columns = {c for r in results if r.kind == "accuracy" for c in _metric_columns(r.metrics)}
    for protocol in protocols:
        own = set(_metric_columns({k: None for k in protocol_metrics(protocol) if not k.endswith("_ci")}))
        own |= {
            f"{column_name(k)}_{end}"
            for k in protocol_metrics(protocol)
            if k.endswith("_ci")
            for end in ("low", "high")
        }
        part = frame[frame["protocol"] == protocol]
        part = part.drop(columns=[c for c in part if c in metric_columns and c not in own])
        target = out.with_name(f"{out.stem}.{protocol}{out.suffix or '.csv'}")
        target.write_text(part.to_csv(index=False))
        texts.append(str(target))
    return "wrote " + ", ".join(texts) + "\n"
