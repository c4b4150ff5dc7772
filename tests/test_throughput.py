"""Throughput benchmark: valid result files, honest weights status, CLI end to end, the device-decode path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from copybench.cli import main
from copybench.results import read_result
from copybench.table import render_table, throughput_frame
from copybench.throughput import (
    ThroughputSettings,
    Timing,
    device_decode_extract,
    throughput,
    write_synthetic_jpegs,
)

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
    "e2e_workers_ips",
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
    status = {r.detector_name: r.weights_status for r in results}
    assert status == {"pixel_gray_16": "none", "efficientnet_lite0": "random"}
    frame = throughput_frame([read_result(r.source) for r in results])
    assert "efficientnet_lite0 (random weights)" in set(frame["detector"])
    assert "efficientnet_lite0 (random weights)" in render_table(tmp_path, fmt="md")


def test_device_decode_matches_the_extractor(tmp_path):
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    paths = write_synthetic_jpegs(tmp_path / "img", 6)
    extractor = Extractor(create_detector("pixel_gray_16"), batch_size=4, num_workers=1, progress=False)
    harness = extractor.run(paths).vectors
    decoded = device_decode_extract(extractor, paths, num_workers=1)
    assert decoded.shape == harness.shape
    assert float((decoded * harness).sum(1).min()) > 0.99


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
    assert m["e2e_decode"] == "device" and m["e2e_device_ips"] == m["e2e_ips"]
    assert "same machine and device" in capsys.readouterr().out
    assert main(["table", str(tmp_path)]) == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="decode"):
        ThroughputSettings(decode="gpu")
    with pytest.raises(ValueError, match="batch"):
        ThroughputSettings(batch_sizes=(0,))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            throughput(["pixel_gray_16"], settings=ThroughputSettings(device="cuda", **TINY))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_throughput_on_cuda(tmp_path):
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    settings = ThroughputSettings(
        device="cuda",
        dtype="bf16",
        batch_sizes=(32,),
        n_images=96,
        n_references=20_000,
        repeats=2,
        min_time=0.2,
        reference=True,
    )
    (r,) = throughput(["efficientnet_lite0"], settings=settings, results=tmp_path, allow_random=True)
    m = read_result(r.source).measurements[0]
    _positive_finite(m)
    assert m["e2e_decode"] == "device", m.get("e2e_device_error")
    assert all(v > 0 for v in m["peak_device_mb"].values())
    paths = write_synthetic_jpegs(tmp_path / "img", 40)
    extractor = Extractor(
        create_detector("efficientnet_lite0", allow_random=True, device="cuda"),
        device="cuda",
        batch_size=16,
        progress=False,
    )
    harness = np.asarray(extractor.run(paths).vectors)
    decoded = device_decode_extract(extractor, paths, num_workers=2)
    assert float((decoded * harness).sum(1).min()) > 0.98
