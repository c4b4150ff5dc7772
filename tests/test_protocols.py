"""Each protocol against an independent implementation written here from the original code's definition.

The references below re-state, loop by loop, what the originals compute (DCR's ``utils_ret.compute_map``,
ISC 2021's ``isc/metrics.py``, DINO's ``eval_copy_detection.py`` and ``utils.PCA``, SSCD's ``disc_eval.py``
score normalisation and torchvision PIL pipelines); copybench's vectorised code must agree to 1e-9 on random
inputs with tied scores, several positives per query and distractor queries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from copybench import metrics as M
from copybench import protocols as P
from copybench.detectors import get_spec
from copybench.preprocess import Preprocess, pil_to_tensor
from copybench.retrieval import fit_whitening_dino, score_norm_offsets, search


def _full_ranking_case(rng: np.random.Generator, q: int = 60, n_ref: int = 25):
    """Scores of every query against every reference (ties: 5 levels), several positives, distractors."""
    scores = rng.integers(0, 5, size=(q, n_ref)) / 5.0
    positives = [
        set(rng.choice(n_ref, size=rng.integers(1, 4), replace=False)) if rng.random() > 0.2 else set()
        for _ in range(q)
    ]
    return scores, positives


def _pessimistic_order(row: np.ndarray, pos: set) -> list[int]:
    """References by decreasing score; among equal scores negatives first (copybench's and ISC's rule)."""
    return sorted(range(len(row)), key=lambda j: (-row[j], j in pos))


def _as_topk(scores: np.ndarray, positives: list[set], k: int):
    """copybench's input: per query its top-k in pessimistic order, hits and n_pos."""
    order = np.array([_pessimistic_order(row, pos)[:k] for row, pos in zip(scores, positives)])
    top = np.take_along_axis(scores, order, 1)
    hits = np.array([[j in pos for j in row] for row, pos in zip(order, positives)])
    return top, hits, np.array([len(p) for p in positives])


# --- dcr: utils_ret.compute_map ----------------------------------------------------------------------


def _dcr_compute_map(ranks: np.ndarray, gnd: list[set], kappas: list[int]):
    """The study's compute_map, restated: (mAP, precision@kappas, recall@kappas, MRR)."""
    total_ap, nq, nempty, mrr = 0.0, len(gnd), 0, 0.0
    pr, recs = np.zeros(len(kappas)), []
    for i in range(nq):
        if not gnd[i]:
            nempty += 1
            continue
        pos = np.array([r for r in range(ranks.shape[0]) if ranks[r, i] in gnd[i]])
        mrr += 1 / (pos.min() + 1)
        ap = 0.0
        for j, rank in enumerate(pos):
            p0 = 1.0 if rank == 0 else j / rank
            ap += (p0 + (j + 1) / (rank + 1)) / len(gnd[i]) / 2
        total_ap += ap
        pos1 = pos + 1
        for j, kappa in enumerate(kappas):
            kq = min(pos1.max(), kappa)
            pr[j] += (pos1 <= kq).sum() / kq
        recs.append([(pos1 < kappa + 1).sum() / len(gnd[i]) for kappa in kappas])
    return total_ap / (nq - nempty), pr / (nq - nempty), np.mean(recs, axis=0), mrr / nq


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dcr_metrics_equal_the_studys_compute_map(seed):
    scores, positives = _full_ranking_case(np.random.default_rng(seed))
    n_ref = scores.shape[1]
    ranks = np.array([_pessimistic_order(row, pos) for row, pos in zip(scores, positives)]).T
    kappas = [1, 5, 10]
    want_map, want_pr, want_rec, want_mrr = _dcr_compute_map(ranks, positives, kappas)
    got = M.evaluate(*_as_topk(scores, positives, P.topk_for("dcr", None, n_ref)), n_boot=0)["overall"]
    assert got["map"] == pytest.approx(want_map, abs=1e-9)
    assert got["mrr_all"] == pytest.approx(want_mrr, abs=1e-9)
    for j, k in enumerate(kappas):
        assert got[f"recall_frac@{k}"] == pytest.approx(want_rec[j], abs=1e-9)
        assert got[f"precision_rv@{k}"] == pytest.approx(want_pr[j], abs=1e-9)
    assert got["mrr"] != pytest.approx(want_mrr)  # distractors count in the study's MRR, not in ours


def test_recall_variants_differ_as_defined():
    # one query, 2 positives at ranks 0 and 3, top 2: any-hit 1, fraction 1/2, ISC pairs 1/2
    scores, hits, n_pos = (
        np.array([[0.9, 0.8, 0.7, 0.6]]),
        np.array([[True, False, False, True]]),
        np.array([2]),
    )
    assert M.recall_at_k(hits, n_pos, 2) == 1.0
    assert M.recall_at_k_fraction(hits, n_pos, 2) == 0.5
    assert M.recall_at_rank_pairs(scores, hits, n_pos, 2) == 0.5
    # capped precision divides by min(k, n_pos) = 2; revisitop's by min(k, rank of last positive) = 4
    assert M.precision_at_k_capped(hits, n_pos, 4) == 1.0
    assert M.precision_at_k_revisitop(hits, n_pos, 4) == 0.5


