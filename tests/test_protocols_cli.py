"""Protocols through the CLI and the library: refusals (exit 2), end-to-end runs, keys, tables, full precision."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from copybench import protocols as P
from copybench.cli import main
from copybench.detectors import weights_status
from copybench.results import read_result
from copybench.run import RunSettings

needs_lite0 = pytest.mark.skipif(
    weights_status("efficientnet_lite0") != "real", reason="efficientnet_lite0 weights package not installed"
)


def _cli(*args) -> int:
    return main(["--quiet", *map(str, args)])


def _run(dataset: Path, res: Path, *extra) -> int:
    return _cli("run", "--dataset", dataset, "--results", res, "--no-cache", "--n-boot", "10", *extra)


# --- refused combinations: one test each ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"protocol": "dcr", "similarity": "split_cross"}, "never uses it"),
        ({"protocol": "isc", "similarity": "split"}, "defines similarity cosine"),
        ({"protocol": "dino", "similarity": "split"}, "defines similarity cosine"),
        ({"protocol": "dcr", "whitening": True, "norm_set": "n"}, "no whitening"),
        ({"protocol": "dcr", "score_norm": True, "norm_set": "n"}, "no score normalisation"),
        ({"protocol": "dino", "score_norm": True, "norm_set": "n"}, "no score normalisation"),
        ({"protocol": "isc", "topk": 100}, "fixes the prediction depth"),
        ({"protocol": "dcr", "topk": 5}, "full ranking"),
        ({"protocol": "dino", "multiscale": (1.0, 0.707)}, "one scale"),
        ({"protocol": "isc", "dtype": "bf16"}, "fp32"),
        ({"similarity": "split", "whitening": True, "norm_set": "n"}, "global descriptors only"),
        ({"protocol": "nope"}, "unknown protocol"),
    ],
)
def test_refused_settings(settings, message):
    with pytest.raises(P.ProtocolError, match=message):
        RunSettings(**settings)


@pytest.mark.parametrize(
    ("protocol", "detector", "message"),
    [
        (
            "dcr",
            "sscd_disc_mixup.onnx_int8",
            "normalises inside",
        ),  # uint8 ONNX cannot take mean=std=0.5 input
        ("isc", "pixel_gray_16", "pixel baseline"),
        ("dcr", "phash_64", "pixel baseline"),
        ("dino", "dino_vitb16", "not DINO's copy-detection descriptor"),
        ("dino", "sscd_disc_mixup", "not DINO's copy-detection descriptor"),
    ],
)
def test_refused_detectors_exit_2(tiny_dataset, tmp_path, capsys, protocol, detector, message):
    assert _run(tiny_dataset, tmp_path / "r", "--detectors", detector, "--protocol", protocol) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "r").exists()  # refused before any work


def test_fixed_size_model_is_refused_by_the_probe():
    from copybench.detectors import create_detector

    det = create_detector("dino_vits16.cls_gem", allow_random=True)  # a ViT built for 320 x 320
    with pytest.raises(P.ProtocolError, match="cannot take the protocol's 224x224 input"):
        P.apply_protocol(det, "dcr")


def test_isc_whitening_needs_more_norm_images_than_dims():
    from copybench.retrieval import fit_whitening

    with pytest.raises(ValueError, match="PCAW8"):
        fit_whitening(np.random.default_rng(0).normal(size=(8, 8)), full_rank=True)


def test_scan_refuses_a_threshold_on_another_scale(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    base = ["scan", "--generated", folder, "--train", folder, "--out", tmp_path / "o", "--no-cache"]
    # native cosine: the study's 0.5 was set under its own preprocessing, not this one
    assert _cli(*base, "--detector", "pixel_gray_16") == 2
    assert "--protocol dcr" in capsys.readouterr().err.replace("\n", " ")
    with pytest.raises(P.ProtocolError, match="split-product scores"):
        from copybench.scan.pipeline import _threshold_rule

        _threshold_rule("dcr", "split", None, None)
    assert _threshold_rule("dcr", "cosine", None, None) == {
        "value": 0.5,
        "source": "protocol dcr",
        "rule": ">",
    }
    assert _threshold_rule("native", "split", 0.05, None)["rule"] == ">="


def test_dcr_threshold_is_strict():
    top1 = np.array([0.5, 0.50001, 0.2])
    assert P.flagged(top1, 0.5, ">").tolist() == [False, True, False]
    assert P.flagged(top1, 0.5, ">=").tolist() == [True, True, False]


# --- keys, names, tables ---------------------------------------------------------------------------------


def test_protocol_in_key_and_file_name_and_old_results_read_as_native(tmp_path):
    from copybench.results import result_path

    dcr = RunSettings(protocol="dcr").key_settings()
    assert dcr["protocol"] == "dcr" and "topk" not in dcr
    assert result_path("r", "det", "ds", "f" * 16, dcr).name == "det__dcr.json"
    assert result_path("r", "det", "ds", "f" * 16, RunSettings().key_settings()).name == "det.json"
    old = {
        "schema_version": 1,
        "kind": "accuracy",
        "key": {"detector": "d", "similarity": "cosine"},
        "detector": {},
    }
    (tmp_path / "old.json").write_text(json.dumps(old))  # written before protocols existed
    result = read_result(tmp_path / "old.json")
    assert result.key["protocol"] == "native" and result.settings["protocol"] == "native"


def test_depths():
    assert RunSettings(protocol="dcr").depth(37) == 37  # the study ranks every reference
    assert RunSettings(protocol="isc").depth(37) == 10
    assert RunSettings(protocol="dino").depth(37) == 20
    assert RunSettings().depth(1000) == 100 and RunSettings(topk=7).depth(1000) == 7


def test_list_protocols(capsys):
    assert _cli("list", "protocols") == 0
    out = capsys.readouterr().out
    for name in P.PROTOCOLS:
        assert name in out


# --- full precision ------------------------------------------------------------------------------------


def test_predictions_keep_full_precision(tmp_path):
    from copybench.run import write_predictions

    data = type("Data", (), {"reference_ids": ["a", "b", "c"]})()

    scores = np.array([[0.12345671, 0.12345674, 0.1234567]], dtype=np.float32)  # equal at 6 digits
    path = write_predictions(tmp_path / "p.csv.gz", data, np.array(["q"]), np.array([[0, 1, 2]]), scores)
    with gzip.open(path, "rt") as f:
        back = pd.read_csv(f)["score"].to_numpy()
    assert (back.astype(np.float32) == scores.ravel()).all() and len(set(back)) == 3


# --- end to end ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("proto") / "crop-xs"
    assert _cli("data", "build", "crop-xs", "--out", out, "--n-queries", "10", "--seed", "1") == 0
    return out


@pytest.fixture(scope="module")
def disc21_imported(tmp_path_factory) -> Path:
    """A DISC21-layout folder from real photos (several aspect ratios), imported with `data import disc21`."""
    from skimage import data

    src = tmp_path_factory.mktemp("disc") / "disc21"
    (src / "references").mkdir(parents=True)
    (src / "queries").mkdir()
    photos = [data.astronaut(), data.coffee(), data.rocket(), data.chelsea(), data.hubble_deep_field()]
    rows = ["query_id,reference_id"]
    for i, arr in enumerate(photos):
        img = Image.fromarray(arr)
        img.save(src / "references" / f"R{i:06d}.jpg")
        w, h = img.size
        img.crop((w // 8, h // 8, w - w // 10, h - h // 6)).save(
            src / "queries" / f"Q{i:05d}.jpg", quality=70
        )
        rows.append(f"Q{i:05d},R{i:06d}")
    Image.fromarray(data.camera()).convert("RGB").save(src / "queries" / "Q00009.jpg")  # no match
    rows.append("Q00009,")
    (src / "dev_ground_truth.csv").write_text("\n".join(rows) + "\n")
    out = src.parent / "imported"
    assert _cli("data", "import", "disc21", src, "--out", out) == 0
    return out


def _check_result(res: Path, name: str, protocol: str, n_refs: int) -> dict:
    result = read_result(next(res.rglob(f"{name}__{protocol}.json")))
    assert result.key["protocol"] == protocol and result.settings["protocol"] == protocol
    assert result.settings["topk"] == min(P.topk_for(protocol, None, n_refs), n_refs)
    spec = result.detector["spec"]
    pre = P.get_protocol(protocol).preprocessing
    assert (spec["resize"], spec["input_size"], spec["resize_backend"]) == (pre.resize, pre.size, "pil")
    for key in P.get_protocol(protocol).metrics:
        assert key in result.metrics, key
    return result


@pytest.mark.slow  # about 50 s alone on a 2-core CPU
@needs_lite0
@pytest.mark.parametrize("protocol", ["dcr", "isc"])
def test_run_protocol_end_to_end(recipe_built, disc21_imported, tmp_path, protocol):
    for dataset in (recipe_built, disc21_imported):
        res = tmp_path / dataset.name
        assert _run(dataset, res, "--detectors", "efficientnet_lite0", "--protocol", protocol) == 0
        n_refs = json.loads((dataset / "dataset.json").read_text())["counts"]["references"]
        result = _check_result(res, "efficientnet_lite0", protocol, n_refs)
        assert 0.0 < result.metrics["map"] <= 1.0
        assert _cli("table", res, "--format", "md", "--out", tmp_path / "t.md") == 0
        assert f"| {protocol} |" in (tmp_path / "t.md").read_text()


@pytest.mark.slow
@needs_lite0
def test_tables_never_rank_protocols_together(recipe_built, tmp_path):
    res = tmp_path / "res"
    for protocol in ("native", "dcr"):
        assert _run(recipe_built, res, "--detectors", "efficientnet_lite0", "--protocol", protocol) == 0
    assert _cli("table", res, "--format", "md", "--out", tmp_path / "t.md") == 0
    assert "not comparable" in (tmp_path / "t.md").read_text()


@pytest.mark.slow  # a ViT-S at 320 x 320 on CPU
def test_dino_protocol_whitens_raw_features(tiny_dataset, tmp_path):
    norm = tmp_path / "norm"
    norm.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64)).save(
            norm / f"{i}.png"
        )
    res = tmp_path / "res"
    args = ("--detectors", "dino_vits16.cls_gem", "--allow-random", "--protocol", "dino", "--norm-set", norm)
    assert _run(tiny_dataset, res, *args, "--whitening") == 0
    result = read_result(next(res.rglob("dino_vits16.cls_gem__whiten__dino.json")))
    assert result.is_random and result.settings["topk"] == 8
