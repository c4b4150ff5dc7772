"""The robustness tables: the summary score per detector, AUC per axis and breaking point per axis (rich
tables for the terminal; tidy CSV and JSON for files)."""

from __future__ import annotations

import csv
import io
import json

from .profile import Profile

_METRIC = {"recall@1": "R@1", "micro_ap": "micro-AP", "map": "mAP"}


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _name(prof: Profile, det: str) -> str:
    return det + (" (random weights)" if prof.random.get(det) else "")


def breaking_text(prof: Profile, det: str, axis: str) -> str:
    """The breaking point as printed: a severity, 'never', or '<= S' when already below at the mildest."""
    s = prof.score(det, axis)
    if s.auc is None and s.breaking is None:
        return "empty"
    if s.breaking is None:
        return "never"
    text = f"{s.breaking:.3g}"
    return f"<={text}" if s.at_mildest else text


def rich_tables(prof: Profile) -> list:
    """Summary, AUC per axis and breaking points per axis, as rich tables."""
    from rich.table import Table

    what = _METRIC[prof.metric]
    title = (
        f"robustness on {prof.dataset} ({prof.fingerprint[:12]}, {prof.settings.get('protocol', 'native')})"
    )
    summary = Table(title=f"{title}: mean normalised AUC of {what} over {len(prof.axes)} axes")
    for col in ("detector", f"mean AUC ({what})", f"relative to {prof.baseline or '-'}", "rCE % (mCE form)"):
        summary.add_column(col, justify="left" if col == "detector" else "right")
    order = sorted(prof.detectors, key=lambda d: -(prof.summary[d] if prof.summary[d] is not None else -1))
    for det in order:
        summary.add_row(_name(prof, det), _num(prof.summary[det]), _num(prof.relative.get(det)),
                        _num(prof.rce.get(det), 1))  # fmt: skip
    auc = Table(title=f"normalised AUC of {what} per axis (1 = perfect at every level)")
    brk = Table(title="breaking point: lowest severity where R@1 < 0.5 (interpolated), in the axis's unit")
    for t in (auc, brk):
        t.add_column("detector")
    for axis in prof.axes:
        unit = prof.score(prof.detectors[0], axis).unit
        auc.add_column(axis, justify="right")
        brk.add_column(f"{axis}\n({unit})", justify="right")
    for det in order:
        auc.add_row(_name(prof, det), *(_auc_cell(prof, det, a) for a in prof.axes))
        brk.add_row(_name(prof, det), *(breaking_text(prof, det, a) for a in prof.axes))
    return [summary, auc, brk]


def _auc_cell(prof: Profile, det: str, axis: str) -> str:
    s = prof.score(det, axis)
    return _num(s.auc) + (f" ({s.n_empty} empty)" if s.n_empty else "")


def tidy_rows(profiles: list[Profile]) -> list[dict]:
    """One row per (profile, detector, axis, level): every number behind the tables and plots."""
    rows = []
    for prof in profiles:
        for c in prof.curves:
            s = prof.score(c.detector, c.axis)
            for i, sev in enumerate(c.severities):
                rows.append({
                    "dataset": prof.dataset, "fingerprint": prof.fingerprint,
                    "protocol": prof.settings.get("protocol", "native"), "detector": c.detector,
                    "random_weights": prof.random.get(c.detector, False), "axis": c.axis, "unit": c.unit,
                    "level": i, "severity": sev, "position": c.positions[i], "metric": prof.metric,
                    "value": c.values[i], "ci_lo": c.ci[i][0], "ci_hi": c.ci[i][1], "recall@1": c.recall1[i],
                    "n_queries": c.n_queries[i], "empty": c.empty[i], "axis_auc": s.auc,
                    "breaking_point": s.breaking, "summary_auc": prof.summary[c.detector],
                })  # fmt: skip
    return rows


def to_csv(profiles: list[Profile]) -> str:
    rows = tidy_rows(profiles)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(profiles: list[Profile]) -> str:
    return json.dumps([p.to_dict() for p in profiles], indent=1, sort_keys=True) + "\n"


def write_report(profiles: list[Profile], out) -> list:
    """profiles.json, robustness.csv and one PNG of curves per profile under folder ``out``; the paths."""
    from pathlib import Path

    from copybench.io import atomic_write_text
    from copybench.results import safe_name

    from .plots import plot_profile

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "profiles.json", to_json(profiles))
    atomic_write_text(out / "robustness.csv", to_csv(profiles))
    written = [out / "profiles.json", out / "robustness.csv"]
    for prof in profiles:
        protocol = prof.settings.get("protocol", "native")
        name = f"robustness-{safe_name(prof.dataset)}-{prof.fingerprint[:12]}-{safe_name(protocol)}-{prof.metric}"
        written.append(plot_profile(prof, out / f"{safe_name(name)}.png"))
    return written
