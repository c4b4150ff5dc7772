"""``timm:NAME`` and timm ``hf-hub:`` repositories: timm's own pretrained cfg, data config and weights loader."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .hub_core import (
    HubEntry,
    arxiv_release,
    card_license,
    card_release,
    hf_cache_dir,
    missing,
    release_fields,
    snapshot,
    split_repo,
    weights_file,
)
from .hub_prep import preprocessing, spec_fields
from .registry import DetectorSpec, UnknownDetectorError
from .weightfiles import fetch_spec, official_path


def data_spec_fields(model: torch.nn.Module, strict: bool = True) -> dict:
    """The eval preprocessing timm resolves for ``model`` (``resolve_data_config``), as DetectorSpec fields."""
    from timm.data import resolve_data_config

    data = resolve_data_config(model=model)
    fields = spec_fields(
        {
            "size": data["input_size"][1:],
            "mode": "squash" if data.get("crop_mode") == "squash" else data.get("crop_mode", "center"),
            "crop_pct": data.get("crop_pct"),
            "interpolation": data["interpolation"],
            "mean": data["mean"],
            "std": data["std"],
        },
        strict,
    )
    return {**fields, "resize_backend": "pil"}  # timm's eval transform resizes PIL images


def timm_preprocessing(name: str, model: torch.nn.Module) -> dict:
    """Spec fields: the batch path where it reproduces timm's eval transform (``create_transform`` of
    ``resolve_data_config``), else that transform itself (crop modes ``border``, squash with crop_pct < 1,
    non-square inputs)."""
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config(model=model))
    return preprocessing(name, "timm", lambda strict: data_spec_fields(model, strict), transform)


def descriptor_dims(model: torch.nn.Module, input_size: int) -> int:
    """Width of timm's pooled pre-logits output, by one forward on the meta device (no memory, no compute)."""
    try:
        with torch.no_grad():
            out = model(torch.empty(1, 3, input_size, input_size, device="meta"))
        return int(out.shape[-1])
    except Exception:  # noqa: BLE001  (an op without a meta kernel: timm's declared width)
        return int(getattr(model, "head_hidden_size", None) or model.num_features)


TIMM_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader reads, in its order


def timm_release(pcfg: dict, folder: Path | None) -> dict:
    """Release month from timm's pretrained cfg (``paper_ids``: the arXiv paper of these weights), else from the
    cached repository's model card; unknown ("") otherwise."""
    date, source = arxiv_release(str(pcfg.get("paper_ids") or ""))
    return release_fields(*((date, source) if date else card_release(folder)))


def meta_model(name: str, **kwargs) -> torch.nn.Module:
    import timm

    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def resolve_timm(name: str, model_name: str) -> HubEntry:
    """``timm:NAME``: architecture and tag from timm's registry; weights from its hf_hub_id or URL, cached."""
    import timm

    if not timm.is_model(model_name.split(".")[0]):
        raise UnknownDetectorError(f"{name}: timm has no model {model_name!r} (see timm.list_models())")
    model = meta_model(model_name)
    pcfg = model.pretrained_cfg
    fields = timm_preprocessing(name, model)
    hub_id, url = pcfg.get("hf_hub_id"), pcfg.get("url")
    folder = snapshot(*split_repo(hub_id)) if hub_id else None
    spec = DetectorSpec(
        name=name,
        dims=descriptor_dims(model, fields["input_size"]),
        weights=f"hf-hub:{hub_id}" if hub_id else (url or "random"),
        license=pcfg.get("license", "") or card_license(folder),
        paper=pcfg.get("paper_name") or pcfg.get("paper_ids") or f"timm {model_name}",
        **fields,
        **timm_release(pcfg, folder),
    )

    def locate(download: bool = False, progress: bool = True) -> Path | None:
        if hub_id:
            repo, rev = split_repo(hub_id)
            folder = snapshot(repo, rev, download=download, progress=progress, weights=TIMM_FILES)
            return weights_file(folder) if folder else None
        if url:
            path = official_path(url)
            return path if path.is_file() else (fetch_spec(spec, progress=progress)[0] if download else None)
        return None

    def factory(path: Path | None) -> torch.nn.Module:
        overlay = {"file": str(path)} if path else None
        return timm.create_model(
            model_name, pretrained=path is not None, pretrained_cfg_overlay=overlay, num_classes=0
        )

    def fetch(progress: bool = True):
        had = locate() is not None
        path = locate(download=True, progress=progress)
        if path is None:
            raise missing(name, f"timm publishes no weights for {model_name}")
        return path, entry.check(path), ("present" if had else "downloaded") + f", in {path.parent}"

    entry = HubEntry(spec, factory, locate, fetch, origin=f"timm {timm.__version__}")
    return entry


def resolve_timm_dir(name: str, folder: Path) -> HubEntry:
    """A timm ``hf-hub:`` repository in the cache, loaded with timm's ``local-dir:`` loader (its config.json)."""
    import timm

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = config["architecture"]
    with torch.device("meta"):
        model = timm.create_model(f"local-dir:{folder}", pretrained=False, num_classes=0)
    fields = timm_preprocessing(name, model)
    pcfg = config.get("pretrained_cfg", {})
    spec = DetectorSpec(
        name=name,
        dims=descriptor_dims(model, fields["input_size"]),
        weights=name,
        license=pcfg.get("license", "") or config.get("license", "") or card_license(folder),
        paper=pcfg.get("paper_name") or f"timm {arch} ({name})",
        **fields,
        **timm_release(pcfg, folder),
    )

    def locate(download: bool = False, progress: bool = True) -> Path | None:  # already cached
        return weights_file(folder)

    def factory(path: Path | None) -> torch.nn.Module:
        return timm.create_model(f"local-dir:{folder}", pretrained=path is not None, num_classes=0)

    def fetch(progress: bool = True):
        raise missing(name, f"use the hub name itself; cache {hf_cache_dir()}")

    return HubEntry(spec, factory, locate, fetch, origin=f"timm {timm.__version__}", revision=folder.name)
