"""The robustness section of the HTML leaderboard page (and of the published site): for every sweep profile,
the summary score, AUC and breaking point per axis as sortable tables, and the curves as an inline PNG.

The page (:mod:`copybench.report.html`) calls :func:`robustness_views` with the results it shows and its
template renders them with the same table macro as every other table (sortable by its script); the views are
empty when none of the results is a sweep result, so other pages are unchanged.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from copybench.results import Result

from .profile import Profile, build_profiles
from .tables import breaking_text


def _frame(head: list[str], rows: list[list]):
    import pandas as pd

    return pd.DataFrame(rows, columns=head)


def _name(prof: Profile, det: str) -> str:
    return det + (" (random weights)" if prof.random.get(det) else "")


def profile_view(prof: Profile, *, plot: bool = True) -> dict:
    """One profile for the page's template: its title, the summary, AUC and breaking-point tables (in the
    page's table form, :func:`copybench.report.html.table`) and (``plot``) the curves as a data URI."""
    from copybench.report.cells import table

    what = {"recall@1": "R@1", "micro_ap": "micro-AP", "map": "mAP"}[prof.metric]
    protocol = prof.settings.get("protocol", "native")
    summary = [
        [_name(prof, d), prof.summary[d], prof.relative.get(d), prof.rce.get(d)] for d in prof.detectors
    ]
    units = [f"{a} ({prof.score(prof.detectors[0], a).unit})" for a in prof.axes]
    tables = [
        table(_frame(["detector", "mean AUC", f"relative to {prof.baseline or '-'}", "rCE % (mCE form)"], summary),
              f"Mean normalised AUC of {what} over {len(prof.axes)} axes"),
        table(_frame(["detector", *prof.axes],
                     [[_name(prof, d), *(prof.score(d, a).auc for a in prof.axes)] for d in prof.detectors]),
              f"Normalised AUC of {what} per axis (1 = perfect at every level)"),
        table(_frame(["detector", *units],
                     [[_name(prof, d), *(breaking_text(prof, d, a) for a in prof.axes)] for d in prof.detectors]),
              "Breaking point: lowest severity where R@1 < 0.5 (interpolated), in each axis's unit"),
    ]  # fmt: skip
    return {
        "title": f"{prof.dataset} ({prof.fingerprint[:12]}, {protocol})",
        "tables": tables,
        "image": _png_uri(prof) if plot else None,
    }


def _png_uri(prof: Profile) -> str:
    from .plots import plot_profile

    with tempfile.TemporaryDirectory() as tmp:
        data = plot_profile(prof, Path(tmp) / "curves.png").read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def robustness_views(results: list[Result], *, baseline: str | None = None, plot: bool = True) -> list[dict]:
    """The page's robustness section for ``results`` (one entry per sweep profile); [] when none of them is a
    sweep result, so other pages are unchanged."""
    if not any(r.kind == "accuracy" and r.robustness for r in results):
        return []
    return [profile_view(p, plot=plot) for p in build_profiles(results, baseline=baseline)]
