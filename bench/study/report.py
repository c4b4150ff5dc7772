"""Outputs of the data-size study, rebuilt from what is stored on disk (never from in-memory state).

The replication rates of the table and plot are recounted from each scan's ``matches.csv`` (the top-1
similarity of every generation) under the study's threshold, and checked against the counts each scan stored in
its ``summary.json``: stored outputs that disagree are refused. Figures: ``rate_vs_size.png`` (rate with its 95%
Wilson interval against training-set size, own subset and full folder), ``histograms.png`` (top-1 similarity
densities of every size overlaid), ``loss.png`` (training loss curves), and ``report.html`` embedding them with
each size's closest generations (the first match-grid page of its own-subset scan).
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

import numpy as np

RANDOM_WARNING = (
    "RANDOM WEIGHTS: the detector ran with randomly initialised weights; similarities are meaningless"
)
SCANS = (("own", "own training subset"), ("full", "full training folder"))
HIST_BINS = 40


# ---------------------------------------------------------------------------------------------- storage
STUDY_SCHEMA_VERSION = 1  # study.json; read_study refuses any other


def write_study(out: Path, record: dict) -> dict:
    """study.json, then rates.csv, figures and report.html rebuilt from the stored files; returns the record."""
    from copybench.io import atomic_write_text
    from copybench.results import dumps

    out.mkdir(parents=True, exist_ok=True)
    _portable_paths(record, out)
    record["outputs"] = {
        "study": "study.json",
        "table": "rates.csv",
        "rate_plot": "rate_vs_size.png",
        "histograms": "histograms.png",
        "loss_plot": "loss.png",
        "html": "report.html",
    }
    atomic_write_text(out / "study.json", dumps(record))
    build_report(out)
    return record


def _portable_paths(record: dict, out: Path) -> None:
    """Folders named in study.json relative to the study folder (``out`` is "."), not as absolute paths of the
    machine that ran it; a folder sharing nothing with it but the filesystem root stays absolute."""
    from copybench.io import portable_path
    from copybench.study.train import key_hash

    record["out"] = portable_path(out, out)
    inputs = record.get("inputs", {})
    for name in ("train", "generated_by"):
        if inputs.get(name):
            inputs[name] = portable_path(inputs[name], out)
    generator = record.get("key", {}).get("generator", {})
    if generator.get("path"):
        generator["path"] = portable_path(generator["path"], out)
        record["key_hash"] = key_hash(record["key"])  # the key as stored
    for entry in record.get("sizes", []):
        if entry.get("generated"):
            entry["generated"] = portable_path(entry["generated"], out)


def read_study(path: str | Path) -> dict:
    """A study.json (or the folder holding it); unknown kinds or schema versions are refused."""
    path = Path(path)
    path = path / "study.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no study.json (run `copybench study data-size` first)")
    data = json.loads(path.read_text())
    if data.get("kind") != "data_size_study" or data.get("schema_version") != STUDY_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: not a data-size study of schema {STUDY_SCHEMA_VERSION} "
            f"(kind {data.get('kind')!r}, schema {data.get('schema_version')!r})"
        )
    return data


def top1_similarities(matches_csv: Path) -> np.ndarray:
    """Top-1 similarity of every scanned generation, read from a scan's matches.csv."""
    with open(matches_csv, newline="", encoding="utf-8") as f:
        return np.array([float(r["similarity"]) for r in csv.DictReader(f) if r["rank"] == "1"], np.float64)


