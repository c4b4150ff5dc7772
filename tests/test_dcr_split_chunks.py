"""``--protocol dcr --similarity split`` on a global descriptor cuts it as DCR does (issue 22.6).

DCR's diff_retrieval.py: ``--num_loss_chunks`` defaults to 1 and is replaced by the number of patches only for
token features, so a global descriptor is one chunk there (the split product is then the cosine). The result
records the chunk count that ran.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from copybench.cache import Descriptors
from copybench.evaluate import score_descriptors
from copybench.settings import RunSettings


def test_dcr_split_defaults_to_one_chunk_and_keys_it():
    dcr = RunSettings(protocol="dcr", similarity="split")
    assert dcr.chunks == 1 and dcr.key_settings()["chunks"] == 1
    assert RunSettings(protocol="dcr", similarity="split", chunks=4).chunks == 4  # an explicit count is kept
    native = RunSettings(similarity="split")
    assert native.chunks is None and native.key_settings()["chunks"] is None  # native keys are unchanged
    assert RunSettings(protocol="dcr").chunks is None  # cosine has no chunks


class _Dataset:
    """The few attributes score_descriptors reads: 3 queries, 4 references, query i copies reference i."""

    def __init__(self) -> None:
        self.name, self.fingerprint, self.root, self.meta = "toy", "f" * 16, ".", {"format": "csv"}
        self.reference_ids = ["r0", "r1", "r2", "r3"]
        self.query_ids = ["q0", "q1", "q2"]
        self.positives = {"q0": ["r0"], "q1": ["r1"], "q2": ["r2"]}
        self.queries = pd.DataFrame({"family": ["", "", ""], "tier": ["", "", ""]})

    def counts(self):
        return {"references": 4, "queries": 3, "distractors": 0}


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_dcr_split_on_a_global_descriptor_scores_as_dcr_and_records_the_chunks():
    rng = np.random.default_rng(0)
    r = _unit(rng.standard_normal((4, 8)))
    q = _unit(r[:3] + 0.8 * rng.standard_normal((3, 8)))
    qd, rd = Descriptors([f"q{i}" for i in range(3)], q), Descriptors([f"r{i}" for i in range(4)], r)
    settings = RunSettings(protocol="dcr", similarity="split", n_boot=0)
    result, preds = score_descriptors(_Dataset(), qd, rd, settings, detector_name="x", spec=None, weights={})
    # DCR: one chunk, so the score is the plain inner product of the L2-normalised descriptors
    want = q @ r.T
    got = np.take_along_axis(want, preds.idx, axis=1)
    assert np.allclose(preds.scores, got, atol=1e-6)
    assert np.array_equal(preds.idx, np.argsort(-want, axis=1, kind="stable"))
    assert result.key["chunks"] == 1 and result.settings["chunks"] == 1


@pytest.mark.parametrize("chunks", [2, 4])
def test_an_explicit_chunk_count_is_what_runs_and_is_recorded(chunks):
    rng = np.random.default_rng(1)
    r = _unit(rng.standard_normal((4, 8)))
    q = _unit(rng.standard_normal((3, 8)))
    qd, rd = Descriptors([f"q{i}" for i in range(3)], q), Descriptors([f"r{i}" for i in range(4)], r)
    settings = RunSettings(protocol="dcr", similarity="split", chunks=chunks, n_boot=0)
    result, preds = score_descriptors(_Dataset(), qd, rd, settings, detector_name="x", spec=None, weights={})
    want = np.max(np.einsum("ncp,mcp->nmc", q.reshape(3, chunks, -1), r.reshape(4, chunks, -1)), axis=2)
    assert np.allclose(preds.scores, np.take_along_axis(want, preds.idx, axis=1), atol=1e-6)
    assert result.key["chunks"] == chunks and result.settings["chunks"] == chunks
