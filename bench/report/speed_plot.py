"""Accuracy against speed: micro-AP against end-to-end images/s, one point per detector, Pareto front marked.

As ann-benchmarks draws recall against queries per second: a detector is on the Pareto front when no other
detector is at least as accurate and at least as fast (and better in one). Accuracy comes from accuracy results
(one dataset), speed from throughput results of one device name: the best end-to-end rate a detector reached
there over the batch sizes measured. Speed is comparable only within one device, so each (dataset, device)
pair gets its own plot. A detector run with random weights is drawn hollow and labelled so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from copybench.report.table import board_key
from copybench.results import Result, safe_name


def pareto_front(speed: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (>= in both, > in one)."""
    speed, accuracy = np.asarray(speed, float), np.asarray(accuracy, float)
    ge = (speed[None, :] >= speed[:, None]) & (accuracy[None, :] >= accuracy[:, None])
    gt = (speed[None, :] > speed[:, None]) | (accuracy[None, :] > accuracy[:, None])
    return ~(ge & gt).any(axis=1)


def _best_speed(throughput: list[Result]) -> pd.DataFrame:
    """Best end-to-end img/s per (device name, detector) over the measurements there."""
    rows = [
        {
            "device": r.environment.get("device_name", "?"),
            "detector": r.detector_name,
            "e2e_ips": m.get("e2e_ips"),
            "speed_random": r.is_random,
        }
        for r in throughput
        if r.kind == "throughput"
        for m in r.measurements
        if m.get("e2e_ips")
    ]
    if not rows:
        return pd.DataFrame(columns=["device", "detector", "e2e_ips", "speed_random"])
    frame = pd.DataFrame(rows)
    return frame.loc[frame.groupby(["device", "detector"])["e2e_ips"].idxmax()]


def accuracy_speed_points(
    accuracy: list[Result], throughput: list[Result], *, metric: str = "micro_ap"
) -> pd.DataFrame:
    """One row per (dataset, device, detector) measured both ways, with ``on_front`` per (dataset, device)."""
    acc = pd.DataFrame(
        [
            {
                # the board's key: one figure per dataset and protocol (accuracy of two protocols never mixed)
                "dataset": board_key(r),
                "detector": r.detector_name,
                "accuracy": r.metrics.get(metric),
                "random": r.is_random,
            }
            for r in accuracy
            if r.kind == "accuracy" and r.metrics.get(metric) is not None
        ],
        columns=["dataset", "detector", "accuracy", "random"],
    )
    # several settings of one detector on one dataset: its best, as a leaderboard would show it
    acc = acc.sort_values("accuracy", ascending=False).drop_duplicates(["dataset", "detector"])
    points = acc.merge(_best_speed(throughput), on="detector")
    points["random"] = points["random"] | points["speed_random"].astype(bool)
    points["on_front"] = False
    for idx in points.groupby(["dataset", "device"]).groups.values():
        sub = points.loc[idx]
        points.loc[idx, "on_front"] = pareto_front(sub["e2e_ips"].to_numpy(), sub["accuracy"].to_numpy())
    return points.drop(columns="speed_random").reset_index(drop=True)


def _draw(points: pd.DataFrame, title: str, metric: str, path: Path, palette: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    front = points[points["on_front"]].sort_values("e2e_ips")
    ax.step(front["e2e_ips"], front["accuracy"], where="post", color="tab:red", lw=1.2, label="Pareto front")
    for _, p in points.iterrows():
        colour = palette.get(p["detector"], "tab:blue")  # the detector's colour in every other plot
        ax.scatter(
            p["e2e_ips"],
            p["accuracy"],
            s=64 if p["on_front"] else 46,
            facecolors="none" if p["random"] else colour,
            edgecolors="tab:red" if p["on_front"] else colour,
            linewidths=1.8 if p["on_front"] else 1.0,
        )
        label = p["detector"] + (" (random weights)" if p["random"] else "")
        ax.annotate(
            label, (p["e2e_ips"], p["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    for axis in (ax.xaxis,):  # plain numbers, not powers of ten: rates are read off this axis
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if str(v)[0] in "25" else ""))
    ax.set_xlabel("end-to-end images/s (log scale; files on disk to descriptors)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_speed(
    accuracy: list[Result], throughput: list[Result], out: str | Path, *, metric: str = "micro_ap"
) -> list[Path]:
    """Write accuracy_speed_<dataset>__<device>.png for each (dataset, device) with points; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    from copybench.report.plots import colours

    points = accuracy_speed_points(accuracy, throughput, metric=metric)
    palette = colours(accuracy)
    out = Path(out)
    written = []
    for (dataset, device), sub in points.groupby(["dataset", "device"]):
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"accuracy_speed_{safe_name(dataset)}__{safe_name(device)}.png"
        _draw(sub, f"{metric} on {dataset} against speed on {device}", metric, path, palette)
        written.append(path)
    return written


def plot_accuracy_speed_dirs(
    results_dir: str | Path, out: str | Path, *, throughput_dir: str | Path | None = None
) -> list[Path]:
    """:func:`plot_accuracy_speed` over the result files under ``results_dir`` (and ``throughput_dir``)."""
    from copybench.results import read_results

    results = read_results(results_dir)[0]
    if throughput_dir is not None:
        results += read_results(throughput_dir)[0]
    accuracy = [r for r in results if r.kind == "accuracy"]
    return plot_accuracy_speed(accuracy, [r for r in results if r.kind == "throughput"], out)
