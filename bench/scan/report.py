"""Outputs of a replication scan: CSV of matches, histogram PNG and match-grid JPEGs, summary JSON, HTML report.

The HTML report is self-contained (PNGs embedded as base64 data URIs, no external assets), so it can be mailed
or archived alone. Random detector weights are stated in every output: JSON (``random_weights``), the plot
titles, a red banner in the HTML and the terminal summary.
"""

from __future__ import annotations

import base64
import csv
import html
import time
from pathlib import Path

import numpy as np
from PIL import Image

GRID_ROWS_PER_PAGE = 10
GRID_MAX_ROWS = 100  # the most similar generations; flagged ones come first since rows are sorted by top-1
THUMB_SIDE = 160
GRID_JPEG_QUALITY = 80
REPORT_JPEG_QUALITY = 75
CELL_TEXT, CELL_GAP, SEPARATOR, HEADER = 38, 12, 16, 34  # grid layout, pixels
HIST_BINS = 50
RANDOM_WARNING = (
    "RANDOM WEIGHTS: this detector ran with randomly initialised weights; similarities are meaningless"
)


def write_outputs(out: Path, summary: dict, matches: list[dict], top1: np.ndarray, base: np.ndarray) -> dict:
    """Write every output file into ``out``; returns the summary completed with flagged list and file names."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    summary["out"] = str(out.resolve())
    order = np.argsort(-top1, kind="stable")
    thr = summary["threshold"]["value"]
    summary["flagged"] = [_flag_entry(matches[i]) for i in order if top1[i] >= thr]
    shown = order[:GRID_MAX_ROWS]
    summary["grids"] = {"rows_shown": len(shown), "of": len(order), "rows_per_page": GRID_ROWS_PER_PAGE}
    outputs = {
        "summary": "summary.json",
        "csv": write_matches_csv(out / "matches.csv", matches).name,
        "histogram": plot_histogram(out / "histogram.png", top1, base, summary).name,
        "grids": [p.name for p in plot_match_grids(out, [matches[i] for i in shown], summary)],
    }
    outputs["html"] = "report.html"
    summary["outputs"] = outputs
    summary["timings"]["outputs_s"] = time.perf_counter() - t0
    published = portable_summary(summary, out)
    write_summary(out / "summary.json", published)
    write_html_report(out / "report.html", published, out, [matches[i] for i in shown])
    return summary


def portable_summary(summary: dict, out: Path) -> dict:
    """The summary as written into ``out``: the scan folder as ".", inputs, calibration dataset and skipped
    images relative to it (no absolute path of this machine; see copybench.io.portable_path)."""
    import copy

    from copybench.io import portable_path

    published = copy.deepcopy(summary)
    published["out"] = "."
    # a URI (s3://, file://) is no path of this machine: published as given
    published["inputs"] = {
        k: v if "://" in v else portable_path(v, out) for k, v in summary["inputs"].items()
    }
    calibration = published["threshold"].get("calibration")
    if calibration:
        calibration["path"] = portable_path(calibration["path"], out)
        calibration["skipped"] = [_portable_skip(s, out) for s in calibration.get("skipped", [])]
    published["skipped"] = [_portable_skip(s, out) for s in summary["skipped"]]
    return published


def _portable_skip(skip: dict, out: Path) -> dict:
    from copybench.io import portable_path

    if "://" in skip["path"]:
        return skip
    relative = portable_path(skip["path"], out)
    return {**skip, "path": relative, "error": str(skip.get("error", "")).replace(skip["path"], relative)}


def _flag_entry(match: dict) -> dict:
    top = match["matches"][0]
    return {"generated": match["generated"], "train": top["train"], "similarity": top["similarity"]}


def write_summary(path: Path, summary: dict) -> Path:
    """summary.json: sorted keys, NaN as null, floats rounded to 6 digits, written atomically."""
    from copybench.io import atomic_write_text
    from copybench.results import dumps

    atomic_write_text(path, dumps(summary))
    return path


def write_matches_csv(path: Path, matches: list[dict]) -> Path:
    """All matches: generated, rank (1-based), train, similarity; paths relative to their input folders."""
    from copybench.io import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["generated", "rank", "train", "similarity"])
        for m in matches:
            for rank, t in enumerate(m["matches"], 1):
                # full precision (repr round-trips): rounding would tie matches and move them across a threshold
                w.writerow([m["generated"], rank, t["train"], repr(float(t["similarity"]))])
    return path


# ---------------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(summary: dict) -> str:
    d = summary["detector"]
    weights = "RANDOM WEIGHTS" if summary["random_weights"] else f"weights: {d['weights']['status']}"
    return f"{d['name']} ({weights}), {summary['settings']['similarity']} similarity"


def plot_histogram(path: Path, top1: np.ndarray, base: np.ndarray, summary: dict) -> Path:
    """Overlaid density histograms on [0, 1] of sim(gen,train) (top-1) and sim(train,train) (nearest other)."""
    plt = _pyplot()
    bins = np.linspace(0.0, 1.0, HIST_BINS + 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    # clipped so similarities below 0 (cosine) still count, in the first bin, and the areas stay comparable
    for values, label, colour in (
        (top1, "sim(gen,train)", "tab:red"),
        (base, "sim(train,train)", "tab:blue"),
    ):
        ax.hist(
            np.clip(values, 0, 1),
            bins=bins,
            density=True,
            alpha=0.5,
            color=colour,
            label=f"{label}  n={len(values)}",
        )
    thr = summary["threshold"]
    ax.axvline(
        thr["value"], color="k", ls="--", lw=1, label=f"threshold {thr['value']:.3f} ({thr['source']})"
    )
    ax.set(xlim=(0, 1), xlabel="similarity", ylabel="density", title=_title(summary))
    ax.title.set_color("red" if summary["random_weights"] else "black")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _thumb(path: str) -> Image.Image:
    return _thumb_of(path, THUMB_SIDE)


def _thumb_of(path: str | Path, side: int) -> Image.Image:
    """An image shrunk to fit ``side`` x ``side`` (a blank square when it cannot be read)."""
    from copybench.preprocess import ImageReadError, read_image

    try:
        img = read_image(path)
    except ImageReadError:
        return Image.new("RGB", (side, side), "white")
    img.thumbnail((side, side))
    return img


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _cell(
    canvas: Image.Image, draw, img: Image.Image, xy: tuple[int, int], lines: list[str], colour: str, fonts
) -> None:
    """Two caption lines above a thumbnail centred in its THUMB_SIDE square."""
    x, y = xy
    for i, line in enumerate(lines):
        draw.text((x + 4, y + 2 + 16 * i), line, fill=colour, font=fonts[i == 0])
    top = y + CELL_TEXT
    img_xy = (x + (THUMB_SIDE - img.width) // 2, top + (THUMB_SIDE - img.height) // 2)
    canvas.paste(img, img_xy)


def _grid_page(path: Path, rows: list[dict], summary: dict, page: tuple[int, int]) -> Path:
    """One JPEG page, drawn with Pillow (matplotlib takes seconds per page of 60 titled axes). JPEG, not PNG:
    pages of photos are a tenth of the size, which keeps the self-contained report small."""
    from PIL import ImageDraw

    k, thr = summary["settings"]["top_k"], summary["threshold"]["value"]
    rule = summary["threshold"].get("rule", ">=")
    passes = (lambda x: x > thr) if rule == ">" else (lambda x: x >= thr)
    cw, ch = THUMB_SIDE + CELL_GAP, THUMB_SIDE + CELL_TEXT + CELL_GAP
    canvas = Image.new("RGB", (CELL_GAP + cw * (1 + k) + SEPARATOR, HEADER + ch * len(rows)), "white")
    draw, fonts = ImageDraw.Draw(canvas), (_font(13), _font(12))
    header_colour = "#b00000" if summary["random_weights"] else "black"
    draw.text(
        (CELL_GAP, 8),
        f"{_title(summary)}: generated (left) and top-{k} training matches, page {page[0]}/{page[1]}",
        fill=header_colour,
        font=_font(15),
    )
    for r, m in enumerate(rows):
        y = HEADER + r * ch
        top = m["matches"][0]["similarity"] if m["matches"] else float("nan")
        flagged = passes(top)
        lines = [f"{'FLAGGED  ' if flagged else ''}top-1 {top:.3f}", _short(m["generated"])]
        _cell(
            canvas,
            draw,
            _thumb(m["generated_path"]),
            (CELL_GAP, y),
            lines,
            "#c00000" if flagged else "black",
            fonts,
        )
        for j, t in enumerate(m["matches"], 1):
            x = CELL_GAP + SEPARATOR + j * cw
            colour = "#c00000" if passes(t["similarity"]) else "black"
            _cell(
                canvas,
                draw,
                _thumb(t["train_path"]),
                (x, y),
                [f"#{j}  {t['similarity']:.3f}", _short(t["train"])],
                colour,
                fonts,
            )
        draw.line(
            [(CELL_GAP, y + ch - CELL_GAP // 2), (canvas.width - CELL_GAP, y + ch - CELL_GAP // 2)],
            fill="#dddddd",
        )
    x_sep = CELL_GAP + cw + SEPARATOR // 2 - CELL_GAP // 2
    draw.line([(x_sep, HEADER), (x_sep, canvas.height)], fill="#888888", width=2)
    canvas.save(path, quality=GRID_JPEG_QUALITY, optimize=True)
    return path


def plot_match_grids(out: Path, rows: list[dict], summary: dict) -> list[Path]:
    """JPEG pages of GRID_ROWS_PER_PAGE rows: each a generation beside its top-k training matches."""
    for old in [*out.glob("matches-*.png"), *out.glob("matches-*.jpg")]:  # no stale pages from a longer run
        old.unlink()
    pages = [rows[i : i + GRID_ROWS_PER_PAGE] for i in range(0, len(rows), GRID_ROWS_PER_PAGE)]
    return [
        _grid_page(out / f"matches-{n:03d}.jpg", page, summary, (n, len(pages)))
        for n, page in enumerate(pages, 1)
    ]


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}td.t,th.t{text-align:left}
.random{background:#b00;color:#fff;padding:1em;font-size:1.3em;font-weight:700;border-radius:4px}
.big{font-size:1.4em}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
details{margin:1em 0}pre{background:#f7f7f7;padding:1em;overflow:auto}
table.grid td.m{text-align:left;font-size:12px;vertical-align:top;padding:4px;overflow-wrap:anywhere;width:160px}
table.grid td.m:first-child{border-right:2px solid #888}
table.grid td.hot{color:#c00000;font-weight:600}
.th{width:160px;height:160px;background:center/contain no-repeat}
"""


