"""``open_clip:ARCH/TAG`` and open_clip ``hf-hub:`` repositories: open_clip's configs, transforms and loader.

The preprocessing is open_clip's ``PreprocessCfg`` merged as ``create_model`` merges it (defaults, then the
tag's or the repository's ``preprocess_cfg``, size from the image tower). A tag trained with QuickGELU builds
with QuickGELU (open_clip only warns about the mismatch; the weights need it). The descriptor is ``encode_image``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

import torch

from .hub_core import HubEntry, card_license, card_release, missing, release_fields, snapshot
from .hub_prep import preprocessing, spec_fields
from .registry import DetectorSpec, UnknownDetectorError
from .weightfiles import download as fetch_url

OPEN_CLIP_CACHE = Path("~/.cache/clip")  # open_clip's download folder for URL tags


class EncodeImage(torch.nn.Module):
    """An open_clip model's ``encode_image`` (unnormalised: the harness L2-normalises)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


class _no_random_init_warning:
    """Silence open_clip's "initialized randomly" warning while a model is built only to read its configs."""

    @staticmethod
    def filter(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    def __enter__(self):
        logging.getLogger().addFilter(self.filter)

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeFilter(self.filter)


def preprocess_fields(cfg: dict, strict: bool = True) -> dict:
    """DetectorSpec fields from an open_clip preprocess cfg (size, mean, std, interpolation, resize_mode)."""
    mode = {"shortest": "shortest", "squash": "squash"}.get(cfg["resize_mode"], cfg["resize_mode"])
    fields = spec_fields(
        {
            "size": cfg["size"],
            "mode": mode,
            "crop_pct": 1.0,
            "interpolation": cfg["interpolation"],
            "mean": cfg["mean"],
            "std": cfg["std"],
        },
        strict,
    )
    return {**fields, "resize_backend": "pil"}  # open_clip's transform resizes PIL images


def open_clip_preprocessing(name: str, cfg: dict) -> dict:
    """Spec fields: the batch path where it reproduces open_clip's eval transform (``image_transform_v2`` of the
    merged ``PreprocessCfg``, as ``create_model_and_transforms`` builds it), else that transform itself
    (``longest`` resize mode with padding, non-square sizes)."""
    from copybench.extras import require

    require("open_clip")
    from open_clip.transform import PreprocessCfg, image_transform_v2

    transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    return preprocessing(name, "open_clip", lambda strict: preprocess_fields(cfg, strict), transform)


def tag_cfg(arch: str, tag: str) -> tuple[dict, dict, dict]:
    """(model cfg, tag cfg, merged preprocess cfg) from open_clip's registries, with nothing downloaded."""
    from copybench.extras import require

    open_clip = require("open_clip")
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise UnknownDetectorError(f"open_clip has no architecture {arch!r} (see open_clip.list_models())")
    pcfg = open_clip.get_pretrained_cfg(arch, tag)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UnknownDetectorError(
            f"open_clip has no pretrained tag {tag!r} for {arch!r}; tags: {', '.join(tags)}"
        )
    merged = merge_preprocess_dict(asdict(PreprocessCfg()), pcfg)
    merged["size"] = model_cfg["vision_cfg"].get("image_size", merged["size"])
    return model_cfg, pcfg, merged


def checkpoint_names(filename: str = "") -> tuple[str, ...]:
    """The checkpoint file names open_clip reads from a repository, in its order (safetensors preferred)."""
    names = (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    if filename.endswith((".bin", ".pth")):
        names = (filename.rsplit(".", 1)[0] + ".safetensors", *names)
    return names


def checkpoint_in(folder: Path, filename: str = "") -> Path | None:
    """The checkpoint open_clip reads from a repository folder."""
    return next((folder / n for n in checkpoint_names(filename) if (folder / n).is_file()), None)


def tag_folder(pcfg: dict) -> Path | None:
    """The cached repository of a tag published on the hub (its model card), None for URL tags or uncached."""
    return snapshot(os.path.split(pcfg["hf_hub"])[0]) if pcfg.get("hf_hub") else None


def cached_checkpoint(pcfg: dict, download: bool, progress: bool = True) -> Path | None:
    """The tag's checkpoint from the HF cache or open_clip's URL cache; downloaded only when asked."""
    if pcfg.get("hf_hub"):
        repo, filename = os.path.split(
            pcfg["hf_hub"]
        )  # "org/name/" -> default file names, as open_clip reads it
        folder = snapshot(repo, download=download, progress=progress, weights=checkpoint_names(filename))
        if folder is None:
            return None
        return checkpoint_in(folder, filename)
    url = pcfg.get("url", "")
    path = OPEN_CLIP_CACHE.expanduser() / url.rsplit("/", 1)[-1] if url else None
    if path is not None and not path.is_file() and download:
        # OpenAI's URLs carry the file's full sha256 as their folder (open_clip checks it the same way);
        # other URLs: the hash prefix in the name, else pinned on first download. Resumable either way.
        folder = url.rsplit("/", 2)[-2]
        published = folder if re.fullmatch(r"[0-9a-f]{64}", folder) else None
        fetch_url(url, path, published=published, progress=progress)
    return path if path is not None and path.is_file() else None


def resolve_open_clip(name: str, ident: str) -> HubEntry:
    """``open_clip:ARCH/TAG``."""
    from copybench.extras import require

    open_clip = require("open_clip")

    arch, sep, tag = ident.partition("/")
    if not sep or not tag:
        raise UnknownDetectorError(
            f"{name}: open_clip names are open_clip:ARCH/TAG, e.g. open_clip:ViT-B-32/openai"
        )
    model_cfg, pcfg, pre = tag_cfg(arch, tag)
    folder = tag_folder(pcfg)  # the tag's cached hub repository: its model card (licence, release month)
    spec = DetectorSpec(
        name=name,
        dims=int(model_cfg["embed_dim"]),
        weights=pcfg.get("hf_hub") and f"hf-hub:{pcfg['hf_hub']}" or pcfg.get("url", ""),
        license=card_license(folder),
        paper=f"open_clip {arch} pretrained {tag}",
        **open_clip_preprocessing(name, pre),
        **release_fields(*card_release(folder)),
    )
    quick_gelu = bool(pcfg.get("quick_gelu", False))

    def factory(path: Path | None) -> torch.nn.Module:
        model = open_clip.create_model(
            arch, pretrained=str(path) if path else None, force_quick_gelu=quick_gelu
        )
        return EncodeImage(model)

    def locate(download: bool = False, progress: bool = True) -> Path | None:
        return cached_checkpoint(pcfg, download, progress)

    def fetch(progress: bool = True):
        had = locate() is not None
        path = locate(download=True, progress=progress)
        if path is None:
            raise missing(name, "open_clip could not fetch the checkpoint")
        return path, entry.check(path), ("present" if had else "downloaded") + f", in {path.parent}"

    entry = HubEntry(spec, factory, locate, fetch, origin=f"open_clip {open_clip.__version__}")
    return entry


def resolve_open_clip_dir(name: str, folder: Path) -> HubEntry:
    """An open_clip ``hf-hub:`` repository in the cache, loaded with open_clip's ``local-dir:`` loader."""
    from copybench.extras import require

    open_clip = require("open_clip")

    with torch.device("meta"), _no_random_init_warning():  # configs only: no memory, no weights read
        model = open_clip.create_model(f"local-dir:{folder}", load_weights=False, device="meta")
    pre = model.visual.preprocess_cfg
    cfg = open_clip.get_model_config(f"local-dir:{folder}")
    spec = DetectorSpec(
        name=name,
        dims=int(cfg["embed_dim"]),
        weights=name,
        license=card_license(folder),
        paper=f"open_clip {name}",
        **open_clip_preprocessing(name, dict(pre)),
        **release_fields(*card_release(folder)),
    )

    def factory(path: Path | None) -> torch.nn.Module:
        return EncodeImage(open_clip.create_model(f"local-dir:{folder}", load_weights=path is not None))

    def locate(download: bool = False, progress: bool = True) -> Path | None:  # already cached
        return checkpoint_in(folder)

    def fetch(progress: bool = True):
        raise missing(name, "fetch the hub name itself")

    return HubEntry(
        spec, factory, locate, fetch, origin=f"open_clip {open_clip.__version__}", revision=folder.name
    )
