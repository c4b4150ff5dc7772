"""Throughput benchmark: valid result files, honest weights status, interleaved timing, CLI end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from copybench.cli import main
from copybench.report.render import render_table
from copybench.report.table import throughput_frame
from copybench.results import read_result
from copybench.throughput import (
    ThroughputSettings,
    Timing,
    interleaved,
    throughput,
    write_synthetic_jpegs,
)
from copybench.throughput.timing import paired_ratio

TINY = {
    "batch_sizes": (4,),
    "n_images": 8,
    "n_references": 500,
    "repeats": 1,
    "min_time": 0.0,
    "num_workers": 1,
}
RATES = (
    "model_ips",
    "e2e_ips",
    "retrieval_qps",
    "reference_e2e_ips",
    "reference_retrieval_qps",
    "e2e_over_model",
    "e2e_speedup_vs_reference",
    "retrieval_speedup_vs_reference",
)


def _positive_finite(m: dict, keys=RATES) -> None:
    for key in keys:
        assert isinstance(m[key], float) and math.isfinite(m[key]) and m[key] > 0, (key, m[key])


def test_timing_rate_is_median_and_iqr():
    rate, iqr = Timing((1.0, 2.0, 4.0), 8).rate()
    assert rate == pytest.approx(4.0)
    assert iqr == pytest.approx([8 / 3.0, 8 / 1.5])


def test_interleaved_passes_alternate_and_ratios_pair_rounds():
    calls = []
    passes = {"a": (lambda: calls.append("a"), 10), "b": (lambda: calls.append("b"), 5)}
    t = interleaved(passes, warmup=1, rounds=3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed rounds, ABAB...
    assert len(t["a"].seconds) == len(t["b"].seconds) == 3
    # ratios are taken within each round: a slow round slows both passes and cancels
    a, b = Timing((1.0, 10.0, 2.0), 10), Timing((2.0, 20.0, 2.0), 10)
    r = paired_ratio(a, b)
    assert r["rounds"] == pytest.approx([2.0, 2.0, 1.0])
    assert r["median"] == pytest.approx(2.0) and r["range"] == pytest.approx([1.0, 2.0])


def test_synthetic_jpegs_are_seeded(tmp_path):
    a = write_synthetic_jpegs(tmp_path / "a", 3, seed=1)
    b = write_synthetic_jpegs(tmp_path / "b", 3, seed=1)
    assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]
    assert Path(a[0]).read_bytes() != Path(a[1]).read_bytes()
    from PIL import Image

    assert Image.open(a[0]).size == (512, 384)


def test_throughput_writes_valid_results_and_marks_random(tmp_path, monkeypatch):
    # no weights found -> random: what a user without the weights package gets, and it must say so everywhere
    monkeypatch.setattr("copybench.detectors.load.find_weights", lambda spec, weights_file=None: None)
    settings = ThroughputSettings(**TINY, reference=True)
    results = throughput(["pixel_gray_16", "efficientnet_lite0"], settings=settings, results=tmp_path)
    assert len(results) == 2
    for r in results:
        back = read_result(r.source)
        assert back.kind == "throughput" and back.schema_version == 1 and back == r
        assert back.environment["device_name"] and back.settings["batch_size"] == 4
        m = back.measurements[0]
        _positive_finite(m)
        assert m["e2e_decode"] == "workers" and m["reference_agreement"] > 0.9
        assert m["peak_host_mb"]["process"] > 0
        assert m["rounds"] == 1 and len(m["e2e_over_model_rounds"]) == 1
        # result files round to 6 decimals, so a small ratio (0.006 under a busy machine) is exact to 5e-7 only
        assert m["e2e_over_model"] == pytest.approx(m["e2e_ips"] / m["model_ips"], rel=1e-5, abs=5e-7)
    status = {r.detector_name: r.weights_status for r in results}
    assert status == {"pixel_gray_16": "none", "efficientnet_lite0": "random"}
    frame = throughput_frame([read_result(r.source) for r in results])
    assert "efficientnet_lite0 (random weights)" in set(frame["detector"])
    assert "efficientnet_lite0 (random weights)" in render_table(tmp_path, fmt="md")


def test_cli_throughput_end_to_end(tmp_path, capsys):
    code = main(
        [
            "throughput",
            "--detectors",
            "pixel_gray_16",
            "--n-images",
            "6",
            "--batch-size",
            "3",
            "6",
            "--n-references",
            "300",
            "--repeats",
            "1",
            "--min-time",
            "0",
            "--workers",
            "1",
            "--decode",
            "device",
            "--reference",
            "--results",
            str(tmp_path),
        ]
    )
    assert code == 0
    files = sorted(tmp_path.rglob("*.json"))
    assert [f.name for f in files] == ["pixel_gray_16__fp32__b3.json", "pixel_gray_16__fp32__b6.json"]
    m = read_result(files[0]).measurements[0]
    _positive_finite(m)
    assert m["e2e_decode"] == "device" and read_result(files[0]).settings["decode"] == "device"
    assert "same machine and device" in capsys.readouterr().out
    assert main(["table", str(tmp_path)]) == 0


@pytest.mark.parametrize("decode", ["device", "workers"])
def test_cli_throughput_stages_end_to_end(tmp_path, capsys, decode):
    from PIL import Image

    from copybench.throughput.stages import STAGES

    images = tmp_path / "images"
    write_synthetic_jpegs(images, 5, size=(96, 64))
    Image.open(images / "synthetic_000000.jpg").save(images / "lossless.png")  # not for the device decoder
    args = ["throughput", "--detectors", "pixel_gray_16", "--images", str(images), "--batch-size", "4"]
    args += ["--n-references", "300", "--repeats", "2", "--min-time", "0", "--workers", "1", "--stages"]
    assert main([*args, "--decode", decode, "--results", str(tmp_path / "r")]) == 0
    (path,) = (tmp_path / "r").rglob("*.json")
    result = read_result(path)
    m, settings = result.measurements[0], result.settings
    assert settings["stages"] is True and m["e2e_decode"] == decode
    # the CPU workers resize what they decode: no resize stage of their own
    want = [s for s in STAGES if not (decode == "workers" and s == "resize")]
    assert sorted(m["stages"]) == sorted(want)  # result files sort their keys
    for name, stage in m["stages"].items():
        assert math.isfinite(stage["ips"]) and stage["ips"] > 0, name
        assert stage["ips_iqr"][0] <= stage["ips"] <= stage["ips_iqr"][1], name
    items = {name: stage["items"] for name, stage in m["stages"].items()}
    assert items["read"] == items["route"] == items["feed"] == 6
    assert items["decode"] == (5 if decode == "device" else 6)  # the PNG is Pillow's on the device path
    assert items["model"] == items["copy_back"] == 8  # two batches of 4
    out = capsys.readouterr().out
    assert "--stages" in out and "slowest stage" in out and "copy back" in out


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="decode"):
        ThroughputSettings(decode="gpu")
    with pytest.raises(ValueError, match="nvimgcodec"):
        throughput(["pixel_gray_16"], settings=ThroughputSettings(decode="nvimgcodec", **TINY))
    with pytest.raises(ValueError, match="batch"):
        ThroughputSettings(batch_sizes=(0,))
    with pytest.raises(ValueError, match="--decode-ahead"):
        ThroughputSettings(decode_ahead=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            throughput(["pixel_gray_16"], settings=ThroughputSettings(device="cuda", **TINY))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_throughput_on_cuda(tmp_path):
    settings = ThroughputSettings(
        device="cuda",
        dtype="bf16",
        batch_sizes=(32,),
        n_images=96,
        n_references=20_000,
        repeats=2,
        min_time=0.2,
        reference=True,
        stages=True,
    )
    (r,) = throughput(["efficientnet_lite0"], settings=settings, results=tmp_path, allow_random=True)
    m = read_result(r.source).measurements[0]
    _positive_finite(m)
    assert m["e2e_decode"] == "device"
    assert all(m["stages"][s]["ips"] > 0 for s in ("read", "route", "decode", "resize", "model", "copy_back"))
    assert all(v > 0 for v in m["peak_device_mb"].values())


def test_cli_refuses_a_dtype_an_onnx_model_cannot_run_before_timing(tmp_path, capsys):
    from copybench.detectors import WeightsMissingError, create_detector

    try:
        create_detector("sscd_distilled.onnx")
    except WeightsMissingError as exc:
        pytest.skip(f"ONNX weights not installed offline: {exc}")
    for dtype in ("fp16", "bf16"):
        args = ["throughput", "--detectors", "pixel_gray_16,sscd_distilled.onnx", "--dtype", dtype]
        code = main([*args, "--n-images", "2", "--batch-size", "2", "--results", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and f"--dtype {dtype} does not apply to sscd_distilled.onnx" in err
        assert not list(tmp_path.rglob("*.json"))  # refused before the pixel detector was timed or written


def _table_rows(out: str) -> dict[str, list[str]]:
    """Rich table rows of the printed output: first cell -> cells."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.lstrip().startswith("│") and len(cells) > 3:
            rows[cells[0]] = cells
    return rows