def _data_uri(path: Path) -> str:
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _table(head: list[str], rows: list[list], text_cols: int = 1) -> str:
    cls = lambda j: ' class="t"' if j < text_cols else ""
    h = "".join(f"<th{cls(j)}>{html.escape(c)}</th>" for j, c in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(j)}>{_fmt(v)}</td>" for j, v in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _stats_table(summary: dict) -> str:
    st = summary["similarity_stats"]
    keys = ("n", "mean", "std", "median", "p75", "p90", "p95", "max")
    return _table(
        ["distribution", *keys],
        [
            [label, *(st[name].get(k) for k in keys)]
            for name, label in (
                ("gen_train", "sim(gen,train), top-1"),
                ("train_train", "sim(train,train), nearest other"),
            )
        ],
    )


def _ann_rows(summary: dict) -> list[tuple[str, str]]:
    """An approximate search's check beside its rate: recall@k and both rates on the exactly searched sample."""
    a = summary.get("ann")
    if not a:
        return []
    ex, ap = a["replication_rate_sample"]["exact"], a["replication_rate_sample"]["ann"]
    n = f"{a['sample']['n']} sampled generated images"
    return [
        ("search", f"APPROXIMATE ({a['index']}, nlist {a['nlist']}, nprobe {a['options']['nprobe']})"),
        (f"recall@{a['k']} vs exact", f"{a['recall_at_k']:.4f} on {n}"),
        (
            "rate on the sample",
            f"exact {ex['value']:.2%} ({ex['flagged']}), ANN {ap['value']:.2%} ({ap['flagged']})",
        ),
    ]


