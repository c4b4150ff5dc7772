"""The robustness section of the HTML leaderboard page (and of the published site): for every sweep profile,
the summary score, AUC and breaking point per axis as sortable tables, and the curves as an inline PNG.

A hook, kept apart from :mod:`copybench.report.html`: the page calls :func:`robustness_section` with the
results it shows and appends the fragment; "" when none of them is a sweep result, so other pages are
unchanged. The tables use the page's ``sortable`` class, so its script sorts them too.
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from copybench.results import Result

from .profile import Profile, build_profiles
from .tables import breaking_text


def _cell(value, digits: int = 3) -> str:
    if value is None:
        return '<td data-v="-1">-</td>'
    if isinstance(value, float):
        return f'<td data-v="{value}">{value:.{digits}f}</td>'
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(caption: str, head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th{' class=text' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table class="sortable"><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _name(prof: Profile, det: str) -> str:
    return det + (" (random weights)" if prof.random.get(det) else "")


def profile_html(prof: Profile, *, plot: bool = True) -> str:
    """One profile: summary table, AUC and breaking point per axis, and (``plot``) the curves inline."""
    what = {"recall@1": "R@1", "micro_ap": "micro-AP", "map": "mAP"}[prof.metric]
    protocol = prof.settings.get("protocol", "native")
    summary = [
        [_name(prof, d), prof.summary[d], prof.relative.get(d), prof.rce.get(d)] for d in prof.detectors
    ]
    parts = [
        f"<h3>{html.escape(prof.dataset)} ({html.escape(prof.fingerprint[:12])}, {html.escape(protocol)})</h3>",
        _table(f"Mean normalised AUC of {what} over {len(prof.axes)} axes",
               ["detector", "mean AUC", f"relative to {prof.baseline or '-'}", "rCE % (mCE form)"], summary),
        _table(f"Normalised AUC of {what} per axis (1 = perfect at every level)", ["detector", *prof.axes],
               [[_name(prof, d), *(prof.score(d, a).auc for a in prof.axes)] for d in prof.detectors]),
        _table("Breaking point: lowest severity where R@1 < 0.5 (interpolated), in each axis's unit",
               ["detector", *(f"{a} ({prof.score(prof.detectors[0], a).unit})" for a in prof.axes)],
               [[_name(prof, d), *(breaking_text(prof, d, a) for a in prof.axes)] for d in prof.detectors]),
    ]  # fmt: skip
    if plot:
        parts.append(f'<p><img alt="robustness curves" style="max-width:100%" src="{_png_uri(prof)}"></p>')
    return "".join(parts)


def _png_uri(prof: Profile) -> str:
    from .plots import plot_profile

    with tempfile.TemporaryDirectory() as tmp:
        data = plot_profile(prof, Path(tmp) / "curves.png").read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def robustness_section(results: list[Result], *, baseline: str | None = None, plot: bool = True) -> str:
    """The page's robustness section for ``results``; "" when none of them is a sweep result."""
    if not any(r.kind == "accuracy" and r.robustness for r in results):
        return ""
    profiles = build_profiles(results, baseline=baseline)
    note = (
        "<p>Each sweep dataset holds the same items at increasing severity on every axis "
        "(<code>copybench data build sweep-all-SIZE</code>); <code>copybench robustness</code> prints the same "
        "tables. rCE: ImageNet-C's mCE form, the mean over axes of (1 - AUC) / (1 - baseline's AUC), in percent "
        "(lower is more robust).</p>"
    )
    return "<h2>Robustness</h2>" + note + "".join(profile_html(p, plot=plot) for p in profiles)
