"""``--protocol sscd-copydays``: SSCD's Copydays script (issue 22.2).

SSCD's ``copydays_eval.py`` queries every Copydays image, the originals included, against originals + distractors
with 100 predictions per query; ``strong_mAP`` is the mean revisitop AP over the strong queries and
``overall_uAP`` its "macro AP" (all predictions pooled, revisitop trapezoid, one positive per query). Checked here
against hand-computed cases and an independent loop-by-loop computation of those definitions; the comparison with
SSCD's own code (to 4.4e-16) is in docs/PROTOCOLS.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from copybench import protocols as P
from copybench.cache import Descriptors
from copybench.copydays import overall_uap, pooled_ap
from copybench.datasets.importers import import_dataset
from copybench.evaluate import score_descriptors
from copybench.settings import RunSettings


def test_pooled_ap_hand_computed():
    # pooled: 0.9 hit, 0.8 miss, 0.7 hit, 0.5 miss -> positives at ranks 0 and 2
    # AP = ((1 + 1) / 2 + (1/2 + 2/3) / 2) / 2 queries = 19/24
    scores, hits = np.array([[0.9, 0.5], [0.8, 0.7]]), np.array([[True, False], [False, True]])
    assert pooled_ap(scores, hits, 2) == pytest.approx(19 / 24, abs=1e-15)
    # a tie is broken pessimistically: the miss first, so the hit is at rank 1: (0/1 + 1/2) / 2 / 2
    assert pooled_ap(np.array([[0.5], [0.5]]), np.array([[True], [False]]), 2) == pytest.approx(0.125)
    # padding (-inf) is no prediction; a query without predictions still counts as a positive
    assert pooled_ap(np.array([[0.9], [-np.inf]]), np.array([[True], [False]]), 2) == pytest.approx(0.5)


def test_overall_uap_pools_the_originals_with_the_queries():
    q_scores, q_hits = np.array([[0.8, 0.7]]), np.array([[False, True]])
    o_scores, o_hits = np.array([[1.0, 0.6]]), np.array([[True, False]])
    # pooled: 1.0 hit (original), 0.8 miss, 0.7 hit, 0.6 miss over 2 queries: ((1+1)/2 + (1/2+2/3)/2) / 2
    assert overall_uap(q_scores, q_hits, o_scores, o_hits) == pytest.approx(19 / 24, abs=1e-15)


N_ORIG, TIERS, D = 5, ("3", "50"), 8


@pytest.fixture(scope="module")
def copydays(tmp_path_factory):
    """A Copydays-layout set (tiny files) and a descriptor per file, copies near their original."""
    root = tmp_path_factory.mktemp("copydays")
    rng = np.random.default_rng(3)
    src, dis = root / "copydays", root / "distractors"
    names = [f"{2000 + i}00.jpg" for i in range(N_ORIG)]
    blocks = {"original": names, "strong": [f"{2000 + i}{j:02d}.jpg" for i in range(N_ORIG) for j in (1, 2)]}
    blocks.update({f"jpegqual/{t}": names for t in TIERS} | {f"crops/{t}": names for t in TIERS})
    orig = rng.standard_normal((N_ORIG, D))
    emb, pixels = {}, np.random.default_rng(99)  # distinct files: an import refuses byte-identical references

    def tiny():
        return Image.fromarray(pixels.integers(0, 256, (8, 8, 3), dtype=np.uint8))

    for block, files in blocks.items():
        (src / block).mkdir(parents=True)
        for f in files:
            tiny().save(src / block / f)
            noise = 0.0 if block == "original" else rng.uniform(0.2, 1.5)
            emb[(src / block / f).resolve()] = orig[int(f[:4]) - 2000] + noise * rng.standard_normal(D)
    dis.mkdir()
    for j in range(120):  # more than 100 references: the depth is the protocol's 100
        tiny().save(dis / f"d{j:03d}.jpg")
        emb[(dis / f"d{j:03d}.jpg").resolve()] = rng.standard_normal(D)
    ds = import_dataset("copydays", src, root / "ds", progress=False, distractors=[dis])
    emb = {k: (v / np.linalg.norm(v)).astype(np.float32) for k, v in emb.items()}
    return ds, emb


def _descriptors(ds, emb, paths) -> Descriptors:
    from pathlib import Path

    root = Path(ds.meta["images_root"])
    full = [(Path(p) if Path(p).is_absolute() else root / p).resolve() for p in paths]
    return Descriptors([str(p) for p in full], np.stack([emb[p] for p in full]))


def _reference_definitions(q: np.ndarray, r: np.ndarray, positives: list[set[int]], k: int):
    """SSCD's definitions written out loop by loop: per-query ranks, revisitop AP, the pooled macro AP."""
    sims = q @ r.T
    ranked = [sorted(range(r.shape[0]), key=lambda j, i=i: -sims[i, j])[:k] for i in range(q.shape[0])]

    def ap(ranks, n):
        return sum(((t / rk if rk else 1.0) + (t + 1) / (rk + 1)) / 2 / n for t, rk in enumerate(ranks))

    per_query = [
        ap([n for n, j in enumerate(row) if j in pos], len(pos)) for row, pos in zip(ranked, positives)
    ]
    pooled = sorted(
        ((sims[i, j], j in positives[i]) for i, row in enumerate(ranked) for j in row), key=lambda t: -t[0]
    )
    macro = ap([n for n, (_, hit) in enumerate(pooled) if hit], q.shape[0])
    return per_query, macro


