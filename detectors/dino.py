"""Self-supervised ViTs and ResNet: DINO (v1), DINOv2 and MoCo v3, from their official checkpoints.

DINO and DINOv2 publish backbone state dicts whose key names are timm's ViT names (``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``; DINOv2 adds
``blocks.N.ls{1,2}.gamma`` and an unused ``mask_token``), so the timm architectures load them strictly. MoCo v3
publishes a training checkpoint: the backbone is ``state_dict["module.base_encoder.*"]`` minus its projector
``head``. The ViTs return all tokens after the final norm, ``(B, 1 + patches, D)``, CLS first, so the harness can
use token 0 as the global descriptor and every token for the split product.

Position embeddings at another input size are resampled with the formula of DINO's own ``interpolate_pos_encoding``
(bicubic, scale factor ``(grid + 0.1) / old_grid``, no antialias), not timm's, so the outputs are DINO's.

``<dino vit>.cls_gem`` is DINO's copy-detection descriptor (``eval_copy_detection.py``): square 320 bicubic, CLS token
concatenated with the GeM(p=4)-pooled patch tokens; DINO then whitens it on a separate set (the harness's job).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .builtin import DINO_VITS, builtin_spec
from .load import read_state_dict, strip_prefix, unwrap_state_dict
from .registry import register_detector


def dino_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], prefix: int = 1, offset: float = 0.1
) -> torch.Tensor:
    """Resample ``(1, prefix + N, D)`` position embeddings to ``grid`` as DINO / DINOv2 do at inference."""
    n = pos_embed.shape[1] - prefix
    old = int(math.sqrt(n))
    if (old, old) == tuple(grid):
        return pos_embed
    head, patch = pos_embed[:, :prefix], pos_embed[:, prefix:]
    patch = patch.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    scale = ((grid[0] + offset) / old, (grid[1] + offset) / old)
    patch = F.interpolate(patch, scale_factor=scale, mode="bicubic", align_corners=False)
    if tuple(patch.shape[-2:]) != tuple(grid):
        raise ValueError(f"position embedding resampled to {tuple(patch.shape[-2:])}, expected {tuple(grid)}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos_embed.dtype)
    return torch.cat([head, patch], dim=1)


def load_vit(model: torch.nn.Module, state: dict, name: str) -> None:
    """Strictly load a DINO-style ViT state dict into a timm ViT, fitting ``pos_embed`` to the model's grid."""
    state = {k: v for k, v in state.items() if not k.startswith("head.") and k != "mask_token"}
    if "pos_embed" in state:
        state["pos_embed"] = dino_pos_embed(state["pos_embed"], tuple(model.patch_embed.grid_size))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{name}: weights do not fit the architecture: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


class Tokens(torch.nn.Module):
    """A timm ViT returning every token after the final norm: (B, T, D), CLS first."""

    def __init__(self, vit: torch.nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)


class ClsGem(torch.nn.Module):
    """DINO's copy-detection descriptor: CLS token concatenated with GeM(p)-pooled patch tokens."""

    def __init__(self, vit: torch.nn.Module, p: float = 4.0):
        super().__init__()
        self.vit, self.p = vit, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(x)
        prefix = self.vit.num_prefix_tokens
        patches = tokens[:, prefix:].clamp(min=1e-6).pow(self.p).mean(dim=1).pow(1.0 / self.p)
        return torch.cat([tokens[:, 0], patches], dim=1)


def build_vit(arch: str, path: Path | None, name: str, img_size: int = 224, convert=None) -> torch.nn.Module:
    """A headless timm ViT at ``img_size``, with the official weights when ``path`` is given."""
    import timm

    vit = timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size)
    if path is not None:
        state = unwrap_state_dict(read_state_dict(path))
        load_vit(vit, convert(state) if convert else state, name)
    return vit


def _dino_vit(name: str, arch: str) -> None:
    @register_detector(builtin_spec(name))
    def tokens_factory(path: Path | None) -> torch.nn.Module:
        return Tokens(build_vit(arch, path, name))

    @register_detector(builtin_spec(f"{name}.cls_gem"))
    def gem_factory(path: Path | None) -> torch.nn.Module:
        return ClsGem(build_vit(arch, path, f"{name}.cls_gem", img_size=320))


for _name, (_arch, *_) in DINO_VITS.items():
    _dino_vit(_name, _arch)


def build_resnet50(path: Path | None, name: str) -> torch.nn.Module:
    """torchvision's ResNet-50 with ``fc`` removed, loading a torchvision-format state dict."""
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if path is not None:
        state = {k: v for k, v in unwrap_state_dict(read_state_dict(path)).items() if not k.startswith("fc.")}
        model.fc = torch.nn.Identity()
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{name}: weights do not fit ResNet-50: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
    model.fc = torch.nn.Identity()
    return model


@register_detector(builtin_spec("dino_resnet50"))
def dino_resnet50(path: Path | None) -> torch.nn.Module:
    # DINO publishes the trunk without fc; torch.hub's dino_resnet50 sets fc = Identity and loads it
    return build_resnet50(path, "dino_resnet50")


@register_detector(builtin_spec("dinov2_vitb14"))
def dinov2_vitb14(path: Path | None) -> torch.nn.Module:
    # the official file holds pos_embed for 518 px (37x37); load_vit resamples it to 16x16 as DINOv2 does
    return Tokens(build_vit("vit_base_patch14_dinov2", path, "dinov2_vitb14", img_size=224))


def mocov3_backbone(state: dict) -> dict:
    """MoCo v3 checkpoint -> ViT state dict: the base encoder without its projector head (as its main_lincls)."""
    state = strip_prefix(state, "module.base_encoder.") or strip_prefix(state, "base_encoder.") or state
    return {k: v for k, v in state.items() if not k.startswith("head.")}


@register_detector(builtin_spec("mocov3_vitb16"))
def mocov3_vitb16(path: Path | None) -> torch.nn.Module:
    return Tokens(build_vit("vit_base_patch16_224", path, "mocov3_vitb16", convert=mocov3_backbone))
