"""OpenAI CLIP image towers through open_clip (``pip install open_clip_torch``), with CLIP's own preprocessing.

The descriptor is ``encode_image``: the image tower's projected embedding. OpenAI trained with QuickGELU, so the
towers are built with it (open_clip's plain ``ViT-B-16`` config uses nn.GELU and would not match the weights).
Weights: OpenAI's original ``.pt`` (a TorchScript archive, read for its tensors only) or an open_clip checkpoint
(``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``); either the full CLIP state dict (its
``visual.*`` keys are used) or the image tower's alone.
Preprocessing: short side to 224 (bicubic), centre crop 224, CLIP's mean/std.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .builtin import CLIP_MODELS, builtin_spec
from .load import read_state_dict, strip_prefix, unwrap_state_dict
from .registry import register_detector


def build_visual(arch: str) -> torch.nn.Module:
    """open_clip's image tower for ``arch`` with QuickGELU, at random init, without building the text tower."""
    from copybench.extras import require

    open_clip = require("open_clip")

    try:
        from open_clip.model import _build_vision_tower

        cfg = open_clip.get_model_config(arch)
        return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=True)
    except (ImportError, KeyError, TypeError):  # open_clip moved its internals: build the whole model
        return open_clip.create_model(arch, pretrained=None, force_quick_gelu=True).visual


def load_visual(visual: torch.nn.Module, path: Path, name: str) -> None:
    """Load the image tower from a full CLIP state dict (``visual.*``) or a tower-only one, strictly."""
    state = unwrap_state_dict(read_state_dict(path))
    state = strip_prefix(state, "module.") or state
    state = strip_prefix(state, "visual.") or state
    state = {k: v.float() for k, v in state.items() if isinstance(v, torch.Tensor)}
    result = visual.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{name}: weights do not fit open_clip's image tower: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def _clip(name: str, arch: str) -> None:
    @register_detector(builtin_spec(name))
    def factory(path: Path | None) -> torch.nn.Module:
        visual = build_visual(arch)
        if path is not None:
            load_visual(visual, path, name)
        return visual


for _name, (_arch, *_) in CLIP_MODELS.items():
    _clip(_name, _arch)