def _headline(summary: dict) -> str:
    r, t, c, b = summary["replication_rate"], summary["threshold"], summary["counts"], summary["baseline"]
    cal = t["calibration"]
    how = (
        f"calibrated at {cal['precision']:.0%} precision on dataset {html.escape(cal['dataset'])} "
        f"(recall there {cal['recall']:.3f})"
        if cal
        else t["source"]
    )
    rule = {">": "&gt;", ">=": "&ge;"}.get(t.get("rule", ">="), "&ge;")
    sample = f"a seeded sample of {b['n']} of {b['of']}" if b["sampled"] else f"all {b['n']}"
    return (
        f"<p class='big'>Replication rate <b>{r['value']:.2%}</b> ({r['flagged']} of {r['n']} generated images), "
        f"95% CI [{r['ci95'][0]:.2%}, {r['ci95'][1]:.2%}] (Wilson score interval)</p>"
        f"<p>Flagged: top-1 similarity {rule} threshold <b>{t['value']:.4f}</b> ({how}; protocol "
        f"{html.escape(str(summary['settings'].get('protocol', 'native')))}). "
        f"Training images indexed: {c['train_indexed']} of {c['train_found']}; generated scanned: "
        f"{c['generated_scanned']} of {c['generated_found']}. Baseline over {sample} training images.</p>"
        + "".join(f"<p><b>{html.escape(k)}</b>: {html.escape(v)}</p>" for k, v in _ann_rows(summary))
    )


