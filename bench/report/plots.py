"""Plots a person would rather see than read: precision-recall curves, per-family micro-AP bars with CIs,
rank-1 score histograms (PNG) and galleries of missed queries (JPEG).

PR curves are recomputed from each result's raw predictions and its dataset's ground truth, so they never
depend on anything the result file summarised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from copybench.report.table import board_key, settings_label
from copybench.results import Result, load_result_dataset, safe_name, settings_suffix


def predictions_arrays(result: Result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, hits, n_pos) rebuilt from a result's predictions file and its dataset's ground truth."""
    dataset = load_result_dataset(result)
    from copybench.copydays import dataset_rows

    preds = dataset_rows(pd.read_csv(result.predictions_path, dtype={"query_id": str, "reference_id": str}))
    skipped = result.skipped_files("query")
    qids = [q for q, p in zip(dataset.query_ids, dataset.queries["path"]) if p not in skipped]
    k = int(result.settings["topk"])
    row = {q: i for i, q in enumerate(qids)}
    scores = np.full((len(qids), k), -np.inf, dtype=np.float64)
    hits = np.zeros((len(qids), k), dtype=bool)
    r, c = preds["query_id"].map(row).to_numpy(), preds["rank"].to_numpy()
    scores[r, c] = preds["score"].to_numpy()
    hits[r, c] = [ref in dataset.positives[q] for q, ref in zip(preds["query_id"], preds["reference_id"])]
    n_pos = np.array([len(dataset.positives[q]) for q in qids])
    return scores, hits, n_pos


def _label(result: Result) -> str:
    return (
        f"{result.detector_name}{' (random weights)' if result.is_random else ''} ({settings_label(result)})"
    )


LINE_STYLES = ("-", "--", ":", "-.")  # settings variants of one detector (same colour)
HATCHES = ("", "//", "..", "xx")  # the same variants in bar charts


def colours(results: list[Result]) -> dict[str, tuple]:
    """One colour per detector, the same in every plot of one folder (PR curves, family bars, histograms,
    accuracy vs speed): sorted detector names over tab10 (tab20 past ten). Settings variants of one detector
    share its colour and differ by line style."""
    import matplotlib

    names = sorted({r.detector_name for r in results})
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _style(result: Result, group: list[Result]) -> str:
    """Line style telling settings variants of one detector apart within a plot."""
    variants = sorted({_label(r) for r in group if r.detector_name == result.detector_name})
    return LINE_STYLES[variants.index(_label(result)) % len(LINE_STYLES)]


def plot_results(results_dir: str | Path, out: str | Path) -> list[Path]:
    """For every dataset and protocol under ``results_dir`` (one figure each: curves of different protocols
    never share axes): pr_<key>.png (pooled precision-recall curves), families_<key>.png (micro-AP per family
    with 95 % CIs), scores_<key>.png (rank-1 score histograms, correct vs wrong) and
    missed_<key>__<detector>.jpg (queries whose rank-1 reference is wrong). A detector keeps its colour in
    every plot; legends sit outside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    from copybench.report.table import read_report_results

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = [r for r in read_report_results(results_dir) if r.kind == "accuracy"]
    palette = colours(results)
    by_board: dict[str, list[Result]] = {}
    for r in results:
        by_board.setdefault(board_key(r), []).append(r)
    written = []
    for key, group in sorted(by_board.items()):
        group = sorted(group, key=lambda r: -(r.metrics.get("micro_ap") or 0))
        arrays = {_label(r): predictions_arrays(r) for r in group}
        written.append(
            _save(pr_figure(group, arrays, palette, f"pooled precision-recall: {key}"), out / f"pr_{key}.png")
        )
        written.append(
            _save(
                family_figure(group, palette, f"micro-AP per recipe family: {key}"),
                out / f"families_{key}.png",
            )
        )
        written.append(_score_histograms(group, arrays, palette, key, out))
        written += [_missed_gallery(r, arrays[_label(r)], key, out) for r in group]
    return [p for p in written if p is not None]


def pr_figure(group: list[Result], arrays: dict, palette: dict, title: str):
    """Pooled precision-recall curves of one board (one protocol), each labelled with its micro-AP."""
    import matplotlib.pyplot as plt

    from copybench.metrics import pr_curve

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in group:
        precision, recall, _ = pr_curve(*arrays[_label(r)])
        label = f"{_label(r)} µAP={r.metrics['micro_ap']:.3f}"
        ax.plot(recall, precision, label=label, color=palette[r.detector_name], linestyle=_style(r, group))
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    _legend_outside(ax)
    return fig


def _legend_outside(ax) -> None:
    """Legend to the right of the axes, so it never covers a curve or a bar."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def family_figure(group: list[Result], palette: dict, title: str):
    """Grouped bars of micro-AP per recipe family with the bootstrap 95 % CI as error bars."""
    import matplotlib.pyplot as plt

    families = sorted({g for r in group for g in r.groups if "/" not in g})
    width = 0.8 / max(len(group), 1)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(families) + 3), 5))
    x = np.arange(len(families))
    for n, r in enumerate(group):
        stats = [r.groups.get(f) or {} for f in families]
        values = np.array(
            [np.nan if s.get("micro_ap") is None else s["micro_ap"] for s in stats], dtype=float
        )
        ci = np.array([s.get("micro_ap_ci") or [np.nan, np.nan] for s in stats], dtype=float).reshape(-1, 2)
        err = np.abs(np.stack([values - ci[:, 0], ci[:, 1] - values]))  # matplotlib wants distances
        hatch = HATCHES[LINE_STYLES.index(_style(r, group))]
        ax.bar(x + (n - (len(group) - 1) / 2) * width, values, width, label=_label(r),
               color=palette[r.detector_name], hatch=hatch,
               yerr=np.nan_to_num(err), capsize=2, error_kw={"elinewidth": 0.8})  # fmt: skip
    ax.set_xticks(x, families, rotation=30, ha="right")
    ax.set(ylabel="micro-AP (95 % CI)", ylim=(0, 1.05), title=title)
    _legend_outside(ax)
    return fig


