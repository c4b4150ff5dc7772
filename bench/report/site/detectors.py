"""Per-detector pages: the metadata its result files record, its rank on every board, its throughput rows.

Metadata is read from the result files only (``detector.meta``, ``detector.spec``, ``detector.weights``), never
from the installed registry: a site shows what produced its numbers. Where results of one detector record
different weights (a real-weights accuracy run, a random-weights speed run), each is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from copybench.results import safe_name

from .boards import Board, Row
from .inputs import Included


@dataclass
class DetectorPage:
    name: str
    meta: dict[str, Any]
    spec: dict[str, Any]
    weights: list[dict[str, Any]]  # each distinct weights record (status, source, sha256) in the results
    ranks: list[tuple[Board, Row]] = field(default_factory=list)
    throughput: list[Included] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return "detector-" + safe_name(self.name)

    @property
    def preprocessing(self) -> list[tuple[str, str]]:
        """How images were prepared, as the spec records it."""
        s = self.spec
        keys = ("input_size", "resize", "crop_pct", "interpolation", "mean", "std")
        return [
            (k, ", ".join(f"{v:g}" for v in s[k]) if isinstance(s[k], list) else str(s[k]))
            for k in keys
            if k in s
        ]

    @property
    def weights_sha256(self) -> list[str]:
        found = [w.get("sha256") for w in self.weights if w.get("sha256")]
        return sorted(set(found + ([self.meta["weights_hash"]] if self.meta.get("weights_hash") else [])))


def detector_pages(boards: list[Board], throughput: list[Included]) -> list[DetectorPage]:
    """One page per detector name seen in the accuracy or throughput results, sorted by name."""
    pages: dict[str, DetectorPage] = {}
    items = [row.item for b in boards for row in b.rows] + sorted(throughput, key=lambda i: i.label)
    for item in items:
        _page(pages, item)
    for board in boards:
        for row in board.rows:
            pages[row.detector].ranks.append((board, row))
    for item in sorted(throughput, key=lambda i: i.label):
        pages[item.result.detector_name].throughput.append(item)
    return [pages[name] for name in sorted(pages)]


def _page(pages: dict[str, DetectorPage], item: Included) -> None:
    """Create or extend the page of the item's detector: the first result holding metadata supplies it."""
    d = item.result.detector or {}
    page = pages.setdefault(item.result.detector_name, DetectorPage(item.result.detector_name, {}, {}, []))
    page.meta = page.meta or dict(d.get("meta") or {})
    page.spec = page.spec or dict(d.get("spec") or {})
    weights = dict(d.get("weights") or {})
    if weights and weights not in page.weights:
        page.weights.append(weights)


def link(text: str) -> str | None:
    """The URL in a metadata text, when it holds one (papers are often named, sometimes linked)."""
    for word in str(text or "").replace("(", " ").replace(")", " ").split():
        if word.startswith(("https://", "http://")):
            return word.rstrip(".,;")
    return None
