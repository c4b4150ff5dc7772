"""Robustness profiles from sweep results: per axis, a detector's metric against severity, its breaking point,
its normalised area under the curve, and one summary score per detector with a relative form.

- **Curve**: the per-level numbers a run on a sweep dataset wrote (``Result.robustness``, see
  :mod:`copybench.levels`), in the axis's unit, mild first.
- **Breaking point**: the lowest severity at which R@1 falls below the threshold (0.5), linearly interpolated
  between the last level at or above it and the first below; "never" when no level falls below. A detector
  already below at the mildest level breaks there (``at_mildest``). Always read on R@1, whatever ``metric``.
- **AUC**: the trapezoid area under the metric over the levels' positions (severity mapped to [0, 1] along the
  axis's default span), divided by the span covered: 1.0 means perfect at every level, on every axis alike.
  Empty levels (no decodable query) are left out of the area and counted in ``n_empty``.
- **Summary**: the mean AUC over the axes; against a baseline detector, ``relative`` (summary / baseline's)
  and ``rce``, ImageNet-C's mCE form: the mean over axes of (1 - AUC) / (1 - baseline's AUC), in percent
  (100 = as robust as the baseline, lower = more robust); an axis where the baseline's 1 - AUC is under
  0.05 (nearly perfect) is left out, since a ratio to a near-zero error measures noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from copybench.results import Result

METRICS = ("recall@1", "micro_ap", "map")
THRESHOLD = 0.5
# rCE leaves out an axis on which the baseline's 1 - AUC is below this: a ratio to a near-zero error measures
# noise (pHash's 0.999 on JPEG made a colour histogram's 0.97 count 30 times the baseline's error)
MIN_BASELINE_ERROR = 0.05
DEFAULT_BASELINE = "phash_64"  # a weak, well-understood reference, as AlexNet is ImageNet-C's


@dataclass(frozen=True)
class Curve:
    """One detector's metric against severity on one axis (None where a level is empty)."""

    detector: str
    axis: str
    unit: str
    severities: list[float]
    positions: list[float]
    values: list[float | None]
    ci: list[list[float | None]]  # per level [lo, hi]
    recall1: list[float | None]
    n_queries: list[int]
    empty: list[bool]


@dataclass(frozen=True)
class AxisScore:
    """A detector's summary of one axis."""

    detector: str
    axis: str
    unit: str
    auc: float | None
    breaking: float | None  # severity in the axis's unit; None: never (or no usable level)
    at_mildest: bool
    n_empty: int


@dataclass(frozen=True)
class Profile:
    """The robustness profile of the detectors run on one sweep dataset with one set of settings."""

    dataset: str
    fingerprint: str
    settings: dict
    metric: str
    axes: list[str]
    detectors: list[str]
    random: dict[str, bool]
    curves: list[Curve]
    scores: list[AxisScore]
    summary: dict[str, float | None]
    baseline: str | None = None
    relative: dict[str, float | None] = field(default_factory=dict)
    rce: dict[str, float | None] = field(default_factory=dict)

    def score(self, detector: str, axis: str) -> AxisScore:
        return next(s for s in self.scores if s.detector == detector and s.axis == axis)

    def to_dict(self) -> dict:
        """JSON-ready, every number as computed."""
        from dataclasses import asdict

        return asdict(self)


def normalised_auc(positions: list[float], values: list[float | None]) -> float | None:
    """Trapezoid area of ``values`` over ``positions`` divided by the span; None values (empty levels) are
    skipped; None when fewer than two levels have a value."""
    pts = [(x, y) for x, y in zip(positions, values) if y is not None]
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        return None
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(pts))
    return area / (pts[-1][0] - pts[0][0])


def breaking_point(
    severities: list[float], values: list[float | None], threshold: float = THRESHOLD
) -> tuple[float | None, bool]:
    """(severity where ``values`` first falls below ``threshold``, interpolated; whether already at the mildest
    level); (None, False) when it never does. Empty levels (None) are skipped."""
    pts = [(s, v) for s, v in zip(severities, values) if v is not None]
    for i, (s, v) in enumerate(pts):
        if v < threshold:
            if i == 0:
                return float(s), True
            s0, v0 = pts[i - 1]
            return float(s0 + (v0 - threshold) / (v0 - v) * (s - s0)), False
    return None, False


