"""The site's figures: matplotlib SVGs written byte-identically run after run, and a JPEG contact sheet.

SVG output of matplotlib carries a creation date and random element ids unless told otherwise: the date is
left out (``metadata={"Date": None}``) and ids are hashed from a fixed salt (``svg.hashsalt``), so a figure
changes only when what it shows changes. Text is drawn as paths (``svg.fonttype: path``): the picture does not
depend on the viewer's fonts.
"""

from __future__ import annotations

import io
from pathlib import Path

from .boards import Board, title

RC = {"svg.hashsalt": "copybench-site", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 10}
SVG_METADATA = {"Date": None, "Creator": "copybench publish (matplotlib)"}


def save_svg(fig) -> bytes:
    """The figure as SVG bytes, free of dates and random ids."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pr_figure(board: Board, arrays: dict[str, tuple]) -> bytes:
    """Pooled precision-recall curves of the board's rows that have arrays (keyed by raw path); random-weight
    rows dashed and labelled so."""
    import matplotlib

    from copybench.metrics import pr_curve

    plt = _pyplot()
    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        cmap = matplotlib.colormaps["tab10" if len(board.rows) <= 10 else "tab20"]
        for n, row in enumerate(r for r in board.rows if r.item.raw in arrays):
            precision, recall, _ = pr_curve(*arrays[row.item.raw])
            value = row.values.get(board.headline)
            name = f"{row.label} {row.settings}" + (
                "" if value is None else f" {title(board.headline)}={value:.3f}"
            )
            ax.plot(
                recall, precision, color=cmap(n % cmap.N), lw=1.3, ls="--" if row.random else "-", label=name
            )
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.set_title(f"pooled precision-recall, {board.title}", loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return save_svg(fig)


def pareto_figure(points: list[dict], metric: str, heading: str) -> bytes:
    """Accuracy against end-to-end images/s (log scale), the Pareto front as a step line; random-weight points
    hollow and labelled so."""
    import matplotlib
    from matplotlib.ticker import FuncFormatter

    plt = _pyplot()
    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        front = sorted((p for p in points if p["on_front"]), key=lambda p: p["speed"])
        ax.step([p["speed"] for p in front], [p["accuracy"] for p in front], where="post", color="tab:red",
                lw=1.2, label="Pareto front")  # fmt: skip
        for p in points:
            edge = "tab:red" if p["on_front"] else "tab:blue"
            ax.scatter(
                p["speed"], p["accuracy"], s=46, facecolors="none" if p["random"] else edge, edgecolors=edge
            )
            label = p["detector"] + (" (random weights)" if p["random"] else "")
            ax.annotate(
                label, (p["speed"], p["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        ax.set_xscale("log")
        # plain numbers, not powers of ten: rates are read off this axis
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: _plain(v) if f"{v:.0e}"[0] in "25" else ""))
        ax.set(xlabel="end-to-end images/s (log scale)", ylabel=title(metric))
        ax.set_title(heading, loc="left")
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower left", fontsize=8)
        return save_svg(fig)


def _plain(value: float) -> str:
    """A rate as a plain number: 1,200 or 0.5, never 1.2e3."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def contact_sheet(dataset, per_family: int = 1, distractors: int = 2, side: int = 120) -> bytes:
    """Example queries beside the reference each copies (one per recipe family first, then distractors, by
    query id), as a JPEG; captions name the query, its family/tier and the reference."""
    from PIL import Image, ImageDraw, ImageOps

    picks = _examples(dataset.queries, per_family, distractors)
    refs = dict(zip(dataset.reference_ids, dataset.references["path"]))
    cell_w, cell_h = 2 * side + 24, side + 34
    cols = 2
    rows = (len(picks) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell_w + 8, rows * cell_h + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for n, q in enumerate(picks):
        x, y = 8 + (n % cols) * cell_w, 8 + (n // cols) * cell_h
        ref = refs.get(q["reference_id"]) if q["reference_id"] else None
        for j, file in enumerate((q["path"], ref)):
            if file is not None:
                with Image.open(Path(dataset.root) / file) as img:
                    thumb = ImageOps.contain(img.convert("RGB"), (side, side))
                sheet.paste(thumb, (x + j * (side + 8), y))
        caption = (
            f"{q['query_id']} {q['family']}/{q['tier']} -> {q['reference_id'] or 'no copy (distractor)'}"
        )
        draw.text((x, y + side + 4), caption[:44], fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=82, optimize=True)
    return buf.getvalue()


def _examples(queries, per_family: int, distractors: int) -> list[dict]:
    """Rows of the queries table to show: the first ``per_family`` of each family, then distractors."""
    frame = queries.fillna("").sort_values("query_id")
    copies = frame[frame["reference_id"] != ""]
    chosen = [
        r for _, part in copies.groupby("family", sort=True) for r in part.head(per_family).to_dict("records")
    ]
    chosen += frame[frame["reference_id"] == ""].head(distractors).to_dict("records")
    return chosen
