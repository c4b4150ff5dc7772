"""End to end through the CLI on recipe-built data, real offline weights, whitening and score normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from copybench.cli import main
from copybench.detectors import weights_status
from copybench.results import read_result


def _cli(*args) -> int:
    return main(["--quiet", *map(str, args)])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A tiny recipe-built dataset (embedded photos), shared by the tests of this module."""
    out = tmp_path_factory.mktemp("e2e") / "mixed-xs"
    assert _cli("data", "build", "mixed-xs", "--out", out, "--n-queries", "16", "--seed", "3") == 0
    return out


def test_data_build_run_table_check(built, tmp_path):
    meta = json.loads((built / "dataset.json").read_text())
    assert meta["recipe"] == "mixed-xs" and meta["seed"] == 3 and (built / "contact_sheet.png").is_file()
    res = tmp_path / "res"
    assert (
        _cli(
            "run",
            "--dataset",
            built,
            "--detectors",
            "pixel_gray_16,phash_64",
            "--results",
            res,
            "--no-cache",
            "--n-boot",
            "50",
        )
        == 0
    )
    assert _cli("table", res, "--format", "md", "--out", tmp_path / "board.md") == 0
    board = (tmp_path / "board.md").read_text()
    assert "pixel_gray_16" in board and "phash_64" in board
    assert _cli("check", "--baseline", res, "--results", res) == 0


def _micro_ap_from_isc_csv(pred_csv: Path, gt_csv: Path) -> float:
    """ISC micro-AP straight from the exported CSVs, written independently of copybench.metrics."""
    preds = pd.read_csv(pred_csv, dtype=str, keep_default_na=False)
    gt = pd.read_csv(gt_csv, dtype=str, keep_default_na=False)
    truth = {(q, r) for q, r in zip(gt["query_id"], gt["reference_id"]) if r}
    rows = sorted(
        (
            (float(s), (q, r) in truth)
            for q, r, s in zip(preds["query_id"], preds["reference_id"], preds["score"])
        ),
        key=lambda t: (-t[0], t[1]),
    )
    tp, ap, prev_recall = 0, 0.0, 0.0
    for i, (_, hit) in enumerate(rows, start=1):
        tp += hit
        recall = tp / len(truth)
        ap += (recall - prev_recall) * tp / i
        prev_recall = recall
    return ap


def test_isc_export_round_trips(built, tmp_path):
    res = tmp_path / "res"
    assert (
        _cli(
            "run",
            "--dataset",
            built,
            "--detectors",
            "pixel_rgb_16",
            "--results",
            res,
            "--no-cache",
            "--n-boot",
            "10",
        )
        == 0
    )
    result_file = next(res.rglob("pixel_rgb_16.json"))
    assert _cli("export", result_file, "--out", tmp_path / "isc") == 0
    micro = _micro_ap_from_isc_csv(
        tmp_path / "isc" / "predictions.csv", tmp_path / "isc" / "ground_truth.csv"
    )
    assert micro == pytest.approx(read_result(result_file).metrics["micro_ap"], abs=2e-6)


def test_whitening_and_score_norm_with_a_separate_set(built, tmp_path):
    norm = tmp_path / "norm"
    norm.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(20):  # a separate "training" set: smooth random colour fields
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64)).save(
            norm / f"{i}.png"
        )
    res = tmp_path / "res"
    assert (
        _cli(
            "run",
            "--dataset",
            built,
            "--detectors",
            "pixel_gray_8",
            "--results",
            res,
            "--no-cache",
            "--n-boot",
            "10",
            "--norm-set",
            norm,
            "--whitening",
            "--score-norm",
        )
        == 0
    )
    result = read_result(next(res.rglob("*__whiten__scorenorm__norm*.json")))
    assert result.key["whitening"] and result.key["score_norm"]
    assert 0.0 <= result.metrics["micro_ap"] <= 1.0
    # score normalisation shifts each query's scores by a constant: rankings, hence mAP, are unchanged
    assert (
        _cli(
            "run",
            "--dataset",
            built,
            "--detectors",
            "pixel_gray_8",
            "--results",
            res,
            "--no-cache",
            "--n-boot",
            "10",
            "--norm-set",
            norm,
            "--whitening",
        )
        == 0
    )
    plain = read_result(next(res.rglob("*__whiten__norm*.json")))
    assert plain.metrics["map"] == pytest.approx(result.metrics["map"])
    assert (
        _cli("run", "--dataset", built, "--detectors", "pixel_gray_8", "--results", res, "--whitening") == 2
    )


@pytest.mark.weights
@pytest.mark.skipif(
    weights_status("sscd_distilled.onnx") != "real" or weights_status("efficientnet_lite0") != "real",
    reason="offline weights packages not installed (run .ci/setup.sh)",
)
def test_real_detectors_rank_above_pixel_baselines(tmp_path):
    """The foundation's promise, on the embedded default data: learned detectors beat raw pixels."""
    data, res = tmp_path / "default", tmp_path / "res"
    assert _cli("data", "build", "default-s", "--out", data, "--n-queries", "80") == 0
    assert (
        _cli(
            "run",
            "--dataset",
            data,
            "--detectors",
            "sscd_distilled.onnx,efficientnet_lite0,pixel_gray_16,pixel_rgb_32",
            "--results",
            res,
            "--no-cache",
            "--n-boot",
            "10",
        )
        == 0
    )
    score = {read_result(p).detector_name: read_result(p).metrics["micro_ap"] for p in res.rglob("*.json")}
    best_pixel = max(score["pixel_gray_16"], score["pixel_rgb_32"])
    assert score["sscd_distilled.onnx"] > best_pixel and score["efficientnet_lite0"] > best_pixel, score