def _detector_line(summary: dict) -> str:
    d = summary["detector"]
    w = d["weights"]
    src = f", {html.escape(w['source'])}" if w.get("source") else ""
    line = (
        f"<p>Detector <b>{html.escape(d['name'])}</b>, weights <b>{html.escape(w['status'])}</b>{src}; "
        f"similarity {summary['settings']['similarity']}, top-{summary['settings']['top_k']}.</p>"
    )
    return (f"<p class='random'>{RANDOM_WARNING}</p>" if summary["random_weights"] else "") + line


def _lists(summary: dict) -> str:
    flagged = [[f["generated"], f["train"], f["similarity"]] for f in summary["flagged"]]
    skipped = [[s["role"], s["path"], s["error"]] for s in summary["skipped"]]
    parts = [
        f"<h2>Flagged generations ({len(flagged)})</h2>",
        _table(["generated", "top-1 training match", "similarity"], flagged, 2)
        if flagged
        else "<p>None.</p>",
        f"<h2>Skipped files ({len(skipped)})</h2>",
        _table(["role", "file", "error"], skipped, 3) if skipped else "<p>None: every image decoded.</p>",
    ]
    return "".join(parts)


def _jpeg_uri(path: str) -> str:
    import io

    buf = io.BytesIO()
    _thumb(path).convert("RGB").save(buf, "JPEG", quality=REPORT_JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _html_grid(rows: list[dict], summary: dict) -> tuple[str, str]:
    """The match grid as an HTML table whose thumbnails are CSS classes: a training image that matches many
    generations is embedded once, which keeps the self-contained page small (JPEG, THUMB_SIDE pixels)."""
    classes: dict[str, str] = {}

    def cell(path: str, caption: str, hot: bool) -> str:
        name = classes.setdefault(path, f"i{len(classes)}")
        return f"<td class='m{' hot' if hot else ''}'><div class='th {name}'></div>{caption}</td>"

    thr, body = summary["threshold"]["value"], []
    for m in rows:
        top = m["matches"][0]["similarity"] if m["matches"] else float("nan")
        label = f"{'FLAGGED ' if top >= thr else ''}top-1 {top:.3f}<br>{html.escape(m['generated'])}"
        cells = [cell(m["generated_path"], label, top >= thr)]
        for j, t in enumerate(m["matches"], 1):
            caption = f"#{j} {t['similarity']:.3f}<br>{html.escape(t['train'])}"
            cells.append(cell(t["train_path"], caption, t["similarity"] >= thr))
        body.append("<tr>" + "".join(cells) + "</tr>")
    css = "".join(f".{c}{{background-image:url({_jpeg_uri(p)})}}" for p, c in classes.items())
    return css, f"<table class='grid'><tbody>{''.join(body)}</tbody></table>"


def write_html_report(path: Path, summary: dict, out: Path, rows: list[dict] | None = None) -> Path:
    """One self-contained HTML page: headline, stats, histogram, flagged and skipped lists, match grid."""
    from copybench.results import dumps

    o, g = summary["outputs"], summary["grids"]
    thumbs, grids = _html_grid(rows or [], summary)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Replication scan: "
        f"{html.escape(summary['detector']['name'])}</title><style>{_CSS}{thumbs}</style></head><body>"
        f"<h1>Replication scan</h1>{_detector_line(summary)}{_headline(summary)}"
        f"<h2>Similarity distributions</h2>{_stats_table(summary)}"
        f"<img alt='histogram' src='{_data_uri(out / o['histogram'])}'>{_lists(summary)}"
        f"<h2>Match grids</h2><p>The {g['rows_shown']} most similar of {g['of']} generations, sorted by top-1 "
        f"similarity (flagged first; the same grid as the {len(o['grids'])} JPEG page(s) beside this report); all "
        f"matches are in {html.escape(o['csv'])}.</p>{grids}"
        f"<details><summary>Full summary (summary.json)</summary><pre>{html.escape(dumps(summary))}</pre></details>"
        "</body></html>\n"
    )
    from copybench.io import atomic_write_text

    atomic_write_text(path, page)
    return path


