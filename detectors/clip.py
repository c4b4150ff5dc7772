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

from .load import read_state_dict, strip_prefix, unwrap_state_dict
from .registry import CLIP_MEAN, CLIP_STD, DetectorSpec, register_detector

CLIP_PAPER = (
    "Radford et al., Learning Transferable Visual Models From Natural Language Supervision (ICML 2021)"
)
OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/{}/{}.pt"

# name: (open_clip architecture, embedding dims, input size, sha256 of OpenAI's file, also its URL folder)
CLIP_MODELS = {
    "clip_vitb16.openai": (
        "ViT-B-16",
        512,
        224,
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    ),
    "clip_vitl14.openai": (
        "ViT-L-14",
        768,
        224,
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    ),
    "clip_rn50x16.openai": (
        "RN50x16",
        768,
        384,
        "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
    ),
}


def build_visual(arch: str) -> torch.nn.Module:
    """open_clip's image tower for ``arch`` with QuickGELU, at random init, without building the text tower."""
    import open_clip

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


def _clip(name: str, arch: str, dims: int, size: int, sha256: str) -> None:
    spec = DetectorSpec(
        name=name,
        dims=dims,
        input_size=size,
        resize="short_crop",
        interpolation="bicubic",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        weights=OPENAI_URL.format(sha256, arch),
        sha256=sha256,
        license="MIT",
        paper=CLIP_PAPER,
        family="clip",
        release_date="2021-02",  # the paper; OpenAI released some towers' weights later
    )

    @register_detector(spec)
    def factory(path: Path | None) -> torch.nn.Module:
        visual = build_visual(arch)
        if path is not None:
            load_visual(visual, path, name)
        return visual


for _name, (_arch, _dims, _size, _sha) in CLIP_MODELS.items():
    _clip(_name, _arch, _dims, _size, _sha)
