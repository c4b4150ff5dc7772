"""Robustness profiles: AUC, breaking points, summary and relative scores against hand-computed values; the
per-level scores of a sweep (empty levels kept) against an independent computation."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from copybench.levels import score_level, sweep_levels
from copybench.metrics import micro_ap
from copybench.results import Result
from copybench.robustness.profile import breaking_point, build_profiles, normalised_auc


def test_auc_hand_computed() -> None:
    assert normalised_auc([0, 0.5, 1], [1, 0.5, 0]) == pytest.approx(0.5)
    assert normalised_auc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert normalised_auc([0, 0.5, 1], [1, 1, 0]) == pytest.approx(0.75)  # 0.5 * 1 + 0.5 * 0.5
    assert normalised_auc([0.2, 0.6], [1, 0]) == pytest.approx(0.5)  # divided by the span covered
    assert normalised_auc([0, 0.5, 1], [1, None, 0]) == pytest.approx(0.5)  # an empty level is skipped
    assert normalised_auc([0, 1], [None, 1]) is None


def test_breaking_point_interpolates() -> None:
    # crossing between kept area 0.5 (R@1 0.6) and 0.05 (0.2): 0.5 + (0.6 - 0.5) / (0.6 - 0.2) * (0.05 - 0.5)
    assert breaking_point([1.0, 0.5, 0.05], [1.0, 0.6, 0.2]) == (pytest.approx(0.3875), False)
    assert breaking_point([95, 50, 5], [1.0, 0.9, 0.5]) == (None, False)  # 0.5 is not below 0.5: never
    assert breaking_point([0, 90, 180], [0.4, 0.1, 0.0]) == (0.0, True)
    assert breaking_point([0, 90, 180], [1.0, None, 0.0]) == (pytest.approx(90.0), False)


def _level(i: int, sev: float, pos: float, r1: float | None) -> dict:
    empty = r1 is None
    return {"level": i, "severity": sev, "position": pos, "recall@1": r1, "micro_ap": r1, "map": r1,
            "recall@1_ci": [None, None] if empty else [r1 - 0.1, r1], "micro_ap_ci": [None, None],
            "n_queries": 4, "n_valid": 0 if empty else 4, "n_with_match": 3, "empty": empty}  # fmt: skip


def _levels(severities: list, values: list) -> list[dict]:
    return [_level(i, s, p, v) for i, (s, p, v) in enumerate(zip(severities, [0, 0.5, 1], values))]


def _result(det: str, crop: list, jpeg: list, status: str = "none") -> Result:
    axes = {
        "crop": {
            "unit": "kept area",
            "mild": 1.0,
            "severe": 0.05,
            "levels": _levels([1.0, 0.525, 0.05], crop),
        },
        "jpeg": {"unit": "JPEG quality", "mild": 95, "severe": 5, "levels": _levels([95, 50, 5], jpeg)},
    }
    return Result(
        kind="accuracy",
        key={"detector": det, "dataset_fingerprint": "f" * 64, "protocol": "native"},
        detector={"name": det, "weights": {"status": status}},
        dataset={"name": "sweep-all-xs.seed0", "fingerprint": "f" * 64},
        robustness={"axes": axes, "protocol": "native"},
    )


def test_profile_summary_and_relative_forms() -> None:
    a = _result("sscd", [1.0, 1.0, 0.5], [1.0, 1.0, 1.0])  # AUCs: crop 0.875, jpeg 1.0 -> mean 0.9375
    b = _result("phash_64", [1.0, 0.5, 0.0], [1.0, 1.0, 0.5])  # crop 0.5, jpeg 0.875 -> mean 0.6875
    c = _result("rand", [0.0, 0.0, 0.0], [1.0, None, 1.0], status="random")  # crop 0, jpeg 1 (1 empty)
    (prof,) = build_profiles([a, b, c])
    assert prof.axes == ["crop", "jpeg"] and prof.baseline == "phash_64"  # the default baseline
    assert prof.summary == pytest.approx({"sscd": 0.9375, "phash_64": 0.6875, "rand": 0.5})
    assert prof.relative["sscd"] == pytest.approx(0.9375 / 0.6875)
    # rCE: mean over axes of (1 - AUC) / (1 - baseline AUC): sscd (0.125/0.5 + 0/0.125) / 2 = 12.5 %
    assert prof.rce["sscd"] == pytest.approx(12.5) and prof.rce["phash_64"] == pytest.approx(100.0)
    assert prof.rce["rand"] == pytest.approx(100 * (1 / 0.5 + 0) / 2)
    near = _result("phash_64", [1.0, 0.5, 0.0], [1.0, 1.0, 0.95])  # jpeg AUC 0.9875: error 0.0125 < 0.05
    (p2,) = build_profiles([a, near])
    assert p2.rce["sscd"] == pytest.approx(100 * 0.125 / 0.5)  # the jpeg axis is left out of the mean
    assert prof.score("rand", "jpeg").n_empty == 1 and prof.random == {
        "phash_64": False,
        "rand": True,
        "sscd": False,
    }
    assert prof.score("phash_64", "crop").breaking == pytest.approx(0.525)  # exactly 0.5 there, below after
    assert prof.score("sscd", "crop").breaking is None  # 0.5 at the last level is not below 0.5
    (other,) = build_profiles([a, b], baseline="sscd", metric="micro_ap")
    assert other.baseline == "sscd" and other.relative["sscd"] == 1.0


def test_profile_refusals() -> None:
    with pytest.raises(ValueError, match="no result with per-level scores"):
        build_profiles([_result("x", [1, 1, 1], [1, 1, 1]).replace(robustness={})])
    with pytest.raises(ValueError, match="baseline detector 'nope' has no sweep result; detectors: a"):
        build_profiles([_result("a", [1, 1, 1], [1, 1, 1])], baseline="nope")
    with pytest.raises(ValueError, match="unknown robustness metric"):
        build_profiles([_result("a", [1, 1, 1], [1, 1, 1])], metric="recall@5")


def test_score_level_hand_computed_and_empty() -> None:
    # 4 queries: q0 hit at rank 1, q1 hit at rank 2, q2 no hit, q3 a distractor (no positive)
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.6, 0.5], [0.95, 0.2]])
    hits = np.array([[True, False], [False, True], [False, False], [False, False]])
    n_pos = np.array([1, 1, 1, 0])
    every = np.ones(4, dtype=bool)
    out = score_level(scores, hits, n_pos, every, every, n_boot=200, seed=0)
    assert out["recall@1"] == pytest.approx(1 / 3) and out["n_with_match"] == 3 and not out["empty"]
    assert out["micro_ap"] == pytest.approx(micro_ap(scores, hits, n_pos))
    lo, hi = out["recall@1_ci"]
    assert 0.0 <= lo <= 1 / 3 <= hi <= 1.0
    none_decoded = score_level(scores, hits, n_pos, np.zeros(4, bool), every, n_boot=200, seed=0)
    assert none_decoded["empty"] and none_decoded["recall@1"] is None and none_decoded["n_queries"] == 4
    perfect = score_level(scores[:1], hits[:1], n_pos[:1], every[:1], every[:1], n_boot=50, seed=0)
    assert perfect["recall@1_ci"] == [1.0, 1.0]


def test_sweep_levels_keeps_every_level() -> None:
    params = [json.dumps({"sweep": {"axis": "jpeg", "level": lv}}) for lv in (0, 0, 1, 1)]
    ds = SimpleNamespace(meta={"sweep": {"axes": ["jpeg"], "severities": {"jpeg": [95, 50, 5]}}},
                         queries=pd.DataFrame({"params": params}))  # fmt: skip
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    hits = np.array([[True], [True], [False], [True]])
    decoded = np.array([True, True, False, False])  # level 1's queries did not decode
    out = sweep_levels(ds, scores, hits, np.ones(4, int), decoded, n_boot=0, seed=0, protocol="native")
    levels = out["axes"]["jpeg"]["levels"]
    assert [lv["severity"] for lv in levels] == [95, 50, 5]  # level 2 has no query at all: still reported
    assert levels[0]["recall@1"] == 1.0 and not levels[0]["empty"]
    assert levels[1]["empty"] and levels[2]["empty"] and levels[2]["n_queries"] == 0
    assert [lv["position"] for lv in levels] == pytest.approx([0, 0.5, 1])
    assert sweep_levels(SimpleNamespace(meta={}), scores, hits, np.ones(4), decoded, n_boot=0, seed=0,
                        protocol="native") == {}  # fmt: skip


def test_html_section() -> None:
    import pandas as pd

    from copybench.report.html import leaderboard_html
    from copybench.report.table import accuracy_frame
    from copybench.robustness.html import robustness_views

    a = _result("sscd", [1.0, 1.0, 0.5], [1.0, 1.0, 1.0])
    b = _result("phash_64", [1.0, 0.5, 0.0], [1.0, 1.0, 0.5], status="random")
    [view] = robustness_views([a, b], plot=False)
    cells = [c for t in view["tables"] for row in t["rows"] for c in row]
    assert "phash_64 (random weights)" in [c["text"] for c in cells] and "never" in [c["text"] for c in cells]
    assert 0.9375 in [c["v"] for c in cells] and view["image"] is None
    assert robustness_views([a.replace(robustness={})]) == []
    assert robustness_views([a, b])[0]["image"].startswith("data:image/png;base64,")
    page = leaderboard_html([a, b], accuracy_frame([a, b]), pd.DataFrame(), plots=False)
    assert "<h2>Robustness</h2>" in page and "relative to phash_64" in page and 'data-v="0.9375"' in page
