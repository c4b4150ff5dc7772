"""The detector contract over the whole registry (random weights, CPU), and clear errors for broken plugins."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from copybench.detectors import (
    ContractError,
    Detector,
    DetectorSpec,
    WeightsInfo,
    check_detector_contract,
    get_spec,
    list_detectors,
    register_detector,
    unregister_detector,
)

# Too slow for the full check on 2 CPU cores (seconds per image): the default run builds them and checks one
# forward at native size; the full check (determinism, batch invariance) runs with -m slow.
HEAVY = {
    "clip_vitl14.openai",
    "clip_rn50x16.openai",
    "dino_vitb8",
    "dino_vitb8.cls_gem",
    "dino_vits8.cls_gem",
    "swin_b.in1k",
    "sscd_disc_large",
}
NAMES = list_detectors()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in HEAVY])
def test_contract(name):
    report = check_detector_contract(name, batch=2)
    spec = get_spec(name)
    assert report.output_shape[0] == 2 and report.output_shape[-1] == spec.dims


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_contract_heavy_quick(name):
    report = check_detector_contract(name, quick=True)
    assert report.output_shape[-1] == get_spec(name).dims


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HEAVY))
def test_contract_heavy_full(name):
    check_detector_contract(name, batch=2)


def test_registry_has_the_baselines():
    expected = {
        "sscd_disc_mixup",
        "sscd_disc_large",
        "dino_vits16",
        "dino_vitb16",
        "dino_vitb8",
        "dino_resnet50",
        "dino_vitb16.cls_gem",
        "clip_vitb16.openai",
        "clip_vitl14.openai",
        "swin_b.in1k",
        "resnet50.tv_in1k",
        "dinov2_vitb14",
        "mocov3_vitb16",
        "efficientnet_lite0",
        "sscd_disc_mixup.onnx_int8",
        "sscd_distilled.onnx",
        "phash_64",
        "color_hist_512",
        "pixel_gray_16",
        "pixel_rgb_32",
    }
    assert expected <= set(NAMES)
    assert set(list_detectors("dino_*")) >= {"dino_vits16", "dino_vitb16.cls_gem", "dino_resnet50"}


def _detector(name: str, model: torch.nn.Module, dims: int = 8, output: str = "global") -> Detector:
    spec = DetectorSpec(name=name, dims=dims, input_size=32, mean=(0, 0, 0), std=(1, 1, 1), output=output)
    return Detector(spec, model, WeightsInfo("none"))


class _Flat(torch.nn.Module):
    def __init__(self, dims: int, fn=None):
        super().__init__()
        self.dims, self.fn = dims, fn

    def forward(self, x):
        out = x.flatten(1)[:, : self.dims] + 0.1
        return self.fn(out) if self.fn else out


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_Flat(12), "output dims 12 but the spec declares dims=8"),
        (_Flat(8, lambda o: o * float("nan")), "non-finite"),
        (_Flat(8, lambda o: o * 0), "all-zero"),
        (_Flat(8, lambda o: o + torch.randn_like(o)), "not deterministic"),
        (_Flat(8, lambda o: o - o.mean(0, keepdim=True) + 1), "alone vs in a batch"),
        (_Flat(8, lambda o: o.unsqueeze(1)), r"output shape \(2, 1, 8\)"),
        (_Flat(8, lambda o: o.argmax(1)), "not floating point"),
        (_Flat(8, lambda o: o[0] / 0 if o.shape[0] > 99 else {"x": o}), "returned dict"),
    ],
)
def test_broken_detectors_get_a_clear_error(model, message):
    with pytest.raises(ContractError, match=message) as err:
        check_detector_contract(_detector("my_broken_plugin", model))
    assert "'my_broken_plugin'" in str(err.value)


def test_broken_registered_plugin_is_named():
    spec = DetectorSpec(name="test_plugin_nan", dims=8, input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    register_detector(spec, origin="plugin test")(lambda path: _Flat(8, lambda o: o * float("nan")))
    try:
        with pytest.raises(ContractError, match=r"detector 'test_plugin_nan' breaks .* non-finite"):
            check_detector_contract("test_plugin_nan")
    finally:
        unregister_detector("test_plugin_nan")
    assert "test_plugin_nan" not in list_detectors()


def test_factory_that_raises_is_named():
    spec = DetectorSpec(name="test_plugin_raises", dims=8, input_size=32)
    register_detector(spec)(lambda path: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(ContractError, match=r"'test_plugin_raises' could not be built: .*boom"):
            check_detector_contract("test_plugin_raises")
    finally:
        unregister_detector("test_plugin_raises")


def test_import_stays_light():
    """Registering every built-in detector imports none of the heavy model libraries."""
    code = (
        "import sys; from copybench.detectors import list_detectors; list_detectors(); "
        "print(sorted(m for m in ('timm', 'open_clip', 'onnxruntime', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
