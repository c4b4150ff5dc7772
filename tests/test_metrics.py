"""Tests for copybench.metrics: hand-computed cases and independent reference computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from copybench import metrics as M

NEG_INF = -np.inf


def _one(scores: list[float], hits: list[bool], n_pos: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A single query as (1, k) arrays."""
    return np.array([scores], float), np.array([hits], bool), np.array([n_pos])


def _random_case(
    rng: np.random.Generator, q: int = 40, k: int = 12, n_levels: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random top-k rows with many tied scores, padding, distractors and positives beyond k."""
    scores = rng.integers(0, n_levels, size=(q, k)) / n_levels
    scores = -np.sort(-scores, axis=1)
    hits = rng.random((q, k)) < 0.25
    pad = rng.random((q, k)) < 0.1
    pad = np.cumsum(pad, axis=1) > 0  # padding only at the end of a row, as faiss returns it
    scores[pad] = np.where(rng.random(pad.sum()) < 0.5, NEG_INF, np.nan)
    hits[pad] = False
    n_pos = hits.sum(axis=1) + rng.integers(0, 3, size=q)  # some positives never retrieved
    n_pos[rng.random(q) < 0.2] = 0  # distractor queries
    hits[n_pos == 0] = False
    return scores, hits, n_pos


def _informative_case(rng: np.random.Generator, q: int = 80, k: int = 8) -> tuple[np.ndarray, ...]:
    """Like _random_case, but positives mostly outscore negatives, so 90 % precision is reachable."""
    scores, hits, n_pos = _random_case(rng, q, k, n_levels=20)
    scores = np.where(hits, scores + rng.random(hits.shape) * 2.0, scores)
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(hits, order, 1), n_pos


# --- per-query AP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "hits", "n_pos", "rv", "std"),
    [
        # positive at rank 0: p0 = 1 (r = 0), p1 = 1/1 -> AP = 1 under both definitions
        ([0.9, 0.5, 0.1], [True, False, False], 1, 1.0, 1.0),
        # positive at rank 2: p0 = 0/2 = 0, p1 = 1/3 -> revisitop (0 + 1/3)/2 = 1/6; standard = 1/3
        ([0.9, 0.5, 0.1], [False, False, True], 1, 1 / 6, 1 / 3),
        # positives at ranks 0 and 2: (1 + (1/2 + 2/3)/2) / 2 = 19/24; standard (1 + 2/3) / 2 = 5/6
        ([0.9, 0.5, 0.1], [True, False, True], 2, 19 / 24, 5 / 6),
        # all right: every p0 = p1 = 1
        ([0.9, 0.5, 0.1], [True, True, True], 3, 1.0, 1.0),
        # all wrong
        ([0.9, 0.5, 0.1], [False, False, False], 1, 0.0, 0.0),
        # positive tied with a negative, listed first: pessimistic order puts it at rank 1:
        # revisitop (0/1 + 1/2)/2 = 1/4; sklearn groups the tie: precision 1/2 at that threshold
        ([0.5, 0.5, 0.1], [True, False, False], 1, 1 / 4, 1 / 2),
        # padding (-inf, NaN) is not a retrieval; the second positive is never retrieved: 1/2
        ([0.9, NEG_INF, np.nan], [True, False, False], 2, 1 / 2, 1 / 2),
        # positives beyond k: 1 of 3 retrieved, at rank 0 -> 1/3
        ([0.9, 0.8], [True, False], 3, 1 / 3, 1 / 3),
    ],
)
def test_ap_hand_cases(scores, hits, n_pos, rv, std):
    args = _one(scores, hits, n_pos)
    assert M.ap_revisitop(*args)[0] == pytest.approx(rv, abs=1e-12)
    assert M.ap_standard(*args)[0] == pytest.approx(std, abs=1e-12)


def test_ap_resorts_rows_instead_of_trusting_order():
    # the positive (0.9) is listed after a 0.3 negative and a padding slot; re-sorted it is rank 0
    args = _one([np.nan, 0.3, 0.9], [False, False, True], 1)
    assert M.ap_revisitop(*args)[0] == 1.0
    assert M.ap_standard(*args)[0] == 1.0


def test_constant_score_cannot_game_ap():
    # every reference scores 1.0: whichever way the positive is listed, it ranks last among the ties
    for hits in ([True, False, False], [False, True, False], [False, False, True]):
        args = _one([1.0, 1.0, 1.0], hits, 1)
        assert M.ap_revisitop(*args)[0] == pytest.approx((0 / 2 + 1 / 3) / 2)
        assert M.ap_standard(*args)[0] == pytest.approx(1 / 3)


def test_ap_is_nan_for_distractor_queries():
    scores = np.array([[0.9, 0.1], [0.8, 0.2]])
    hits = np.array([[False, False], [True, False]])
    for fn in (M.ap_revisitop, M.ap_standard):
        ap = fn(scores, hits, np.array([0, 1]))
        assert np.isnan(ap[0]) and ap[1] == 1.0


def test_ap_standard_matches_sklearn_when_all_references_retrieved():
    rng = np.random.default_rng(1)
    q, n_refs = 60, 25
    y_score = rng.integers(0, 5, size=(q, n_refs)) / 4.0  # 5 levels over 25 refs: many ties
    y_true = rng.random((q, n_refs)) < 0.3
    order = np.argsort(-y_score, axis=1, kind="stable")
    scores, hits = np.take_along_axis(y_score, order, 1), np.take_along_axis(y_true, order, 1)
    n_pos = y_true.sum(axis=1)
    ap = M.ap_standard(scores, hits, n_pos)
    checked = 0
    for i in range(q):
        if n_pos[i] == 0:
            assert np.isnan(ap[i])
            continue
        tie_pos_neg = any(
            y_true[i][y_score[i] == s].any() and (~y_true[i][y_score[i] == s]).any() for s in y_score[i]
        )
        checked += tie_pos_neg
        assert ap[i] == pytest.approx(average_precision_score(y_true[i], y_score[i]), abs=1e-12)
    assert checked > 20  # the comparison really exercised positive/negative ties


def _ap_revisitop_loop(scores: np.ndarray, hits: np.ndarray, n_pos: int) -> float:
    """Straight transcription of revisitop compute_ap on a pessimistically sorted row."""
    items = sorted(
        ((s, h) for s, h in zip(scores, hits) if not (math.isnan(s) or s == NEG_INF)),
        key=lambda t: (-t[0], t[1]),
    )
    ranks = [r for r, (_, h) in enumerate(items) if h]
    ap = 0.0
    for j, r in enumerate(ranks):
        p0 = 1.0 if r == 0 else j / r
        p1 = (j + 1) / (r + 1)
        ap += (p0 + p1) / 2 / n_pos
    return ap


def test_ap_revisitop_matches_loop_on_random_ties():
    scores, hits, n_pos = _random_case(np.random.default_rng(2))
    ap = M.ap_revisitop(scores, hits, n_pos)
    for i in range(len(n_pos)):
        if n_pos[i] == 0:
            assert np.isnan(ap[i])
        else:
            assert ap[i] == pytest.approx(_ap_revisitop_loop(scores[i], hits[i], n_pos[i]), abs=1e-12)


# --- micro-AP -------------------------------------------------------------------------------------


def _pooled_loop(scores: np.ndarray, hits: np.ndarray) -> list[tuple[float, bool]]:
    items = [
        (float(s), bool(h))
        for row_s, row_h in zip(scores, hits)
        for s, h in zip(row_s, row_h)
        if not (math.isnan(s) or s == NEG_INF)
    ]
    return sorted(items, key=lambda t: (-t[0], t[1]))  # False < True: negatives first among ties


def _micro_ap_loop(scores: np.ndarray, hits: np.ndarray, n_pos: np.ndarray) -> float:
    """ISC definition read literally: AP = sum (recall_i - recall_{i-1}) * precision_i."""
    n_gt = int(sum(n_pos))
    tp, prev_recall, ap = 0, 0.0, 0.0
    for i, (_, h) in enumerate(_pooled_loop(scores, hits), start=1):
        tp += h
        recall = tp / n_gt
        ap += (recall - prev_recall) * (tp / i)
        prev_recall = recall
    return ap


def test_micro_ap_hand_cases():
    # one query, positive at rank 0, one more positive never retrieved: pooled P, N -> (1/2) * 1
    assert M.micro_ap(*_one([0.9, 0.8], [True, False], 2)) == pytest.approx(0.5)
    # two queries scoring everything 1.0: pooled N, N, P, P -> (1/3 + 2/4) / 2 = 5/12
    const = np.ones((2, 2)), np.array([[True, False], [True, False]]), np.array([1, 1])
    assert M.micro_ap(*const) == pytest.approx(5 / 12)
    # the same rankings with informative scores: pooled P, P, N, N -> 1
    varied = np.array([[0.9, 0.1], [0.8, 0.2]]), const[1], const[2]
    assert M.micro_ap(*varied) == pytest.approx(1.0)


def test_distractors_lower_micro_ap_but_not_map():
    # Q0 matches (positive at rank 0); Q1 is a distractor whose top score 0.95 beats Q0's positive
    scores = np.array([[0.9, 0.8], [0.95, 0.1]])
    hits = np.array([[True, False], [False, False]])
    n_pos = np.array([1, 0])
    alone = M.evaluate(scores[:1], hits[:1], n_pos[:1], n_boot=0)["overall"]
    both = M.evaluate(scores, hits, n_pos, n_boot=0)["overall"]
    assert alone["micro_ap"] == 1.0 and alone["map"] == 1.0
    # pooled: 0.95 N, 0.9 P, 0.8 N, 0.1 N -> precision 1/2 at the only positive
    assert both["micro_ap"] == pytest.approx(0.5)
    assert both["map"] == 1.0
    assert both["n_queries"] == 2 and both["n_with_match"] == 1


def test_micro_ap_matches_loop_on_random_ties():
    for seed in range(5):
        scores, hits, n_pos = _random_case(np.random.default_rng(10 + seed))
        assert M.micro_ap(scores, hits, n_pos) == pytest.approx(
            _micro_ap_loop(scores, hits, n_pos), abs=1e-12
        )


def test_micro_ap_nan_without_ground_truth():
    assert np.isnan(M.micro_ap(*_one([0.9, 0.8], [False, False], 0)))


def test_pr_curve_matches_loop():
    scores, hits, n_pos = _random_case(np.random.default_rng(3))
    precision, recall, thresholds = M.pr_curve(scores, hits, n_pos)
    pooled = _pooled_loop(scores, hits)
    assert len(precision) == len(recall) == len(thresholds) == len(pooled)
    tp = np.cumsum([h for _, h in pooled])
    np.testing.assert_allclose(precision, tp / np.arange(1, len(pooled) + 1))
    np.testing.assert_allclose(recall, tp / n_pos.sum())
    np.testing.assert_array_equal(thresholds, [s for s, _ in pooled])


# --- recall at precision --------------------------------------------------------------------------


def _column(pattern: str, extra_missed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One k=1 query per character, 'P' a hit, 'N' a distractor; scores 1.0, 0.95, ... in order."""
    hits = np.array([[c == "P"] for c in pattern] + [[False]] * extra_missed)
    scores = np.array([[1.0 - 0.05 * i] for i in range(len(pattern))] + [[NEG_INF]] * extra_missed)
    n_pos = np.array([int(c == "P") for c in pattern] + [1] * extra_missed)
    return scores, hits, n_pos


def test_recall_at_precision_hand_example():
    # pooled PPPPPPPPP N P N P, plus one positive never retrieved (N_gt = 12)
    # prefix 10: 9/10 = 0.9 ok; prefix 11: 10/11 = 0.909 ok; prefix 12: 10/12 no; prefix 13: 11/13 no
    # -> recall 10/12 at the 11th prediction, whose score is 1.0 - 0.05 * 10 = 0.5
    args = _column("PPPPPPPPPNPNP", extra_missed=1)
    recall, threshold = M.recall_at_precision(*args, precision=0.9)
    assert recall == pytest.approx(10 / 12)
    assert threshold == pytest.approx(0.5)
    # a lower target reaches every retrieved positive: 11/12 at the last one (score 0.4)
    assert M.recall_at_precision(*args, precision=0.8) == pytest.approx((11 / 12, 0.4))


def test_recall_at_precision_ties_are_pessimistic():
    # as above, but the N after the 10th P now ties with it (both 0.5): the N is ranked first, so
    # prefix 11 = 9P+2N (9/11 < 0.9) and prefix 12 = 10/12; the best is 9 P at score 0.6
    scores, hits, n_pos = _column("PPPPPPPPPNPNP", extra_missed=1)
    scores[11, 0] = scores[10, 0]
    recall, threshold = M.recall_at_precision(scores, hits, n_pos, precision=0.9)
    assert recall == pytest.approx(9 / 12)
    assert threshold == pytest.approx(0.6)


def test_recall_at_precision_never_reached():
    # as the ISC evaluation (find_operating_point returns None): no recall, not a recall of 0
    recall, threshold = M.recall_at_precision(*_column("NNPN"), precision=0.9)
    assert np.isnan(recall) and np.isnan(threshold)


# --- rank metrics ---------------------------------------------------------------------------------

# q0: first positive at rank 1 (n_pos 1); q1: ranks 0 and 1 (n_pos 3); q2: nothing retrieved (n_pos 2);
# q3: distractor, excluded from every mean
RANK_HITS = np.array(
    [[False, True, False], [True, True, False], [False, False, False], [False, False, False]]
)
RANK_NPOS = np.array([1, 3, 2, 0])


@pytest.mark.parametrize(
    ("fn", "k", "expected"),
    [
        (M.recall_at_k, 1, 1 / 3),  # only q1
        (M.recall_at_k, 2, 2 / 3),  # q0 and q1
        (M.recall_at_k, 10, 2 / 3),  # k beyond the 3 columns uses what is there
        (M.precision_at_k, 1, 1 / 3),  # (0 + 1 + 0) / 3
        (M.precision_at_k, 2, 1 / 2),  # (1/2 + 2/2 + 0) / 3
        (M.precision_at_k, 10, 0.1),  # (1/10 + 2/10 + 0) / 3: unfilled ranks are misses
        (M.precision_at_k_capped, 1, 1 / 3),  # (0/1 + 1/1 + 0/1) / 3
        (M.precision_at_k_capped, 2, 2 / 3),  # (1/min(2,1) + 2/min(2,3) + 0/min(2,2)) / 3
        (M.precision_at_k_capped, 3, 5 / 9),  # (1/min(3,1) + 2/min(3,3) + 0/min(3,2)) / 3
    ],
)
def test_rank_metrics_hand_cases(fn, k, expected):
    assert fn(RANK_HITS, RANK_NPOS, k) == pytest.approx(expected)


def test_mrr_hand_case():
    # (1/2 + 1/1 + 0) / 3
    assert M.mrr(RANK_HITS, RANK_NPOS) == pytest.approx(0.5)


def test_rank_metrics_nan_without_matched_queries():
    hits, n_pos = np.zeros((2, 3), bool), np.array([0, 0])
    assert np.isnan(M.recall_at_k(hits, n_pos, 1))
    assert np.isnan(M.mrr(hits, n_pos))


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="padding"):
        M.micro_ap(*_one([0.9, np.nan], [False, True], 1))
    with pytest.raises(ValueError, match="more retrieved positives"):
        M.ap_revisitop(*_one([0.9, 0.8], [True, True], 1))
    with pytest.raises(ValueError, match="shape"):
        M.ap_standard(np.zeros((2, 3)), np.zeros((2, 2), bool), np.array([1, 1]))
    with pytest.raises(ValueError, match="bool"):
        M.recall_at_k(np.zeros((2, 3), int), np.array([1, 1]), 1)