def test_cli_table_shows_what_the_result_files_hold(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("copybench.detectors.load.find_weights", lambda spec, weights_file=None: None)
    args = ["throughput", "--detectors", "pixel_gray_16,efficientnet_lite0", "--n-images", "4"]
    args += ["--batch-size", "2", "--n-references", "200", "--repeats", "2", "--min-time", "0"]
    assert main([*args, "--workers", "0", "--reference", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    header = ["detector", "weights", "dtype", "batch", "model img/s", "e2e img/s", "decode", "e2e/model"]
    assert [c.strip() for c in out.split("┃")[1:9]] == header
    rows = _table_rows(out)
    assert set(rows) == {"pixel_gray_16", "efficientnet_lite0 (random weights)"}
    for f in tmp_path.rglob("*.json"):
        r = read_result(f)
        m, name = r.measurements[0], r.detector_name + (" (random weights)" if r.is_random else "")
        cells = rows[name]
        assert cells[1:4] == [r.weights_status, "fp32", "2"] and cells[6] == "workers"
        lo, hi = m["model_ips_iqr"]
        prec = 1 if m["model_ips"] < 100 else 0
        assert cells[4] == f"{m['model_ips']:,.1f} ({lo:,.{prec}f}-{hi:,.{prec}f})"
        lo, hi = m["e2e_over_model_range"]
        assert cells[7] == f"{m['e2e_over_model']:.2f} ({lo:.2f}-{hi:.2f})"
        assert lo <= m["e2e_over_model"] <= hi
        assert cells[9] == f"{m['reference_e2e_ips']:,.1f}"