# --- isc: isc/metrics.py -------------------------------------------------------------------------------


def _isc_evaluate(predictions: list[tuple[int, int, float]], gt: set[tuple[int, int]]):
    """ISC 2021 evaluate(), restated: (micro-AP, recall@P90 or None, recall at rank 1, at rank 10)."""
    y_true = np.array([(q, r) in gt for q, r, _ in predictions])
    probas = np.array([s for _, _, s in predictions])
    order = sorted(range(len(probas)), key=lambda i: (probas[i], not y_true[i]))[::-1]
    y_sorted = y_true[order]
    ntp = np.cumsum(y_sorted)
    precisions, recalls = ntp / np.arange(1, len(order) + 1), ntp / len(gt)
    ap = ((recalls - np.concatenate([[0], recalls[:-1]])) * precisions).sum()
    valid = precisions >= 0.9
    rp90 = recalls[valid].max() if valid.any() else None
    ranks = []
    for q, r in sorted(gt):
        mine = [(s, rr == r) for qq, rr, s in predictions if qq == q]
        hit = [s for s, is_r in mine if is_r]
        ranks.append(sum(s >= hit[0] for s, _ in mine) - 1 if hit else 1 << 35)
    ranks = np.array(ranks)
    return ap, rp90, (ranks == 0).mean(), (ranks < 10).mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_isc_metrics_equal_the_official_evaluation(seed):
    rng = np.random.default_rng(seed)
    scores, positives = _full_ranking_case(rng, q=50, n_ref=30)
    scores = np.where(
        [[j in p for j in range(30)] for p in positives], scores + rng.random(scores.shape), scores
    )
    k = P.topk_for("isc", None, scores.shape[1])
    top, hits, n_pos = _as_topk(scores, positives, k)
    order = np.array([_pessimistic_order(row, pos)[:k] for row, pos in zip(scores, positives)])
    preds = [(q, int(r), float(s)) for q in range(len(order)) for r, s in zip(order[q], top[q])]
    gt = {(q, r) for q, p in enumerate(positives) for r in p}
    ap, rp90, r1, r10 = _isc_evaluate(preds, gt)
    got = M.evaluate(top, hits, n_pos, n_boot=0)["overall"]
    assert got["micro_ap"] == pytest.approx(ap, abs=1e-9)
    assert got["isc_recall@1"] == pytest.approx(r1, abs=1e-9)
    assert got["isc_recall@10"] == pytest.approx(r10, abs=1e-9)
    if rp90 is None:
        assert got["recall_at_p90"] is None
    else:
        assert got["recall_at_p90"] == pytest.approx(rp90, abs=1e-9)


def test_isc_recall_with_fewer_columns_than_k():
    # 3 ranked references (a gallery smaller than 10): a positive never retrieved must not count at rank 10
    top, hits, n_pos = np.array([[0.9, 0.5, 0.4]]), np.array([[False, True, False]]), np.array([2])
    got = M.evaluate(top, hits, n_pos, n_boot=0)["overall"]
    assert got["isc_recall@10"] == 0.5 and got["isc_recall@1"] == 0.0


def test_isc_recall_at_p90_is_none_when_unreached():
    top, hits, n_pos = np.array([[0.9, 0.5]]), np.array([[False, True]]), np.array([1])
    assert M.evaluate(top, hits, n_pos, n_boot=0)["overall"]["recall_at_p90"] is None


def test_sscd_score_normalisation_equals_the_appended_dimension():
    """disc_eval.apply_score_norm: queries get -beta * mean(D[:, 0:3]) as an extra dim, references 1."""
    rng = np.random.default_rng(4)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q, r, train = (
        unit(rng.normal(size=(20, 16))),
        unit(rng.normal(size=(30, 16))),
        unit(rng.normal(size=(50, 16))),
    )
    sims = q.astype(np.float64) @ train.T.astype(np.float64)
    adjustment = -np.mean(-np.sort(-sims, axis=1)[:, 0:3], axis=1, keepdims=True)
    want = np.concatenate([q, adjustment], 1) @ np.concatenate([r, np.ones((30, 1))], 1).T
    sn = P.get_protocol("isc").score_norm
    offsets = score_norm_offsets(q, train, beta=sn.beta, first=sn.first, last=sn.last)
    s, i = search(q, r, 30)
    got = np.take_along_axis(want, i, 1)
    np.testing.assert_allclose(s - offsets[:, None], got, atol=1e-6)


# --- dino: eval_copy_detection.py --------------------------------------------------------------------


def _dino_map(ids: np.ndarray, positives: list[set]) -> float:
    """score_ap_from_ranks_1 over the top-20 ids, mean over the queries (all have positives in Copydays)."""
    total = 0.0
    for row, pos in zip(ids, positives):
        ranks = [rank for rank, b in enumerate(row) if b in pos]
        ap = 0.0
        for ntp, rank in enumerate(ranks):
            p0 = 1.0 if rank == 0 else ntp / float(rank)
            ap += (p0 + (ntp + 1) / float(rank + 1)) * (1.0 / len(pos)) / 2.0
        total += ap
    return total / len(ids)