# --- bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_ci_is_deterministic_per_seed():
    values = np.random.default_rng(4).random(200)

    def mean(counts: np.ndarray) -> np.ndarray:
        assert (counts.sum(axis=1) == values.size).all()  # each resample has n_queries rows
        return counts @ values / values.size

    a = M.bootstrap_ci(mean, values.size, n_boot=300, seed=7)
    b = M.bootstrap_ci(mean, values.size, n_boot=300, seed=7)
    c = M.bootstrap_ci(mean, values.size, n_boot=300, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[0] < values.mean() < a[1]


def test_bootstrap_ci_level_matches_normal_theory_for_a_mean():
    values = np.random.default_rng(4).random(400)
    lo, hi = M.bootstrap_ci(
        lambda counts: counts @ values / values.size, values.size, n_boot=3000, alpha=0.05
    )
    # the bootstrap distribution of a mean of 400 values is close to normal: width 2 * 1.96 * sd / sqrt(n)
    # (a 90 % interval would be 16 % narrower)
    assert hi - lo == pytest.approx(2 * 1.96 * values.std() / np.sqrt(values.size), rel=0.07)
    assert (lo + hi) / 2 == pytest.approx(values.mean(), abs=0.005)


def test_bootstrap_ci_of_several_statistics():
    values = np.random.default_rng(4).random((100, 2)) * [1.0, 10.0]
    ci = M.bootstrap_ci(lambda counts: counts @ values / values.shape[0], values.shape[0], n_boot=200)
    assert ci.shape == (2, 2)
    assert (ci[0] < values.mean(axis=0)).all() and (values.mean(axis=0) < ci[1]).all()


def test_micro_ap_resampler_equals_micro_ap_on_resampled_rows():
    scores, hits, n_pos = _random_case(np.random.default_rng(5), q=30)
    resampler = M._micro_ap_resampler(M._pool(scores, hits), n_pos)
    rng = np.random.default_rng(6)
    for _ in range(10):
        idx = rng.integers(0, len(n_pos), len(n_pos))
        counts = np.bincount(idx, minlength=len(n_pos))[None, :]
        expected = M.micro_ap(scores[idx], hits[idx], n_pos[idx])
        assert resampler(counts)[0] == pytest.approx(expected, abs=1e-12)


def test_evaluate_ci_contains_point_and_is_deterministic():
    scores, hits, n_pos = _random_case(np.random.default_rng(9), q=300, k=20, n_levels=50)
    a = M.evaluate(scores, hits, n_pos, n_boot=400, seed=3)["overall"]
    b = M.evaluate(scores, hits, n_pos, n_boot=400, seed=3)["overall"]
    assert a == b
    for key in ("map", "micro_ap"):
        lo, hi = a[f"{key}_ci"]
        assert lo < a[key] < hi
        assert hi - lo < 0.2


# --- evaluate -------------------------------------------------------------------------------------

KEYS = {
    "map", "map_std", "map_ci", "micro_ap", "micro_ap_ci", "recall_at_p90", "threshold_at_p90",
    "recall@1", "recall@5", "recall@10", "precision@1", "precision@5", "precision@10", "mrr",
    "n_queries", "n_with_match", "mrr_all",
    *(f"{name}@{k}" for name in ("recall_frac", "isc_recall", "precision_rv") for k in (1, 5, 10)),
}  # fmt: skip


def test_evaluate_matches_functions_and_is_json_ready():
    scores, hits, n_pos = _informative_case(np.random.default_rng(11))
    only_distractors = n_pos == 0
    half = np.arange(len(n_pos)) % 2 == 0
    res = M.evaluate(scores, hits, n_pos, groups={"half": half, "dis": only_distractors}, n_boot=50)
    json.dumps(res, allow_nan=False)  # NaN would raise here
    assert set(res) == {"overall", "groups"} and set(res["groups"]) == {"half", "dis"}
    overall, group = res["overall"], res["groups"]["half"]
    assert set(overall) == KEYS and set(group) == KEYS
    has = n_pos > 0
    assert overall["map"] == pytest.approx(np.mean(M.ap_revisitop(scores, hits, n_pos)[has]))
    assert overall["map_std"] == pytest.approx(np.mean(M.ap_standard(scores, hits, n_pos)[has]))
    assert overall["micro_ap"] == pytest.approx(M.micro_ap(scores, hits, n_pos))
    recall90, threshold90 = M.recall_at_precision(scores, hits, n_pos, 0.9)
    assert 0 < recall90 < 1  # the case reaches 90 % precision, but not at full recall
    assert (overall["recall_at_p90"], overall["threshold_at_p90"]) == pytest.approx((recall90, threshold90))
    # a group's micro-AP pools its own queries, its distractors included
    assert group["micro_ap"] == pytest.approx(M.micro_ap(scores[half], hits[half], n_pos[half]))
    assert group["n_queries"] == half.sum() and group["n_with_match"] == (half & has).sum()
    # k = 8 < 10: recall@10 is computed over the 8 columns (rows re-sorted pessimistically)
    sorted_hits = M._sort_rows(scores, hits).hits
    assert overall["recall@10"] == pytest.approx(M.recall_at_k(sorted_hits, n_pos, 8))
    assert overall["precision@10"] == pytest.approx(sorted_hits[has].sum() / has.sum() / 10)
    assert overall["mrr"] == pytest.approx(M.mrr(sorted_hits, n_pos))


def test_evaluate_undefined_values_are_none():
    scores, hits, n_pos = _random_case(np.random.default_rng(12), q=50)
    res = M.evaluate(scores, hits, n_pos, groups={"dis": n_pos == 0}, n_boot=20)["groups"]["dis"]
    assert res["n_with_match"] == 0 and res["n_queries"] == (n_pos == 0).sum() > 0
    for key in ("map", "map_std", "micro_ap", "recall@1", "precision@5", "mrr", "recall_at_p90"):
        assert res[key] is None, key
    assert res["map_ci"] == [None, None] and res["micro_ap_ci"] == [None, None]


def test_evaluate_uses_pessimistic_rank_order():
    # the positive is tied with a negative and listed first; the rank metrics must see it at rank 1
    res = M.evaluate(*_one([0.5, 0.5, 0.1], [True, False, False], 1), n_boot=0)["overall"]
    assert res["recall@1"] == 0.0 and res["mrr"] == 0.5 and res["recall@5"] == 1.0
    assert res["map"] == pytest.approx(0.25) and res["map_std"] == pytest.approx(0.5)


def test_evaluate_rejects_bad_group_mask():
    scores, hits, n_pos = _one([0.9], [True], 1)
    with pytest.raises(ValueError, match="group"):
        M.evaluate(scores, hits, n_pos, groups={"g": np.array([0])}, n_boot=0)