def curves_of(result: Result, metric: str) -> list[Curve]:
    """The curves of one sweep result, one per axis."""
    from copybench.datasets.recipes import SWEEP_AXES

    out = []
    blocks = result.robustness["axes"]  # sorted by name in the file: back to the sweep's order
    for axis, block in sorted(
        blocks.items(), key=lambda kv: SWEEP_AXES.index(kv[0]) if kv[0] in SWEEP_AXES else 99
    ):
        levels = block["levels"]
        out.append(
            Curve(
                result.detector_name,
                axis,
                block["unit"],
                [lv["severity"] for lv in levels],
                [lv["position"] for lv in levels],
                [lv.get(metric) for lv in levels],
                [list(lv.get(f"{metric}_ci") or [None, None]) for lv in levels],
                [lv.get("recall@1") for lv in levels],
                [lv["n_queries"] for lv in levels],
                [bool(lv.get("empty")) for lv in levels],
            )
        )
    return out


def axis_score(curve: Curve, threshold: float = THRESHOLD) -> AxisScore:
    """AUC and breaking point of one curve."""
    breaking, at_mildest = breaking_point(curve.severities, curve.recall1, threshold)
    auc = normalised_auc(curve.positions, curve.values)
    return AxisScore(curve.detector, curve.axis, curve.unit, auc, breaking, at_mildest, sum(curve.empty))


def _group_key(result: Result) -> str:
    settings = {k: v for k, v in result.key.items() if k != "detector"}
    return json.dumps(settings, sort_keys=True)


def build_profiles(
    results: list[Result],
    *,
    metric: str = "recall@1",
    baseline: str | None = None,
    threshold: float = THRESHOLD,
) -> list[Profile]:
    """One profile per (sweep dataset, settings) among ``results``; ValueError names what is wrong."""
    if metric not in METRICS:
        raise ValueError(f"unknown robustness metric {metric!r}: use one of {', '.join(METRICS)}")
    sweeps = [r for r in results if r.kind == "accuracy" and r.robustness]
    if not sweeps:
        raise ValueError(
            "no result with per-level scores: run `copybench run` on a sweep dataset "
            "(`copybench data build sweep-all-xs --out DIR`) first"
        )
    groups: dict[str, list[Result]] = {}
    for r in sweeps:
        groups.setdefault(_group_key(r), []).append(r)
    profiles = [_profile(rs, metric, baseline, threshold) for _, rs in sorted(groups.items())]
    if baseline is not None and not any(p.baseline for p in profiles):
        names = sorted({r.detector_name for r in sweeps})
        raise ValueError(f"baseline detector {baseline!r} has no sweep result; detectors: {', '.join(names)}")
    return profiles


def _profile(results: list[Result], metric: str, baseline: str | None, threshold: float) -> Profile:
    results = sorted(results, key=lambda r: r.detector_name)
    names = [r.detector_name for r in results]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        files = ", ".join(str(r.source) for r in results if r.detector_name == dup)
        raise ValueError(f"two sweep results for {dup} on one dataset with one set of settings: {files}")
    curves = [c for r in results for c in curves_of(r, metric)]
    scores = [axis_score(c, threshold) for c in curves]
    axes = list(dict.fromkeys(c.axis for c in curves))
    summary = {d: _mean([s.auc for s in scores if s.detector == d]) for d in names}
    base = baseline if baseline is not None else (DEFAULT_BASELINE if DEFAULT_BASELINE in names else None)
    base = base if base in names else None
    first = results[0]
    settings = {k: v for k, v in first.key.items() if k not in ("detector", "dataset_fingerprint")}
    prof = Profile(first.dataset_name or "", first.fingerprint or "", settings, metric, axes, names,
                   {r.detector_name: r.is_random for r in results}, curves, scores, summary)  # fmt: skip
    return prof if base is None else _relative(prof, base)


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def _relative(prof: Profile, base: str) -> Profile:
    from dataclasses import replace

    b = prof.summary[base]
    relative = {d: (s / b if s is not None and b else None) for d, s in prof.summary.items()}
    rce = {}
    for d in prof.detectors:
        ratios = []
        for axis in prof.axes:
            mine, theirs = prof.score(d, axis).auc, prof.score(base, axis).auc
            if mine is not None and theirs is not None and 1.0 - theirs >= MIN_BASELINE_ERROR:
                ratios.append((1.0 - mine) / (1.0 - theirs))
        rce[d] = 100.0 * sum(ratios) / len(ratios) if ratios else None
    return replace(prof, baseline=base, relative=relative, rce=rce)


def load_profiles(
    results: str | Path,
    *,
    metric: str = "recall@1",
    baseline: str | None = None,
    threshold: float = THRESHOLD,
) -> list[Profile]:
    """Profiles of the sweep results under a file or folder (see :func:`build_profiles`)."""
    from copybench.results import read_results

    found, errors = read_results(results)
    if errors and not found:
        raise ValueError(errors[0])
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold must be between 0 and 1, got {threshold}")
    return build_profiles(found, metric=metric, baseline=baseline, threshold=threshold)
