"""Robustness curves: per axis, the metric against severity for every detector, with its CI band (PNG)."""

from __future__ import annotations

import math
from pathlib import Path

from .profile import Profile


def _label(prof: Profile, detector: str) -> str:
    return detector + (" (random weights)" if prof.random.get(detector) else "")


def plot_profile(prof: Profile, path: str | Path) -> Path:
    """One figure, a panel per axis: the metric against severity (mild at the left), CI bands, R@1 = 0.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(prof.axes))
    rows = math.ceil(len(prof.axes) / cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows + 0.8), squeeze=False)
    colours = matplotlib.colormaps["tab10" if len(prof.detectors) <= 10 else "tab20"]
    for k, axis in enumerate(prof.axes):
        ax = axs[k // cols][k % cols]
        for j, det in enumerate(prof.detectors):
            _draw(ax, prof, det, axis, colours(j))
        _style(ax, prof, axis)
    for k in range(len(prof.axes), rows * cols):
        axs[k // cols][k % cols].set_visible(False)
    handles, labels = axs[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    what = {"recall@1": "R@1", "micro_ap": "micro-AP", "map": "mAP"}[prof.metric]
    fig.suptitle(
        f"{what} against severity: {prof.dataset} ({prof.settings.get('protocol', 'native')})", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 4), 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw(ax, prof: Profile, det: str, axis: str, colour) -> None:
    curve = next(c for c in prof.curves if c.detector == det and c.axis == axis)
    nan = float("nan")
    y = [nan if v is None else v for v in curve.values]  # an empty level is a gap, not a joined line
    lo = [nan if c[0] is None else c[0] for c in curve.ci]
    hi = [nan if c[1] is None else c[1] for c in curve.ci]
    ax.plot(curve.severities, y, marker="o", ms=3, lw=1.4, color=colour, label=_label(prof, det))
    ax.fill_between(curve.severities, lo, hi, color=colour, alpha=0.15, lw=0)


def _style(ax, prof: Profile, axis: str) -> None:
    curve = next(c for c in prof.curves if c.axis == axis)
    if curve.severities[0] > curve.severities[-1]:  # e.g. kept area 1.0 -> 0.05: severity grows to the right
        ax.invert_xaxis()
    if prof.metric == "recall@1":
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(axis, fontsize=9)
    ax.set_xlabel(curve.unit, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
