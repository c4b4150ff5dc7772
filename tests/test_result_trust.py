"""A result file is trusted only when it is consistent: its key follows from its settings, detector and dataset,
its predictions file is the one it recorded (sha256), and its metrics are stored at full precision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from copybench.cli import main
from copybench.datasets.dataset import load_dataset
from copybench.results import ResultError, predictions_sha256, read_result
from copybench.run import RunSettings, run_benchmark


@pytest.fixture(scope="module")
def trusted(tiny_dataset_module, tmp_path_factory) -> Path:
    res = tmp_path_factory.mktemp("trust") / "res"
    run_benchmark(
        load_dataset(tiny_dataset_module),
        ["pixel_gray_8", "pixel_rgb_16"],
        RunSettings(n_boot=20),
        results=res,
        descriptor_dir=None,
        progress=False,
    )
    return res


def _files(res: Path) -> dict[str, Path]:
    return {p.stem: p for p in res.rglob("*.json")}


def test_a_result_records_its_predictions_sha256_and_full_precision(trusted):
    path = _files(trusted)["pixel_gray_8"]
    data = json.loads(path.read_text())
    preds = path.with_name(data["predictions_file"])
    assert data["predictions_sha256"] == predictions_sha256(preds) and len(data["predictions_sha256"]) == 64
    # a mean over 11 queries of 0/1 recalls has more than 6 significant digits unless rounded
    floats = [v for v in data["metrics"].values() if isinstance(v, float)]
    assert any(len(repr(v)) > 8 for v in floats), floats


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("key", "protocol", "dcr"),  # key says dcr, settings say native
        ("settings", "protocol", "dcr"),  # settings say dcr, key says native
        ("key", "detector", "sscd_disc_mixup"),
        ("key", "dataset_fingerprint", "0" * 64),
        ("key", "similarity", "split"),
    ],
)
def test_a_key_that_does_not_follow_from_its_content_is_refused(
    trusted, tmp_path, where, field, value, capsys
):
    res = shutil.copytree(trusted, tmp_path / "res")
    path = _files(res)["pixel_gray_8"]
    data = json.loads(path.read_text())
    data[where][field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=f"key.{field} is") as info:
        read_result(path)
    assert str(path) in str(info.value)
    capsys.readouterr()
    assert main(["-q", "check", "--baseline", str(trusted), "--results", str(res), "--no-verify"]) == 2
    assert str(path) in capsys.readouterr().err


def test_swapped_predictions_files_are_refused_naming_the_result(trusted, tmp_path):
    res = shutil.copytree(trusted, tmp_path / "res")
    a, b = _files(res)["pixel_gray_8"], _files(res)["pixel_rgb_16"]
    pa, pb = (p.with_name(json.loads(p.read_text())["predictions_file"]) for p in (a, b))
    pa.rename(tmp_path / "tmp.gz")
    pb.rename(pa)
    (tmp_path / "tmp.gz").rename(pb)
    for path in (a, b):
        with pytest.raises(ResultError, match="is not the one it was computed with") as info:
            read_result(path)
        assert str(path) in str(info.value)
    assert main(["-q", "export", str(a), "--out", str(tmp_path / "isc")]) == 2
