"""The site's pages (Jinja2 templates in ``templates/``), figures and static files, as path -> bytes.

Every page sits at the top of the site, so links are plain file names and work from ``file://``. Figures a page
cannot draw (a result's dataset or predictions are not where the result says) are replaced by a note on the
page and a warning, never by a guess.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from copybench.results import safe_name

from .boards import Board, family_cell, group_metric, published_rows, title
from .detectors import DetectorPage, link
from .inputs import SiteInputs, sha256
from .speed import Speed, points

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


class Pages:
    """Figures, static files and rendered pages of one site."""

    def __init__(self, inputs: SiteInputs, boards: list[Board], detectors: list[DetectorPage],
                 speeds: dict[tuple[str, str], dict[str, Speed]]) -> None:  # fmt: skip
        self.inputs, self.boards, self.detectors, self.speeds = inputs, boards, detectors, speeds
        self.notes: list[str] = []  # every note shown on a page (the command prints them as warnings)
        self.board_notes: dict[str, list[str]] = {b.slug: [] for b in boards}
        self.pr: dict[str, str] = {}  # board slug -> figure path
        self.sheets: dict[str, str] = {}  # board slug -> contact sheet path
        self.pareto: list[dict[str, Any]] = []  # one per (device, image set, board) with points

    def _note(self, board: Board, text: str) -> None:
        self.board_notes[board.slug].append(text)
        self.notes.append(f"{board.title}: {text}")
        log.info("%s: %s", board.title, text)

    # ------------------------------------------------------------------ figures
    def figures(self, *, examples: bool = True) -> dict[str, bytes]:
        """PR curves and contact sheets per board (from the datasets), Pareto plots per (device, image set, board)."""
        from .figures import pareto_figure

        files: dict[str, bytes] = {}
        for board in self.boards:
            files.update(self._board_figures(board, examples))
        for (device, images), speeds in self.speeds.items():
            for board in self.boards:
                found = points(board, speeds)
                if not found:
                    continue
                path = f"figures/speed-{safe_name(device)}--{safe_name(images)}--{board.slug}.svg"
                heading = f"{title(board.headline)} on {board.dataset} ({board.protocol}), speed on {device}, {images}"
                files[path] = pareto_figure(found, board.headline, heading)
                self.pareto.append({"key": (device, images), "board": board, "points": found, "figure": path})
        return files

    def _board_figures(self, board: Board, examples: bool) -> dict[str, bytes]:
        from copybench.report.plots import predictions_arrays
        from copybench.results import load_result_dataset

        from .figures import contact_sheet, pr_figure

        try:
            dataset = load_result_dataset(board.first)
        except (OSError, ValueError) as exc:
            self._note(board, f"no PR curves or example images: {_short(exc)}")
            return {}
        arrays, files = {}, {}
        if board.subset:  # the predictions cover the subset's queries only; the curves would count the rest
            self._note(board, "no PR curves: they are drawn for whole-dataset results only")
        for row in board.rows if not board.subset else []:
            if row.result.predictions_path is None:
                self._note(board, f"{row.label} has no PR curve: its result names no predictions file")
                continue
            try:
                arrays[row.item.raw] = predictions_arrays(row.result)
            except (OSError, ValueError, KeyError, IndexError) as exc:
                self._note(board, f"{row.label} has no PR curve: {_short(exc)}")
        if arrays:
            self.pr[board.slug] = f"figures/pr-{board.slug}.svg"
            files[self.pr[board.slug]] = pr_figure(board, arrays)
        if examples:
            self.sheets[board.slug] = f"figures/examples-{board.slug}.jpg"
            files[self.sheets[board.slug]] = contact_sheet(dataset)
        else:
            self.board_notes[board.slug].append(
                "example images left out of this site (publish --no-examples)"
            )
        return files

    # ------------------------------------------------------------------ static files and pages
    def static(self) -> dict[str, bytes]:
        return {
            f"static/{p.name}": p.read_bytes() for p in sorted((HERE / "static").iterdir()) if p.is_file()
        }

    def render(self, files: dict[str, bytes]) -> dict[str, bytes]:
        """Every HTML page; ``files`` are the site's files so far (downloads are listed with their sizes)."""
        env = environment()
        common = self._common()
        out = {"index.html": env.get_template("index.html").render(**common, page="index")}
        for board in self.boards:
            out[f"board-{board.slug}.html"] = env.get_template("board.html").render(
                **common, page="board", board=board, **self._board_context(board)
            )
        for det in self.detectors:
            out[f"{det.slug}.html"] = env.get_template("detector.html").render(
                **common, page="detector", det=det
            )
        out["speed.html"] = env.get_template("speed.html").render(**common, page="speed", pareto=self.pareto)
        out["downloads.html"] = env.get_template("downloads.html").render(
            **common, page="downloads", downloads=_download_list(files)
        )
        out["not-included.html"] = env.get_template("not-included.html").render(**common, page="not-included")
        return {path: text.encode() for path, text in out.items()}

    def _common(self) -> dict[str, Any]:
        from copybench import __version__

        included = self.inputs.included
        commits = sorted({(i.result.environment.get("git_commit") or "unrecorded")[:12] for i in included})
        versions = sorted({str(i.result.environment.get("copybench") or "unrecorded") for i in included})
        devices = sorted({device for device, _ in self.speeds})
        return {"boards": self.boards, "detectors": self.detectors, "excluded": self.inputs.excluded,
                "speeds": self.speeds, "devices": devices, "version": __version__, "commits": commits,
                "versions": versions, "n_results": len(included), "title": title, "safe_name": safe_name}  # fmt: skip

    def _board_context(self, board: Board) -> dict[str, Any]:
        from copybench.protocols import PROTOCOLS

        beside, apart = published_rows(board)
        metric = group_metric(board)
        cell = lambda row, group: family_cell(row, group, metric)
        return {"protocol": PROTOCOLS[board.protocol], "beside": beside, "apart": apart, "group_metric": metric,
                "cell": cell, "pr": self.pr.get(board.slug), "sheet": self.sheets.get(board.slug),
                "notes": self.board_notes[board.slug], "robustness": _robustness(board)}  # fmt: skip


def _robustness(board: Board) -> list[dict]:
    """The board's robustness profile when its dataset is a severity sweep (none otherwise)."""
    from copybench.robustness.html import robustness_views

    return robustness_views([row.result for row in board.rows])


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300]


def _download_list(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [
        {"path": p, "bytes": len(files[p]), "sha256": sha256(files[p])}
        for p in sorted(files)
        if p.startswith("data/")
    ]


def environment():
    """The Jinja2 environment: autoescaping on, undefined names an error, number filters."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)  # fmt: skip
    basename = lambda path: str(path).rsplit("/", 1)[-1]
    env.filters.update(num=_num, rate=_rate, params=_params, link=link, wbr=_wbr, basename=basename)
    return env


def _wbr(name: str):
    """A detector name that may break after its _ and . separators (phones), never inside a word."""
    from markupsafe import Markup, escape

    return Markup("".join(f"{escape(c)}<wbr>" if c in "_." else str(escape(c)) for c in str(name)))


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None or value == "" else f"{float(value):.{digits}f}"


def _rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.0f}" if value >= 100 else f"{float(value):,.1f}"


def _params(value: Any) -> str:
    """Parameter counts as people say them (86.2M); 0 for parameter-free detectors; blank when unrecorded."""
    if value is None:
        return ""
    return "0" if not value else f"{value / 1e6:.1f}M"