def _score_histograms(group: list[Result], arrays: dict, palette: dict, key: str, out: Path) -> Path:
    """Rank-1 scores of each detector: queries whose rank-1 reference is a copy vs the rest (wrong matches
    and distractors). A threshold separates them where the two do not overlap."""
    import matplotlib.pyplot as plt

    # constrained layout places the title right above the first axes (no blank band under it)
    fig, axes = plt.subplots(
        len(group), 1, figsize=(7, 1.6 * len(group) + 0.7), squeeze=False, sharex=True, layout="constrained"
    )
    for ax, r in zip(axes[:, 0], group):
        scores, hits, _ = arrays[_label(r)]
        top1 = scores[:, 0]
        ok = np.isfinite(top1)
        lo, hi = (float(top1[ok].min()), float(top1[ok].max())) if ok.any() else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 31)
        colour = palette[r.detector_name]
        ax.hist(top1[ok & hits[:, 0]], bins=bins, color=colour, alpha=0.8, label="rank 1 is a copy")
        ax.hist(top1[ok & ~hits[:, 0]], bins=bins, color="0.55", alpha=0.6, label="rank 1 is not a copy")
        ax.set_title(_label(r), fontsize=8, loc="left")
        ax.set_ylabel("queries", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[-1, 0].set_xlabel("rank-1 score")
    fig.suptitle(f"rank-1 score histograms: {key}", fontsize=10)
    return _save(fig, out / f"scores_{key}.png")


def _missed_gallery(result: Result, arrays, key: str, out: Path, limit: int = 12) -> Path | None:
    """Queries with a copy in the references whose rank-1 reference is wrong, the most confidently wrong
    first: each query beside the reference it copies and the reference retrieved instead (JPEG)."""
    scores, hits, n_pos = arrays
    missed = np.flatnonzero((n_pos > 0) & ~hits[:, 0])
    if not len(missed):
        return None
    dataset = load_result_dataset(result)
    skipped = result.skipped_files("query")
    qids = [q for q, p in zip(dataset.query_ids, dataset.queries["path"]) if p not in skipped]
    preds = pd.read_csv(result.predictions_path, dtype={"query_id": str, "reference_id": str})
    top1 = dict(zip(preds[preds["rank"] == 0]["query_id"], preds[preds["rank"] == 0]["reference_id"]))
    rows = []
    for i in sorted(missed, key=lambda i: -scores[i, 0])[:limit]:
        q = qids[i]
        rows.append((q, min(dataset.positives[q]), top1.get(q), float(scores[i, 0])))
    path = out / f"missed_{key}__{safe_name(result.detector_name)}{settings_suffix(result.key)}.jpg"
    return _gallery(
        rows, dataset, f"{_label(result)}: {len(missed)} missed of {int((n_pos > 0).sum())}", path
    )


def _gallery(rows: list[tuple], dataset, title: str, path: Path, side: int = 128) -> Path:
    from PIL import Image, ImageDraw

    from copybench.scan.report import _font, _short, _thumb_of

    refs = dict(zip(dataset.reference_ids, dataset.references["path"]))
    queries = dict(zip(dataset.query_ids, dataset.queries["path"]))
    cell_w, cell_h, head, text_h = side + 12, side + 44, 28, 32
    canvas = Image.new("RGB", (12 + 3 * cell_w, head + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((12, 8), title, fill="black", font=_font(13))
    for n, (q, true_ref, got, score) in enumerate(rows):
        y = head + n * cell_h
        cells = [(queries[q], "query", q), (refs[true_ref], "copy of", true_ref)]
        cells.append((refs.get(got), f"rank 1, score {score:.3f}", got or "-"))
        for j, (file, caption, name) in enumerate(cells):
            x = 12 + j * cell_w
            colour = "#b00000" if j == 2 else "black"
            draw.text((x, y + 2), caption, fill=colour, font=_font(11))
            draw.text((x, y + 16), _short(str(name), 22), fill=colour, font=_font(11))
            if file is not None:
                canvas.paste(_thumb_of(dataset.root / file, side), (x, y + text_h))
    canvas.save(path, quality=80, optimize=True)
    return path


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps the outside legend in the image
    plt.close(fig)
    return path


def svg_text(fig) -> str:
    """A figure as inline SVG text, byte-identical for identical inputs (no date, fixed ids)."""
    import io

    import matplotlib
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "copybench", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: the SVG sits inside an HTML page
