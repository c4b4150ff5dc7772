"""Leaderboards: one per (dataset fingerprint, protocol), rows ranked by the protocol's headline metric.

A protocol's first metric is its headline (micro-AP under native and isc, mAP under dcr and dino); the board
shows it with its 95 % CI beside the protocol's next metrics. Rows of random weights are ranked below every
row of real (or no) weights and get no rank number: their numbers say nothing about the published model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from copybench.report.table import COLUMNS, PROTOCOL_COLUMNS
from copybench.results import Result, safe_name

from .inputs import Included

# metric key -> column title: the terminal table's, so a metric reads the same everywhere
TITLES = {**COLUMNS, **PROTOCOL_COLUMNS}
SHOWN = 4  # metrics per board: the headline and the protocol's next three


def title(metric: str) -> str:
    return TITLES.get(metric, metric)


@dataclass(frozen=True)
class Row:
    """One result on a board."""

    item: Included
    rank: int | None  # None: random weights, never ranked
    values: dict[str, float | None]
    ci: tuple[float, float] | None  # the headline's 95 % CI

    @property
    def result(self) -> Result:
        return self.item.result

    @property
    def random(self) -> bool:
        return self.result.is_random

    @property
    def detector(self) -> str:
        return self.result.detector_name

    @property
    def label(self) -> str:
        return self.detector + (" (random weights)" if self.random else "")

    @property
    def family(self) -> str:
        return str((self.result.detector.get("spec") or {}).get("family") or "")

    @property
    def params(self) -> int | None:
        return ((self.result.detector or {}).get("meta") or {}).get("params")

    @property
    def settings(self) -> str:
        from copybench.report.table import settings_label

        return settings_label(self.result)


@dataclass
class Board:
    """The results of one dataset (by fingerprint) under one protocol, on one query set: the whole dataset's
    queries, or a named subset (``run --subset``), whose numbers are not comparable with the whole set's."""

    dataset: str
    fingerprint: str
    protocol: str
    metrics: list[str]
    rows: list[Row] = field(default_factory=list)
    subset: str = ""

    @property
    def slug(self) -> str:
        subset = f"-subset-{safe_name(self.subset)}" if self.subset else ""
        return f"{safe_name(self.dataset)}-{self.fingerprint[:12]}-{self.protocol}{subset}"

    @property
    def headline(self) -> str:
        return self.metrics[0]

    @property
    def title(self) -> str:
        subset = f", query subset {self.subset}" if self.subset else ""
        return f"{self.dataset} ({self.fingerprint[:12]}), protocol {self.protocol}{subset}"

    @property
    def first(self) -> Result:
        return self.rows[0].result

    @property
    def dataset_record(self) -> dict[str, Any]:
        return self.first.dataset or {}

    def families(self) -> list[str]:
        return sorted({g for r in self.rows for g in r.result.groups if "/" not in g})

    def tiers(self, family: str) -> list[str]:
        return sorted(
            {g.split("/", 1)[1] for r in self.rows for g in r.result.groups if g.startswith(family + "/")}
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _ci(metrics: dict[str, Any], key: str) -> tuple[float, float] | None:
    ci = metrics.get(f"{key}_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(v) is not None for v in ci):
        return float(ci[0]), float(ci[1])
    return None


def _order(item: Included, headline: str) -> tuple:
    """Real weights before random ones, then the headline metric best first (missing last), then names."""
    from copybench.report.table import settings_label

    value = _number(item.result.metrics.get(headline))
    return (item.result.is_random, value is None, -(value or 0.0), item.result.detector_name,
            settings_label(item.result), item.label)  # fmt: skip


def _rows(items: list[Included], metrics: list[str]) -> list[Row]:
    """Ranked rows: competition ranks (equal headline values share one) over the non-random rows."""
    items = sorted(items, key=lambda i: _order(i, metrics[0]))
    rows, rank, previous = [], 0, object()
    for n, item in enumerate(items, start=1):
        m = item.result.metrics
        value = _number(m.get(metrics[0]))
        if not item.result.is_random and value != previous:
            rank, previous = n, value
        rows.append(Row(item, None if item.result.is_random else rank, {k: _number(m.get(k)) for k in metrics},
                        _ci(m, metrics[0])))  # fmt: skip
    return rows


def build_boards(accuracy: list[Included]) -> list[Board]:
    """The boards of these accuracy results, by dataset name, fingerprint, protocol and query subset."""
    from copybench.protocols import PROTOCOLS

    groups: dict[tuple[str, str, str, str], list[Included]] = {}
    for item in accuracy:
        r = item.result
        where = (r.dataset_name or "unnamed", r.fingerprint, r.key["protocol"], r.key.get("subset") or "")
        groups.setdefault(where, []).append(item)
    boards = []
    for (dataset, fingerprint, protocol, subset), items in sorted(groups.items()):
        metrics = list(PROTOCOLS[protocol].metrics[:SHOWN])
        boards.append(Board(dataset, fingerprint, protocol, metrics, _rows(items, metrics), subset))
    return boards


def family_cell(row: Row, group: str, metric: str) -> tuple[float | None, tuple[float, float] | None]:
    """A row's value of ``metric`` on one family or family/tier group, with its CI."""
    stats = row.result.groups.get(group) or {}
    return _number(stats.get(metric)), _ci(stats, metric)


def group_metric(board: Board) -> str:
    """The metric the per-family tables show: the headline where the groups hold it, else micro-AP."""
    held = {k for r in board.rows for g in r.result.groups.values() for k in (g or {})}
    return board.headline if board.headline in held else "micro_ap"


def published_rows(board: Board):
    """The published figures for this board's results (copybench.report.published's pairing): those whose protocol and
    query/reference counts match beside the measured value, and those paired but not comparable, with why."""
    from copybench.report.published import compare_published

    frame = compare_published([r.result for r in board.rows])
    if frame.empty:
        return [], []
    frame = frame[frame["published"].notna()].fillna("")
    records = frame.sort_values(["detector", "subset", "metric", "source"]).to_dict("records")
    beside = [r for r in records if r["paired"]]  # copybench.report.published.pair_published's rule
    apart = [r for r in records if not r["paired"]]
    return beside, apart