def recount(out: Path, record: dict) -> list[dict]:
    """Per size and scan: rate and Wilson CI recounted from matches.csv; ValueError if a stored count disagrees."""
    from copybench.scan.pipeline import read_summary
    from copybench.scan.search import wilson_interval

    rows = []
    for entry in record["sizes"]:
        row = {"size": entry["size"]}
        for name, _ in SCANS:
            folder = out / f"size-{entry['size']}" / entry["scans"][name]["dir"]
            top1 = top1_similarities(folder / "matches.csv")
            flagged, n = int(passes(top1, record["threshold"]).sum()), len(top1)
            stored = read_summary(folder)["replication_rate"]
            if (flagged, n) != (stored["flagged"], stored["n"]) or entry["scans"][name]["flagged"] != flagged:
                raise ValueError(
                    f"{folder}: matches.csv gives {flagged} of {n} flagged but the stored summaries say "
                    f"{stored['flagged']} of {stored['n']}; the outputs do not belong together (rerun the study)"
                )
            lo, hi = wilson_interval(flagged, n)
            row[name] = {"flagged": flagged, "n": n, "rate": flagged / n, "ci95": (lo, hi), "top1": top1}
        rows.append(row)
    return rows


def passes(top1: np.ndarray, threshold: dict) -> np.ndarray:
    """Which top-1 similarities count as replications under the scan's threshold and rule (">=" or ">")."""
    value = threshold["value"]
    return top1 > value if threshold.get("rule", ">=") == ">" else top1 >= value


def read_losses(path: Path) -> np.ndarray:
    """Loss per training step from a loss.csv (empty when the size was not trained here)."""
    if not path.exists():
        return np.zeros(0)
    with open(path, newline="", encoding="utf-8") as f:
        return np.array([float(r["loss"]) for r in csv.DictReader(f)], np.float64)


def write_rates_csv(path: Path, record: dict, rows: list[dict]) -> Path:
    """The table: one row per size, both scans' rates with their CIs, training facts when trained here."""
    from copybench.io import atomic_write_text

    head = ["size", "rate_own", "ci_low_own", "ci_high_own", "flagged_own", "n_own"]
    head += ["rate_full", "ci_low_full", "ci_high_full", "flagged_full", "n_full", "top1_mean_own"]
    head += ["train_steps", "epochs", "final_loss", "detector", "weights", "threshold"]
    lines = [",".join(head)]
    w = record["detector"]["weights"]["status"] + (" (RANDOM)" if record["random_weights"] else "")
    for entry, row in zip(record["sizes"], rows):
        t = entry.get("train", {})
        vals = [row["size"]]
        for name, _ in SCANS:
            r = row[name]
            vals += [f"{r['rate']:.6f}", f"{r['ci95'][0]:.6f}", f"{r['ci95'][1]:.6f}", r["flagged"], r["n"]]
        vals += [
            f"{row['own']['top1'].mean():.6f}",
            t.get("steps", ""),
            _num(t.get("epochs")),
            _num(t.get("final_loss")),
        ]
        vals += [record["detector"]["name"], w, f"{record['threshold']['value']:.6f}"]
        lines.append(",".join(str(v) for v in vals))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _num(v) -> str:
    return "" if v is None else f"{v:.6g}"


# ---------------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(record: dict) -> str:
    d = record["detector"]
    weights = "RANDOM WEIGHTS" if record["random_weights"] else f"weights {d['weights']['status']}"
    return f"{d['name']} ({weights}), top-1 {_rule(record)} {record['threshold']['value']:.3f}"


def _rule(record: dict) -> str:
    return record["threshold"].get("rule", ">=")


