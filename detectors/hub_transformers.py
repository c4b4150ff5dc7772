"""``hf:ORG/NAME``: Hugging Face transformers image models, preprocessed as their ``AutoImageProcessor`` does.

Descriptor: for ViT-style models whose first token is CLS (ViT, DeiT, DINOv2...) every token of
``last_hidden_state``, CLS first (the harness takes token 0 as the global descriptor, all tokens for
``--similarity split``); for multimodal models (CLIP, SigLIP) ``get_image_features``; otherwise ``pooler_output``.
A preprocessing the batch path cannot reproduce (no resize, another rescale factor, non-square crops, a resize rule
of the processor's own) runs through the processor itself (``ProcessorCall``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .hub_core import (
    CLS_TOKEN_TYPES,
    HubEntry,
    card_license,
    card_release,
    missing,
    release_fields,
    weights_file,
)
from .hub_prep import preprocessing, spec_fields
from .registry import UNIT_MEAN, UNIT_STD, DetectorSpec

PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class HFImage(torch.nn.Module):
    """A transformers model as a detector: tokens, image features or pooled output of ``pixel_values``."""

    def __init__(self, model: torch.nn.Module, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "features":
            out = self.model.get_image_features(pixel_values=x)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        out = self.model(pixel_values=x)
        return out.last_hidden_state if self.mode == "tokens" else out.pooler_output.flatten(1)


def output_mode(model_type: str, config) -> tuple[str, int]:
    """(tokens | features | pooled, descriptor width) for a transformers config."""
    if model_type in CLS_TOKEN_TYPES:
        return "tokens", int(config.hidden_size)
    if hasattr(config, "vision_config"):  # CLIP / SigLIP style: the image tower's projected embedding
        return "features", int(getattr(config, "projection_dim", None) or config.vision_config.hidden_size)
    sizes = getattr(config, "hidden_sizes", None)
    return "pooled", int(sizes[-1] if sizes else config.hidden_size)


def processor_fields(proc) -> dict:
    """DetectorSpec preprocessing fields from an image processor's own settings."""
    name = type(proc).__name__
    if not getattr(proc, "do_resize", True):
        raise ValueError(f"{name}: do_resize=False cannot be reproduced (the harness batches a fixed size)")
    if not getattr(proc, "do_rescale", True) or abs(float(proc.rescale_factor) - 1 / 255) > 1e-9:
        raise ValueError(
            f"{name}: pixels must be rescaled by 1/255 (do_rescale, rescale_factor) for the harness"
        )
    if int(proc.resample) not in PIL_RESAMPLE:
        raise ValueError(f"{name}: resample {proc.resample} has no torchvision equivalent the harness uses")
    size, crop = dict(proc.size), dict(getattr(proc, "crop_size", None) or {})
    short = size.get("shortest_edge")
    if short and getattr(proc, "crop_pct", None):  # ConvNeXt: below 384, resize to short/crop_pct, crop short
        data = (
            {"size": short, "mode": "shortest", "crop_pct": proc.crop_pct}
            if short < 384
            else {"size": short, "mode": "squash"}
        )
    elif short and getattr(proc, "do_center_crop", False):
        data = {
            "size": (crop["height"], crop["width"]),
            "mode": "shortest",
            "crop_pct": crop["height"] / short,
        }
    elif size.get("height"):
        data = {"size": (size["height"], size["width"]), "mode": "squash"}
        if getattr(proc, "do_center_crop", False) and crop.get("height") != size["height"]:
            raise ValueError(f"{name}: a crop after a square resize cannot be reproduced")
    else:
        raise ValueError(f"{name}: resize settings {size} cannot be reproduced by the harness")
    normalise = getattr(proc, "do_normalize", True)
    data |= {
        "interpolation": PIL_RESAMPLE[int(proc.resample)],
        "mean": proc.image_mean if normalise else UNIT_MEAN,
        "std": proc.image_std if normalise else UNIT_STD,
    }
    torchvision = any("Torchvision" in c.__name__ for c in type(proc).__mro__)
    backend = "tensor" if torchvision else "pil"
    return {**spec_fields(data), "resize_backend": backend, "crop_offset": "floor"}


def loose_processor_fields(proc) -> dict:
    """A description of a processor the batch path cannot reproduce (the library route runs the processor)."""
    size, crop = dict(getattr(proc, "size", None) or {}), dict(getattr(proc, "crop_size", None) or {})
    side = crop.get("height") or size.get("height") or size.get("shortest_edge") or size.get("longest_edge")
    normalise = getattr(proc, "do_normalize", True) and getattr(proc, "image_mean", None) is not None
    data = {
        "size": int(side or 224),
        "mode": "squash" if size.get("height") and not crop else "shortest",
        "interpolation": PIL_RESAMPLE.get(int(getattr(proc, "resample", 3) or 3), "bicubic"),
        "mean": proc.image_mean if normalise else UNIT_MEAN,
        "std": proc.image_std if normalise else UNIT_STD,
    }
    return {**spec_fields(data, strict=False), "crop_offset": "floor"}


class ProcessorCall:
    """An image processor as a transform: one PIL image in, its ``pixel_values`` (3, H, W) out."""

    def __init__(self, proc) -> None:
        self.proc = proc

    def __call__(self, img) -> torch.Tensor:
        return self.proc(images=img, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:  # every setting of the processor (the probe's memo key)
        return f"ProcessorCall({type(self.proc).__name__}, {self.proc.to_json_string()})"


def transformers_preprocessing(name: str, proc) -> dict:
    """Spec fields: the batch path where it reproduces the processor (checked on probe images), else the
    processor itself runs on each image (no resize, another rescale, Lanczos, LeViT's resize rule, ...)."""
    return preprocessing(
        name,
        "transformers",
        lambda strict: processor_fields(proc) if strict else loose_processor_fields(proc),
        ProcessorCall(proc),
    )


def resolve_transformers(name: str, folder: Path) -> HubEntry:
    """An ``hf:`` repository already in the Hugging Face cache (``folder`` is its snapshot)."""
    from copybench.extras import require

    transformers = require("transformers")
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    config = AutoConfig.from_pretrained(folder)
    mode, dims = output_mode(config.model_type, config)
    try:
        proc = AutoImageProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{name}: no usable image processor config in {folder} ({exc})") from exc
    spec = DetectorSpec(
        name=name,
        dims=dims,
        weights=name,
        license=str(getattr(config, "license", "") or "") or card_license(folder),
        paper=f"transformers {config.model_type} ({name})",
        output="tokens" if mode == "tokens" else "global",
        **transformers_preprocessing(name, proc),
        **release_fields(*card_release(folder)),
    )

    def factory(path: Path | None) -> torch.nn.Module:
        model = AutoModel.from_pretrained(folder) if path else AutoModel.from_config(config)
        return HFImage(model, mode)

    def locate(download: bool = False, progress: bool = True) -> Path | None:  # already cached
        return weights_file(folder)

    def fetch(progress: bool = True):
        path = locate()
        if path is None:
            raise missing(name, f"{folder} holds no weights file")
        return path, entry.check(path), "present"

    entry = HubEntry(
        spec, factory, locate, fetch, origin=f"transformers {transformers.__version__}", revision=folder.name
    )
    return entry