@pytest.mark.parametrize("seed", [0, 1])
def test_dino_map_equals_its_copydays_evaluation(seed):
    rng = np.random.default_rng(seed)
    scores, positives = _full_ranking_case(rng, q=40, n_ref=60)
    keep = [i for i, p in enumerate(positives) if p]  # DINO's Copydays queries all have a match
    scores, positives = scores[keep], [positives[i] for i in keep]
    k = P.topk_for("dino", None, scores.shape[1])
    ids = np.array([_pessimistic_order(row, pos)[:k] for row, pos in zip(scores, positives)])
    got = M.evaluate(*_as_topk(scores, positives, k), n_boot=0)["overall"]["map"]
    assert got == pytest.approx(_dino_map(ids, positives), abs=1e-9)


def test_dino_whitening_equals_utils_pca():
    """Centre by the whitening set's mean, PCA of its UNCENTRED covariance, power 0.5, then L2 norm."""
    rng = np.random.default_rng(5)
    white_set = rng.normal(size=(200, 12)) * np.linspace(3, 0.2, 12) + 1.5
    x = rng.normal(size=(30, 12)) + 1.5
    mean = white_set.mean(0)
    d, v = np.linalg.eigh(white_set.T @ white_set / white_set.shape[0])
    d[d < d.max() * 1e-5] = d.max() * 1e-5
    idx = np.argsort(d)[::-1]
    dvt = np.diag(1.0 / d[idx] ** 0.5) @ v[:, idx].T
    want = (dvt @ (x - mean).T).T
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = fit_whitening_dino(white_set)(x)
    # eigenvector signs are arbitrary: compare what retrieval sees, the inner products
    np.testing.assert_allclose(got @ got.T, want @ want.T, atol=1e-6)


# --- preprocessing against the originals' PIL / torchvision pipelines ---------------------------------


def _photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(f()) for f in (data.astronaut, data.coffee, data.rocket, data.chelsea)]


def _original_pipeline(name: str):
    from torchvision import transforms as T

    imagenet = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return {
        # DCR diff_retrieval.py: ret_transform
        "dcr": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.5], [0.5])]),
        # SSCD DISCData.make_validation_dataset(size=288, preserve_aspect_ratio=True)
        "isc": T.Compose([T.Resize(288), T.ToTensor(), imagenet]),
        # DINO eval_copy_detection.extract_features (interpolation=3: bicubic)
        "dino": T.Compose([T.Resize((320, 320), interpolation=3), T.ToTensor(), imagenet]),
    }[name]


@pytest.mark.parametrize(
    ("protocol", "detector"),
    [
        ("dcr", "sscd_disc_mixup"),
        ("dcr", "dino_vitb16"),
        ("isc", "sscd_disc_mixup"),
        ("dino", "dino_vits16.cls_gem"),
    ],
)
def test_preprocessing_equals_the_original_pipeline(protocol, detector):
    pre = Preprocess(P.protocol_spec(protocol, get_spec(detector)))
    original = _original_pipeline(protocol)
    for img in _photos():
        got = pre(pil_to_tensor(img))  # as the Extractor: decode, resize, then normalise
        want = original(img)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_protocol_spec_changes_the_cache_identity():
    spec = get_spec("sscd_disc_mixup")
    derived = P.protocol_spec("dcr", spec)
    assert derived.to_dict() != spec.to_dict() and derived.name == spec.name
    assert P.protocol_spec("native", spec) is spec
    assert "resize_backend" not in spec.to_dict()  # native specs (and their cache keys) are as before


def test_onnx_model_normalising_inside_keeps_unit_input_under_isc():
    spec = P.protocol_spec("isc", get_spec("sscd_disc_mixup.onnx_int8"))
    assert (spec.mean, spec.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the graph applies ImageNet's
    assert (spec.resize, spec.input_size) == ("short", 288)


def test_split_score_norm_offsets_are_on_the_split_scale():
    """--similarity split --score-norm: offsets are mean split products to the norm set's nearest (0..2)."""
    rng = np.random.default_rng(6)
    q, train = rng.normal(size=(7, 5, 8)), rng.normal(size=(40, 5, 8))
    unit = lambda x: x / np.linalg.norm(x.reshape(len(x), -1), axis=1)[:, None, None]
    split = np.einsum("qcd,tcd->qtc", unit(q), unit(train)).max(axis=2)  # chunk i with chunk i, max
    want = np.sort(split, axis=1)[:, ::-1][:, :3].mean(axis=1)
    got = score_norm_offsets(
        q.astype(np.float32), train.astype(np.float32), split={"cross": False, "chunks": None}
    )
    np.testing.assert_allclose(got, want, atol=1e-5)
    cosine = score_norm_offsets(
        unit(q).reshape(7, -1).astype(np.float32), unit(train).reshape(40, -1).astype(np.float32)
    )
    assert not np.allclose(got, cosine, atol=1e-3)  # the cosine-scale offsets would be another number