def plot_rates(path: Path, record: dict, rows: list[dict]) -> Path:
    """Replication rate with 95% Wilson intervals against training-set size (log axis), both scans."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    sizes = np.array([r["size"] for r in rows], dtype=float)
    for (name, label), marker, colour in zip(SCANS, "os", ("tab:red", "tab:blue")):
        rate = np.array([r[name]["rate"] for r in rows])
        # clipped: at 0 or n flagged a Wilson bound can sit a rounding error inside the rate
        lo = np.clip(rate - np.array([r[name]["ci95"][0] for r in rows]), 0, None)
        hi = np.clip(np.array([r[name]["ci95"][1] for r in rows]) - rate, 0, None)
        ax.errorbar(sizes, rate, yerr=[lo, hi], marker=marker, capsize=4, color=colour, label=f"vs {label}")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{int(s):,}" for s in sizes])
    ax.set(
        xlabel="training-set size (images)",
        ylabel="replication rate",
        ylim=(-0.02, 1.02),
        title=_title(record),
    )
    ax.title.set_color("red" if record["random_weights"] else "black")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_histograms(path: Path, record: dict, rows: list[dict]) -> Path:
    """Top-1 sim(gen, own training subset) densities of every size overlaid on [0, 1], threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    bins = np.linspace(0.0, 1.0, HIST_BINS + 1)
    colours = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, len(rows)))
    for row, colour in zip(rows, colours):
        top1 = np.clip(
            row["own"]["top1"], 0, 1
        )  # below-0 cosines land in the first bin, areas stay comparable
        ax.hist(top1, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=colour)
        ax.hist(
            top1,
            bins=bins,
            density=True,
            histtype="step",
            lw=1.5,
            color=colour,
            label=f"{row['size']:,} images",
        )
    thr = record["threshold"]["value"]
    ax.axvline(thr, color="k", ls="--", lw=1, label=f"threshold ({_rule(record)}) {thr:.3f}")
    ax.set(
        xlim=(0, 1), xlabel="top-1 similarity of a generation to its own training subset", ylabel="density"
    )
    ax.set_title(_title(record), color="red" if record["random_weights"] else "black")
    ax.legend(fontsize=8, title="training-set size")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _loss_label(record: dict) -> str:
    prediction = record["key"]["generator"].get("train", {}).get("prediction", "epsilon")
    return "MSE of the predicted " + ("noise" if prediction == "epsilon" else "clean image")


def plot_losses(path: Path, out: Path, record: dict) -> Path:
    """Training loss per step (a 50-step moving average over the raw curve) for every size trained here."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    colours = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, max(1, len(record["sizes"]))))
    drawn = 0
    for entry, colour in zip(record["sizes"], colours):
        loss = read_losses(out / f"size-{entry['size']}" / "loss.csv")
        if loss.size == 0:
            continue
        w = min(50, loss.size)
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(1, loss.size + 1), loss, color=colour, alpha=0.15, lw=0.6)
        ax.plot(np.arange(w, loss.size + 1), smooth, color=colour, label=f"{entry['size']:,} images")
        drawn += 1
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=8, title="training-set size")
    else:
        ax.text(0.5, 0.5, "no model trained here (--generated-by)", ha="center", transform=ax.transAxes)
    ax.set(
        xlabel="training step",
        ylabel=_loss_label(record),
        title="training loss (moving average of 50 steps)",
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}.random{background:#b00;color:#fff;padding:1em;font-size:1.3em;font-weight:700}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}pre{background:#f7f7f7;padding:1em;overflow:auto}
"""


def _data_uri(path: Path) -> str:
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _rate_cell(r: dict) -> str:
    return f"{r['rate']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] ({r['flagged']}/{r['n']})"


def _rates_table(record: dict, rows: list[dict]) -> str:
    head = [
        "training images",
        "rate vs own subset [95% CI]",
        "rate vs full folder [95% CI]",
        "mean top-1 (own)",
    ]
    head += ["steps", "epochs", "final loss"]
    body = []
    for entry, row in zip(record["sizes"], rows):
        t = entry.get("train", {})
        cells = [
            f"{row['size']:,}",
            _rate_cell(row["own"]),
            _rate_cell(row["full"]),
            f"{row['own']['top1'].mean():.3f}",
        ]
        cells += [str(t.get("steps", "-")), _num(t.get("epochs")) or "-", _num(t.get("final_loss")) or "-"]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _grids(out: Path, record: dict) -> str:
    parts = []
    for entry in record["sizes"]:
        folder = out / f"size-{entry['size']}" / entry["scans"]["own"]["dir"]
        first = sorted(folder.glob("matches-001.*"))  # the scan's first grid page (PNG or JPEG)
        rel = html.escape(str(folder.relative_to(out) / "report.html"))
        parts.append(
            f"<h3>{entry['size']:,} training images</h3><p>Full scan report: <a href='{rel}'>{rel}</a></p>"
        )
        if first:
            parts.append(f"<img alt='matches {entry['size']}' src='{_data_uri(first[0])}'>")
    return "".join(parts)


