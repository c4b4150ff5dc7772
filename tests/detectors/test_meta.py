"""Detector metadata (mteb ModelMeta style): declared fields complete for every built-in, parameters counted
against independent library builds, truthful weights status for plugins, and what `list detectors` shows."""

from __future__ import annotations

import re

import pytest
import torch

from copybench.detectors import (
    DetectorSpec,
    create_detector,
    describe_detectors,
    get_spec,
    list_detectors,
    register_detector,
    unregister_detector,
    weights_status,
)
from copybench.detectors.meta import detector_meta
from copybench.detectors.registry import get_entry


@pytest.fixture(autouse=True)
def private_meta_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYBENCH_META_CACHE", str(tmp_path / "params.json"))


def test_every_builtin_declares_license_paper_and_release():
    for name in list_detectors():
        entry = get_entry(name)
        if entry.origin != "builtin":
            continue
        spec = entry.spec
        assert spec.paper, name
        if spec.family != "pixel":  # pixel baselines, hashes and histograms have no weights to license
            assert spec.license and spec.weights, name
            assert re.fullmatch(r"\d{4}-\d{2}", spec.release_date) or name == "sscd_distilled.onnx", name
        assert "release_date" not in spec.to_dict()  # metadata never enters the descriptor cache key


def meta_count(build) -> int:
    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters())


def test_parameters_match_independent_library_counts():
    import timm
    from torchvision.models import resnet50

    tv = meta_count(resnet50)
    assert detector_meta("resnet50.tv_in1k").params == tv - (2048 * 1000 + 1000)  # fc removed
    vit_s = meta_count(lambda: timm.create_model("vit_small_patch16_224", num_classes=0))
    assert detector_meta("dino_vits16").params == vit_s
    assert detector_meta("pixel_gray_16").params == 0
    meta = detector_meta("clip_vitb16.openai")
    assert meta.weights_hash == get_spec("clip_vitb16.openai").sha256 and meta.release_date == "2021-02"
    assert detector_meta("resnet50.tv_in1k").weights_hash == "0676ba61"  # the prefix torchvision publishes


class Learned(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 8)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def test_plugin_with_unloaded_parameters_is_random_not_none():
    spec = DetectorSpec(name="metatest_learned", dims=8, input_size=32)  # declares no weights
    register_detector(spec, origin="plugin test")(lambda path: Learned())
    try:
        assert weights_status("metatest_learned") == "random"
        det = create_detector("metatest_learned")
        assert det.weights.status == "random" and det.meta.params == 3 * 8 + 8
        row = describe_detectors("metatest_*")[0]
        assert (row["weights"], row["params"]) == ("random", 32)
    finally:
        unregister_detector("metatest_learned")
    assert weights_status("pixel_gray_16") == "none"
    assert create_detector("pixel_gray_16").weights.status == "none"


def test_list_detectors_shows_metadata_with_whole_names(capsys):
    from copybench.cli import main

    assert main(["list", "detectors", "sscd_*"]) == 0
    out = capsys.readouterr().out
    for name in ("sscd_disc_mixup.onnx_int8", "sscd_disc_mixup.sq288", "sscd_distilled.onnx"):
        assert name in out  # never cut or wrapped
    assert "24.6M" in out and "2022-02" in out and "MIT" in out