# ---------------------------------------------------------------------------------------------- terminal
def print_summary(summary: dict, console) -> None:
    """A rich summary: headline table, both distributions, flagged and skipped files, output paths."""
    from rich.table import Table

    if summary["random_weights"]:
        console.print(f"[bold white on red] {RANDOM_WARNING} [/]")
    r, t, c = summary["replication_rate"], summary["threshold"], summary["counts"]
    head = Table(
        title=f"replication scan: {summary['detector']['name']} "
        f"(weights {summary['detector']['weights']['status']})",
        show_header=False,
    )
    for k, v in (
        ("generated scanned", f"{c['generated_scanned']} of {c['generated_found']}"),
        ("training images indexed", f"{c['train_indexed']} of {c['train_found']}"),
        (
            "baseline",
            f"{summary['baseline']['n']} training images"
            + (" (seeded sample)" if summary["baseline"]["sampled"] else ""),
        ),
        ("threshold", f"{t.get('rule', '>=')} {t['value']:.4f} ({t['source']})"),
        ("protocol", str(summary["settings"].get("protocol", "native"))),
        ("flagged", f"{r['flagged']} of {r['n']}"),
        ("replication rate", f"{r['value']:.2%}  95% CI [{r['ci95'][0]:.2%}, {r['ci95'][1]:.2%}] (Wilson)"),
        *_ann_rows(summary),
    ):
        head.add_row(k, v)
    console.print(head)
    stats = Table(title="similarity distributions")
    keys = ("mean", "std", "p75", "p90", "p95")
    for col in ("distribution", *keys):
        stats.add_column(col)
    for name, label in (("gen_train", "sim(gen,train)"), ("train_train", "sim(train,train)")):
        st = summary["similarity_stats"][name]
        stats.add_row(label, *(f"{st[k]:.4f}" for k in keys))
    console.print(stats)
    _print_lists(summary, console)


def _print_lists(summary: dict, console, limit: int = 20) -> None:
    for f in summary["flagged"][:limit]:
        console.print(
            f"[red]flagged[/red] {f['generated']} ~ {f['train']} ({f['similarity']:.3f})", highlight=False
        )
    if len(summary["flagged"]) > limit:
        console.print(f"... and {len(summary['flagged']) - limit} more flagged (see matches.csv)")
    if summary["skipped"]:
        console.print(f"[yellow]{len(summary['skipped'])} unreadable image(s) skipped:[/yellow]")
        for s in summary["skipped"][:limit]:
            console.print(f"  {s['role']}: {s['error']}", highlight=False)
    console.print(f"report: {Path(summary['out']) / summary['outputs']['html']}", highlight=False)