def _setup(record: dict) -> str:
    g, d = record["key"]["generator"], record["detector"]
    if g["kind"] == "generated-by":
        how = f"generations supplied by the user from {html.escape(g['path'])} (--generated-by)"
    else:
        t, s = g["train"], g["sample"]
        how = (
            f"unconditional DDPM per subset (diffusers UNet2DModel, preset {t['model']}, {t['resolution']} px, "
            f"{g['steps']} steps of batch {t['batch_size']}, EMA weights), {s['n']} samples each with "
            f"{s['sampler']} in {s['steps']} steps"
        )
    return (
        f"<p>Training folder {html.escape(record['inputs']['train'])} ({record['inputs']['n_images']} images); "
        f"nested subsets drawn with seed {record['key']['seed']}; {how}. Detector <b>{html.escape(d['name'])}</b> "
        f"(weights <b>{html.escape(d['weights']['status'])}</b>), {record['key']['similarity']} similarity, a "
        f"generation counts as replicated when its top-1 similarity is {html.escape(_rule(record))} "
        f"{record['threshold']['value']:.3f}; "
        "rates carry 95% Wilson score intervals.</p>"
    )


def write_html(path: Path, out: Path, record: dict, rows: list[dict]) -> Path:
    """One self-contained page: setup, table, rate plot, histograms, loss curves, closest generations per size."""
    from copybench.io import atomic_write_text
    from copybench.results import dumps

    o = record["outputs"]
    warn = f"<p class='random'>{RANDOM_WARNING}</p>" if record["random_weights"] else ""
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>copybench data-size study</title>"
        f"<style>{_CSS}</style></head><body><h1>Replication against training-set size</h1>{warn}{_setup(record)}"
        f"{_rates_table(record, rows)}<img alt='rates' src='{_data_uri(out / o['rate_plot'])}'>"
        f"<h2>Similarity distributions</h2><img alt='histograms' src='{_data_uri(out / o['histograms'])}'>"
        f"<h2>Training loss</h2><img alt='loss' src='{_data_uri(out / o['loss_plot'])}'>"
        f"<h2>Closest generations per size</h2>{_grids(out, record)}"
        f"<details><summary>study.json</summary><pre>{html.escape(dumps(record))}</pre></details></body></html>\n"
    )
    atomic_write_text(path, page)
    return path


def build_report(out: str | Path) -> list[dict]:
    """Recount the rates from the stored scans and rewrite rates.csv, the figures and report.html."""
    out = Path(out)
    record = read_study(out)
    rows = recount(out, record)
    o = record["outputs"]
    write_rates_csv(out / o["table"], record, rows)
    plot_rates(out / o["rate_plot"], record, rows)
    plot_histograms(out / o["histograms"], record, rows)
    plot_losses(out / o["loss_plot"], out, record)
    write_html(out / o["html"], out, record, rows)
    return rows


# ---------------------------------------------------------------------------------------------- terminal
def print_study(record: dict, console) -> None:
    """The rates table in the terminal."""
    from rich.table import Table

    if record["random_weights"]:
        console.print(f"[bold white on red] {RANDOM_WARNING} [/]")
    table = Table(title=f"data-size study: {_title(record)}")
    for col in ("training images", "rate vs own subset [95% CI]", "rate vs full folder [95% CI]", "steps"):
        table.add_column(col, justify="right")
    for e in record["sizes"]:
        own, full = e["scans"]["own"], e["scans"]["full"]
        table.add_row(
            f"{e['size']:,}", _rate_cell(own), _rate_cell(full), str(e.get("train", {}).get("steps", "-"))
        )
    console.print(table)
    console.print(f"report: {Path(record['out']) / record['outputs']['html']}", highlight=False)
