"""Any model of the ecosystem as a detector, by name, with its own published preprocessing.

Names (resolved on demand, never enumerated by ``list_detectors``):

- ``timm:NAME`` (``timm:vit_small_patch16_224.augreg_in21k``): timm's pretrained cfg and ``resolve_data_config``;
  the descriptor is timm's pooled pre-logits output (``num_classes=0``).
- ``open_clip:ARCH/TAG`` (``open_clip:ViT-B-32/laion2b_s34b_b79k``): open_clip's model and pretrained cfgs merged
  into its ``PreprocessCfg`` as ``create_model_and_transforms`` does; the descriptor is ``encode_image``.
- ``hf-hub:ORG/NAME[@REV]``: a Hugging Face repository loaded through timm (``config.json`` with an
  ``architecture``) or open_clip (``open_clip_config.json``), as those libraries resolve ``hf-hub:`` names.
- ``hf:ORG/NAME[@REV]``: a transformers image model (``AutoModel`` + ``AutoImageProcessor``). ViT-style models
  (a CLS token first) give tokens, CLS first, so ``--similarity split`` works; other models give their pooled output.

Weights are read offline from the caches users already have: the Hugging Face cache (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), torch hub's checkpoints folder, and open_clip's
``~/.cache/clip``. Nothing is downloaded unless asked (``copybench weights fetch NAME`` or ``--download``).
The resize runs as each library runs it: with Pillow for timm and open_clip (their transforms resize PIL images),
with torchvision tensors for transformers' torchvision-backed image processors. That batch path is used only when
it reproduces the library's transform on probe images (:func:`preprocessing`); otherwise the library's own
transform runs on each decoded image (the "library route": family ``<library>-transform``).

Layout: this module resolves names through the adapters (``hub_timm``, ``hub_open_clip``, ``hub_transformers``),
imported when a name of theirs is first resolved; they build on :mod:`~copybench.detectors.hub_core` (entry,
cache, files, model cards) and :mod:`~copybench.detectors.hub_prep` (preprocessing), never on this module. The
names of those lower modules are re-exported here, where they were first offered. Importing this module (the
package ``__init__`` does) registers the hub prefixes with the registry, so ``get_spec("timm:...")`` resolves.
"""

from __future__ import annotations

import json
from pathlib import Path

from .hub_core import (
    ARXIV_ID,
    CLS_TOKEN_TYPES,
    WEIGHT_SUFFIXES,
    HubEntry,
    arxiv_release,
    cached_snapshot,
    card_license,
    card_release,
    check_hub_name,
    check_revision,
    confined,
    file_check,
    hf_cache_dir,
    missing,
    release_fields,
    shards,
    snapshot,
    split_repo,
    weights_file,
)
from .hub_prep import (
    PROBE_ATOL,
    PROBE_SIZES,
    library_version,
    preprocessing,
    probe_images,
    reproduces,
    spec_fields,
)
from .hub_transforms import TRANSFORM_SUFFIX, library_transform
from .registry import UnknownDetectorError, register_resolver

__all__ = [  # hub_core, hub_prep and hub_transforms names: this module offered them before they moved down
    "ARXIV_ID",
    "CLS_TOKEN_TYPES",
    "HUB_PREFIXES",
    "PROBE_ATOL",
    "PROBE_SIZES",
    "TRANSFORM_SUFFIX",
    "WEIGHT_SUFFIXES",
    "HubEntry",
    "arxiv_release",
    "cached_snapshot",
    "card_license",
    "card_release",
    "check_hub_name",
    "check_revision",
    "confined",
    "fetch",
    "file_check",
    "hf_cache_dir",
    "is_hub_name",
    "library_transform",
    "library_version",
    "missing",
    "preprocessing",
    "probe_images",
    "release_fields",
    "reproduces",
    "resolve",
    "shards",
    "snapshot",
    "spec_fields",
    "split_repo",
    "weights_file",
]  # fmt: skip

HUB_PREFIXES = ("timm:", "open_clip:", "hf-hub:", "hf:")


def is_hub_name(name: str) -> bool:
    """Whether ``name`` is a hub name (never a ``module:factory`` plugin)."""
    return name.startswith(HUB_PREFIXES)


# ------------------------------------------------------------------------------------------------ resolve
def resolve(name: str, *, download: bool = False, progress: bool = True) -> HubEntry:
    """The detector behind a hub name; an ``hf-hub:`` / ``hf:`` repository must be cached (or downloaded, with
    ``progress`` bars on stderr)."""
    check_hub_name(name)
    prefix, _, ident = name.partition(":")
    if prefix == "timm":
        from .hub_timm import resolve_timm

        return resolve_timm(name, ident)
    if prefix == "open_clip":
        from .hub_open_clip import resolve_open_clip

        return resolve_open_clip(name, ident)
    repo, revision = split_repo(ident)
    folder = snapshot(repo, revision, download=download, progress=progress)
    if folder is None:
        raise missing(name, f"{repo} is not in the Hugging Face cache")
    if prefix == "hf":
        from .hub_transformers import resolve_transformers

        return resolve_transformers(name, folder)
    return _resolve_hf_hub(name, folder)


def _resolve_hf_hub(name: str, folder: Path) -> HubEntry:
    """``hf-hub:``: open_clip when the repository has ``open_clip_config.json``, timm when its config names an
    architecture."""

    if (folder / "open_clip_config.json").is_file():
        from .hub_open_clip import resolve_open_clip_dir

        return resolve_open_clip_dir(name, folder)
    config = folder / "config.json"
    if config.is_file() and "architecture" in json.loads(config.read_text(encoding="utf-8")):
        from .hub_timm import resolve_timm_dir

        return resolve_timm_dir(name, folder)
    raise UnknownDetectorError(
        f"{name}: {folder} is neither a timm repository (config.json with 'architecture') nor an open_clip one "
        f"(open_clip_config.json); for a transformers model use hf:{name.partition(':')[2]}"
    )


def fetch(name: str, *, progress: bool = True) -> tuple[Path, str, str]:
    """Download what ``name`` needs into its library's cache: (weights path, sha256, what happened)."""
    check_hub_name(name)
    prefix, _, ident = name.partition(":")
    if prefix in ("hf-hub", "hf"):
        repo, revision = split_repo(ident)
        had = snapshot(repo, revision) is not None
        folder = snapshot(repo, revision, download=True, progress=progress)
        entry = resolve(name)
        path = entry.locate()
        if path is None:
            raise missing(name, f"{folder} holds no weights file")
        return path, entry.check(path), ("present" if had else "downloaded") + f", revision {folder.name}"
    return resolve(name).fetch(progress=progress)


register_resolver(HUB_PREFIXES, resolve)  # hub names resolve on demand, never enumerated