def test_sscd_copydays_metrics_equal_the_definitions(copydays):
    ds, emb = copydays
    qd, rd = _descriptors(ds, emb, ds.queries["path"]), _descriptors(ds, emb, ds.references["path"])
    settings = RunSettings(protocol="sscd-copydays", n_boot=0)
    result, _ = score_descriptors(ds, qd, rd, settings, detector_name="x", spec=None, weights={})
    m = result.metrics
    ref_row = {r: i for i, r in enumerate(ds.reference_ids)}
    originals = sorted(ref_row[f"{2000 + i}00"] for i in range(N_ORIG))
    queries = np.concatenate([np.asarray(rd.vectors)[originals], np.asarray(qd.vectors)])
    positives = [{o} for o in originals] + [{ref_row[r] for r in ds.positives[q]} for q in ds.query_ids]
    per_query, macro = _reference_definitions(queries, np.asarray(rd.vectors), positives, 100)
    strong = [a for a, f in zip(per_query[N_ORIG:], ds.queries["family"]) if f == "strong"]
    assert m["strong_map"] == pytest.approx(np.mean(strong), abs=1e-12)
    assert m["overall_uap"] == pytest.approx(macro, abs=1e-12)
    assert result.settings["original_queries"] == N_ORIG
    assert result.settings["topk"] == 100
    # the ISC micro-AP over the same rankings is another number: the protocols are not interchangeable
    assert abs(m["micro_ap"] - m["overall_uap"]) > 1e-3


def test_sscd_copydays_refuses_a_dataset_that_is_not_copydays(tmp_path, copydays):
    ds, emb = copydays
    ds.meta["format"] = "folder"  # the module-scoped fixture is rebuilt per session; restore below
    try:
        qd, rd = _descriptors(ds, emb, ds.queries["path"]), _descriptors(ds, emb, ds.references["path"])
        with pytest.raises(P.ProtocolError, match="not a Copydays import"):
            score_descriptors(
                ds,
                qd,
                rd,
                RunSettings(protocol="sscd-copydays", n_boot=0),
                detector_name="x",
                spec=None,
                weights={},
            )
    finally:
        ds.meta["format"] = "copydays"


def test_sscd_copydays_refuses_a_query_subset():
    with pytest.raises(P.ProtocolError, match="drop --subset"):
        RunSettings(protocol="sscd-copydays", subset="strong")


def test_sscd_copydays_is_a_listed_protocol_with_the_isc_preprocessing():
    p = P.get_protocol("sscd-copydays")
    assert p.preprocessing == P.get_protocol("isc").preprocessing and p.topk == 100
    assert p.metrics[:2] == ("strong_map", "overall_uap") and p.score_norm is None
    assert any(row["name"] == "sscd-copydays" for row in P.describe_protocols())


def test_the_figures_are_recomputed_from_the_stored_predictions(copydays, tmp_path):
    """The originals' rankings are stored (ids original:<reference>), so nothing computed is lost and both
    figures can be checked from the predictions file and the dataset alone."""
    import pandas as pd

    from copybench.copydays import ORIGINALS_PREFIX, metrics_from_predictions
    from copybench.run import write_predictions

    ds, emb = copydays
    qd, rd = _descriptors(ds, emb, ds.queries["path"]), _descriptors(ds, emb, ds.references["path"])
    settings = RunSettings(protocol="sscd-copydays", n_boot=0)
    result, preds = score_descriptors(ds, qd, rd, settings, detector_name="x", spec=None, weights={})
    assert result.settings["original_queries"] == N_ORIG
    assert sum(str(q).startswith(ORIGINALS_PREFIX) for q in preds.query_ids) == N_ORIG
    path = write_predictions(tmp_path / "p.csv.gz", ds, preds.query_ids, preds.idx, preds.scores)
    again = metrics_from_predictions(pd.read_csv(path, dtype={"query_id": str, "reference_id": str}), ds)
    assert again["strong_map"] == pytest.approx(result.metrics["strong_map"], abs=1e-12)
    assert again["overall_uap"] == pytest.approx(result.metrics["overall_uap"], abs=1e-12)


def test_a_saved_sscd_copydays_result_verifies_and_plots(copydays, tmp_path):
    """Its predictions file holds the originals' own rankings (query ids ``original:<ref>``) besides the
    dataset's queries: verify recomputes every metric, SSCD's two figures included, and the PR curve reads it."""
    from copybench.report.plots import predictions_arrays
    from copybench.results import read_result
    from copybench.run import save_result
    from copybench.verify import verify_result

    ds, emb = copydays
    qd, rd = _descriptors(ds, emb, ds.queries["path"]), _descriptors(ds, emb, ds.references["path"])
    result, preds = score_descriptors(
        ds, qd, rd, RunSettings(protocol="sscd-copydays", n_boot=0), detector_name="x", spec=None, weights={}
    )
    saved = read_result(save_result(tmp_path / "x.json", ds, result, preds).source or tmp_path / "x.json")
    check = verify_result(saved, full=False, datasets={ds.fingerprint: ds})
    assert check.unverified is None and check.disagreements == []
    edited = saved.replace(metrics={**saved.metrics, "strong_map": saved.metrics["strong_map"] - 0.1})
    assert any("strong_map" in d for d in verify_result(edited, datasets={ds.fingerprint: ds}).disagreements)
    scores, _, _ = predictions_arrays(saved)
    assert len(scores) == len(ds.query_ids)
