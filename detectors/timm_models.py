"""Supervised ImageNet detectors (timm / torchvision architectures): classifier removed, pooled features.

Each keeps its native evaluation preprocessing (timm's pretrained config: input size, crop_pct, interpolation,
mean/std).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .builtin import EFFICIENTNET_LITE, builtin_spec
from .load import read_state_dict, unwrap_state_dict
from .registry import register_detector


def load_state_dict_in_order(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Copy tensors key-by-key in order: the EfficientNet-Lite packages use their own key names but timm's order."""
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(f"{name}: weights file holds {len(state)} tensors, the model expects {len(target)}")
    for (tkey, tval), (skey, sval) in zip(target.items(), state.items()):
        if tuple(tval.shape) != tuple(sval.shape):
            raise ValueError(
                f"{name}: tensor {skey} {tuple(sval.shape)} does not fit {tkey} {tuple(tval.shape)}"
            )
    model.load_state_dict(dict(zip(target.keys(), state.values())))


def _efficientnet_lite(variant: int) -> None:
    name = f"efficientnet_lite{variant}"

    @register_detector(builtin_spec(name))
    def factory(path: Path | None, variant: int = variant) -> torch.nn.Module:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000)
        if path is not None:
            load_state_dict_in_order(model, read_state_dict(path), name)
        model.reset_classifier(0)
        return model


for _v in EFFICIENTNET_LITE:
    _efficientnet_lite(_v)


@register_detector(builtin_spec("swin_b.in1k"))
def swin_b_in1k(path: Path | None) -> torch.nn.Module:
    """Swin-B/4 window 7, ImageNet-1k supervised; average-pooled final features (1024-d)."""
    import timm
    from timm.models.swin_transformer import checkpoint_filter_fn

    model = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=1000)
    if path is not None:
        # timm's filter takes Microsoft's original layout ({"model": ...}, downsample at stage end) or timm's own
        state = checkpoint_filter_fn(unwrap_state_dict(read_state_dict(path)), model)
        model.load_state_dict(state, strict=True)
    model.reset_classifier(0)
    return model


@register_detector(builtin_spec("resnet50.tv_in1k"))
def resnet50_tv_in1k(path: Path | None) -> torch.nn.Module:
    """torchvision's ResNet-50 and its original ImageNet weights; global-average-pooled 2048-d features."""
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if path is not None:
        model.load_state_dict(unwrap_state_dict(read_state_dict(path)), strict=True)
    model.fc = torch.nn.Identity()
    return model
