"""``copybench demo``: the main job on the embedded default data, offline.

Builds (or reuses) the default copy dataset from photos that installed packages ship, runs every default
detector whose weights are available offline plus the pixel baselines, writes one result file each, and prints
the leaderboard (also saved as Markdown and HTML beside the results).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Real offline weights first, then parameter-free baselines; missing ones are reported and skipped.
DEMO_DETECTORS = (
    "sscd_disc_mixup.onnx_int8",
    "sscd_distilled.onnx",
    "efficientnet_lite0",
    "phash_64",
    "color_hist_512",
    "pixel_gray_16",
    "pixel_rgb_32",
)


def _available(names) -> tuple[list[str], list[str]]:
    from copybench.detectors import list_detectors, weights_status

    registered = set(list_detectors())
    ok, missing = [], []
    for name in names:
        if name in registered and weights_status(name) in ("real", "none"):
            ok.append(name)
        else:
            missing.append(name)
    return ok, missing


def _dataset(out: Path, n_queries: int | None, seed: int, device: str, progress: bool):
    """Reuse the dataset in ``out`` when it was built from the same recipe, seed and size; else build it."""
    from copybench.datasets import DEFAULT_RECIPE, build_dataset
    from copybench.datasets.dataset import DatasetError, load_dataset

    folder = out / "data"
    try:
        ds = load_dataset(folder)
        same = ds.meta.get("recipe") == DEFAULT_RECIPE and ds.meta.get("seed") == seed
        if same and (n_queries is None or ds.counts()["queries"] == n_queries):
            return ds
    except DatasetError:
        pass
    return build_dataset(
        DEFAULT_RECIPE, folder, n_queries=n_queries, seed=seed, device=device, progress=progress
    )


def run_demo(
    out: str | Path = "runs/demo",
    detectors: str | None = None,
    device: str = "cpu",
    n_queries: int | None = None,
    seed: int = 0,
    results: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> int:
    """Build, run, score and print; returns the CLI exit code."""
    from copybench.report.render import render_table

    from .progress import console as make_console
    from .run import DEFAULT_CACHE, RunSettings, run_benchmark

    console = make_console(stderr=True)  # status lines; the leaderboard itself goes to stdout
    out = Path(out)
    ds = _dataset(out, n_queries, seed, device, progress)
    c = ds.counts()
    console.print(
        f"[bold]dataset[/bold] {ds.name}: {c['references']} references, {c['queries']} queries "
        f"({c['distractors']} distractors), fingerprint {ds.fingerprint[:12]}; contact sheet: "
        f"{ds.root / 'contact_sheet.png'}"
    )
    wanted = [d.strip() for d in detectors.split(",")] if detectors else list(DEMO_DETECTORS)
    names, missing = _available(wanted)
    for name in missing:
        console.print(
            f"[yellow]skipping[/yellow] {name}: weights not available offline (see `copybench list detectors`)"
        )
    if not names:
        console.print("[red]error:[/red] no detector available to run")
        return 2
    results = Path(results) if results else out / "results"
    outcomes = run_benchmark(
        ds,
        names,
        RunSettings(device=device),
        results=results,
        descriptor_dir=DEFAULT_CACHE,  # the one cache root ($COPYBENCH_CACHE), as every other command
        skip_existing=not force,
        progress=progress,
        on_error="return",  # the outcomes are printed below, one line each
    )
    for o in outcomes:
        if o.status == "failed":
            console.print(f"[red]failed[/red] {o.detector}: {o.message}")
    render_table(results)
    render_table(results, fmt="md", out=results / "leaderboard.md")
    render_table(results, fmt="html", out=results / "leaderboard.html")
    from copybench.report.plots import plot_results

    plot_results(results, results / "plots")
    console.print(
        f"results: {results}/ (leaderboard.md, leaderboard.html and plots/ beside the result files)"
    )
    return 0 if all(o.status != "failed" for o in outcomes) else 1
