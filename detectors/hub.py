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
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .registry import DetectorSpec, UnknownDetectorError, WeightsMissingError

log = logging.getLogger(__name__)

HUB_PREFIXES = ("timm:", "open_clip:", "hf-hub:", "hf:")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
# transformers model types whose last_hidden_state starts with a CLS token (the pooler, if any, is not DINO's)
CLS_TOKEN_TYPES = {"vit", "deit", "dinov2", "dinov2_with_registers", "vit_msn", "vit_mae", "dinov3_vit"}


def is_hub_name(name: str) -> bool:
    """Whether ``name`` is a hub name (never a ``module:factory`` plugin)."""
    return name.startswith(HUB_PREFIXES)


@dataclass
class HubEntry:
    """A resolved hub name: spec, factory, where its weights are (offline) and how to fetch them."""

    spec: DetectorSpec
    factory: Callable
    locate: Callable[..., Path | None]  # (download=False, progress=True)
    fetch: Callable[..., tuple[Path, str, str]]
    origin: str = "hub"
    revision: str = ""

    def check(self, path: Path) -> str:
        """sha256 of the weights file, checked against the hub's content address and the lock file's pin (pinned
        on first use, as pip's hash-checking mode: a later revision with other weights is refused, not used).
        A sharded checkpoint's index is checked with every shard it names."""
        revision = self.revision or path.parent.name
        for shard in shards(path):
            file_check(f"{self.spec.name}/{shard.name}", shard, revision)
        return file_check(f"{self.spec.name}/{path.name}", path, revision)


# ------------------------------------------------------------------------------------------------ HF cache
def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def split_repo(ident: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` -> (repo id, revision or None); anything else is a bad name."""
    repo, _, rev = ident.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise UnknownDetectorError(f"hub name needs ORG/NAME[@REVISION], got {ident!r}")
    return repo, rev or None


def cached_snapshot(repo: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of ``repo`` at ``revision`` (a branch or tag through the cache's refs, or a commit) in
    the Hugging Face cache, however it got there and however complete: a cache filled by transformers' or timm's
    own loading holds only the files they read, which huggingface_hub's offline snapshot lookup rejects as
    incomplete. Whether the files a loader needs are there is checked by that loader."""
    from huggingface_hub.file_download import repo_folder_name

    root = hf_cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")
    rev = revision or "main"
    commit = rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None
    if commit is None and (root / "refs" / rev).is_file():
        commit = (root / "refs" / rev).read_text(encoding="utf-8").strip()
    folder = root / "snapshots" / commit if commit else None
    return folder if folder is not None and folder.is_dir() else None


def snapshot(
    repo: str,
    revision: str | None = None,
    *,
    download: bool = False,
    progress: bool = True,
    weights: tuple[str, ...] = (),
) -> Path | None:
    """The cached snapshot folder of ``repo`` (None when absent); with ``download``, fetched first unless it
    already holds weights (``weights``: the file names its loader reads, see _download_patterns), resumable,
    with ``progress`` bars on stderr."""
    from huggingface_hub import snapshot_download

    from .fetch import hub_bars

    folder = cached_snapshot(repo, revision)
    if folder is not None and not download:
        return folder
    if folder is not None and (any((folder / w).is_file() for w in weights) or weights_file(folder)):
        return folder
    if not download:
        return None
    try:
        patterns = _download_patterns(repo, revision, weights)
        with hub_bars(progress) as bars:
            got = snapshot_download(
                repo,
                revision=revision,
                cache_dir=str(hf_cache_dir()),
                allow_patterns=patterns,
                tqdm_class=bars,
            )
    except (OSError, ValueError):
        raise
    except Exception as exc:
        raise OSError(
            f"cannot download {repo} from the Hugging Face hub: {type(exc).__name__}: {exc}"
        ) from exc
    return Path(got)


def _download_patterns(repo: str, revision: str | None, weights: tuple[str, ...] = ()) -> list[str]:
    """Configs plus one weights format (safetensors when published), never the TF / Flax / ONNX copies;
    ``weights``: the file names the loading library reads, in its order of preference (the first published one
    is fetched: a timm repository of a CLIP model also holds open_clip's copy of the weights)."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(repo, revision=revision)
    if (
        not weights and "open_clip_config.json" in files
    ):  # hf-hub: loads it through open_clip (_resolve_hf_hub)
        weights = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    wanted = next((w for w in weights if w in files), None)
    if wanted is None:
        top = any(f.endswith(".safetensors") and "/" not in f for f in files)
        wanted = "*.safetensors" if top else "*.bin"
    return ["*.json", "*.txt", "README.md", wanted]  # README.md: the model card (release date, licence)


def weights_file(folder: Path) -> Path | None:
    """The main weights file of a snapshot (safetensors first; sharded models: their index)."""
    for pattern in ("*.safetensors.index.json", "*.safetensors", "*.bin.index.json", "*.bin", "*.pth"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def shards(path: Path) -> list[Path]:
    """The shard files a ``*.index.json`` checkpoint index names (its ``weight_map``); [] for other files."""

    if not path.name.endswith(".index.json"):
        return []
    names = sorted(set(json.loads(path.read_text(encoding="utf-8")).get("weight_map", {}).values()))
    missing_shards = [n for n in names if not (path.parent / n).is_file()]
    if missing_shards:
        raise FileNotFoundError(f"{path.parent} lacks the shards {', '.join(missing_shards)} its index names")
    return [path.parent / n for n in names]


def file_check(key: str, path: Path, revision: str = "") -> str:
    """sha256 of a hub file, checked against the hub's content address (the HF cache names LFS blobs by their
    sha256) and against its pin in the weights lock, pinned on first use; a mismatch raises WeightsHashError."""
    from copybench.io import file_sha256

    from .fetch import WeightsHashError, pin, verify_file

    digest = file_sha256(path)
    blob = path.resolve().name
    if re.fullmatch(r"[0-9a-f]{64}", blob) and digest != blob:
        raise WeightsHashError(f"{path} has sha256 {digest}, but the hub published {blob}: refusing it")
    if verify_file(key, path, digest) is None:
        pin(key, path, digest, revision=revision)
    return digest


def missing(name: str, what: str) -> WeightsMissingError:
    return WeightsMissingError(
        f"no weights for detector {name!r} offline: {what}; fetch them with `copybench weights fetch {name}` "
        f"(or add --download); caches searched: {hf_cache_dir()}, torch hub checkpoints, ~/.cache/clip"
    )


# ------------------------------------------------------------------------------------------------ resolve
def resolve(name: str, *, download: bool = False, progress: bool = True) -> HubEntry:
    """The detector behind a hub name; an ``hf-hub:`` / ``hf:`` repository must be cached (or downloaded, with
    ``progress`` bars on stderr)."""
    prefix, _, ident = name.partition(":")
    if not ident:
        raise UnknownDetectorError(f"hub name {name!r} names no model")
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


# ------------------------------------------------------------------------------------------------ release dates
ARXIV_ID = re.compile(r"(?:arxiv\.org/(?:abs|pdf)/|arxiv:\s*)(\d{2})(\d{2})\.\d{4,5}", re.IGNORECASE)


def arxiv_release(text: str) -> tuple[str, str]:
    """(YYYY-MM, arXiv URL) when ``text`` cites exactly one arXiv paper (new-style ids encode the month of its
    first version); ("", "") when it cites none or several: which one introduced the weights is not said."""
    found = {(m[1], m[2]) for m in ARXIV_ID.finditer(text or "")}
    if len(found) != 1:
        return "", ""
    (yy, mm), full = found.pop(), ARXIV_ID.search(text)[0]
    ident = re.search(r"\d{4}\.\d{4,5}", full)[0]
    return f"20{yy}-{mm}", f"https://arxiv.org/abs/{ident}"


def card_release(folder: Path | None) -> tuple[str, str]:
    """The release month a cached repository's model card (README.md) states: a ``release_date`` in its YAML
    metadata, else the month of the one arXiv paper it cites; ("", "") otherwise (shown as unknown)."""
    card = folder / "README.md" if folder else None
    if card is None or not card.is_file():
        return "", ""
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(card) or {}
    except (ValueError, OSError) as exc:  # a malformed card: no date rather than a wrong one
        log.debug("unreadable model card %s: %s", card, exc)
        return "", ""
    date = str(meta.get("release_date") or "")
    if re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", date):
        return date[:7], f"{card} (release_date)"
    return arxiv_release(card.read_text(encoding="utf-8", errors="replace"))


def card_license(folder: Path | None) -> str:
    """The ``license`` a cached repository's model card declares in its metadata ("" when none)."""
    card = folder / "README.md" if folder else None
    if card is None or not card.is_file():
        return ""
    from huggingface_hub.repocard import metadata_load

    try:
        value = (metadata_load(card) or {}).get("license") or ""
    except (ValueError, OSError):
        return ""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def release_fields(date: str, source: str) -> dict:
    """DetectorSpec keyword arguments for a release month and where it was read (when the spec records it)."""
    from dataclasses import fields

    out = {"release_date": date}
    if "release_source" in {f.name for f in fields(DetectorSpec)}:
        out["release_source"] = source
    return out


def spec_fields(data: dict, strict: bool = True) -> dict:
    """DetectorSpec preprocessing fields from a library's eval config; ``strict``: refuse (ValueError) what the
    harness's batch path cannot reproduce, else describe it as closely as the fields allow (the library route).

    ``data``: size (int or (H, W)), mode (shortest / squash / center), crop_pct, interpolation, mean, std.
    """
    size = data["size"]
    if isinstance(size, (tuple, list)):
        if size[0] != size[1] and strict:
            raise ValueError(
                f"non-square input size {tuple(size)} is not supported (the harness crops squares)"
            )
        size = size[0]
    mode, crop_pct = data["mode"], float(data.get("crop_pct") or 1.0)
    if mode == "squash" and crop_pct == 1.0:
        resize = "square"
    elif mode in ("shortest", "center") or not strict:
        resize = "short_crop"
    else:
        raise ValueError(f"resize mode {mode!r} with crop_pct {crop_pct} cannot be reproduced by the harness")
    return {
        "input_size": int(size),
        "resize": resize,
        "crop_pct": min(max(crop_pct, 1e-3), 1.0),
        "interpolation": data["interpolation"],
        "mean": tuple(float(v) for v in data["mean"]),
        "std": tuple(float(v) for v in data["std"]),
    }


# ------------------------------------------------------------------------------------------------ library route
# family suffix of a hub model whose images go through its library's own transform, one by one, in the decode
# workers (the harness's batch path cannot reproduce it); part of the spec, so of the descriptor cache key
TRANSFORM_SUFFIX = "-transform"
_TRANSFORMS: dict[str, Callable] = {}
PROBE_SIZES = ((97, 131), (480, 301), (640, 427), (37, 53))  # (W, H): portrait, landscapes, an upscale
PROBE_ATOL = 1e-5


def probe_images() -> list:
    """Deterministic photo-like probes (smooth colour fields with fine noise) of several sizes and aspects."""
    import numpy as np
    from PIL import Image

    rng, out = np.random.default_rng(12), []
    for w, h in PROBE_SIZES:
        low = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        noise = rng.integers(-12, 13, (h, w, 3))
        out.append(Image.fromarray(np.clip(np.asarray(low, dtype=np.int64) + noise, 0, 255).astype(np.uint8)))
    return out


_PROBED: dict[str, str] = {}  # fields + transform (its repr states every setting) -> the probe's verdict


def reproduces(fields: dict, transform: Callable) -> str:
    """Empty when the batch path built from ``fields`` gives the library transform's pixels (within 1e-5 after
    normalisation) on every probe image, else how it differs; remembered for this process (a name is resolved
    several times per run, and a probe costs a few hundred milliseconds)."""
    key = json.dumps(fields, sort_keys=True, default=str) + "|" + repr(transform)
    if key not in _PROBED:
        _PROBED[key] = _probe(fields, transform)
    return _PROBED[key]


def _probe(fields: dict, transform: Callable) -> str:
    from copybench.preprocess import Preprocess, pil_to_tensor

    pre = Preprocess(DetectorSpec(name="probe", dims=1, **fields))
    for img in probe_images():
        want, got = transform(img), pre(pil_to_tensor(img))
        where = f"on a {img.width}x{img.height} probe image"
        if tuple(got.shape) != tuple(want.shape):
            return f"the batch path gives {tuple(got.shape)}, the library {tuple(want.shape)} {where}"
        diff = float((got - want).abs().max())
        if diff > PROBE_ATOL:
            return f"the batch path differs from the library's transform by {diff:.2g} {where}"
    return ""


def library_version(library: str) -> str:
    """``"timm 1.0.9"``: the library (already imported by its resolver) and the version installed."""
    import importlib

    return f"{library} {importlib.import_module(library).__version__}"


def preprocessing(name: str, family: str, fields: Callable[[bool], dict], transform: Callable) -> dict:
    """Spec fields (family and library version included) for ``name``: the harness's batch path when it
    reproduces the library's ``transform`` exactly (checked on probe images), else the library route:
    ``transform`` itself runs on each decoded image, and the fields only describe the config (``fields(False)``).
    Either way the library builds the model, and on the library route its transform makes the pixels too."""
    try:
        batch = fields(True)
        why = reproduces(batch, transform)
    except ValueError as exc:
        why = str(exc)
    library = library_version(family)
    if not why:
        return {**batch, "family": family, "library": library}
    log.info("%s: images go through %s's own transform (%s)", name, family, why)
    _TRANSFORMS[name] = transform
    return {**fields(False), "family": family + TRANSFORM_SUFFIX, "library": library}


def library_transform(spec) -> Callable | None:
    """The library transform of a hub spec on the library route (resolving its name again in a fresh process),
    None for every other spec."""
    if not spec.family.endswith(TRANSFORM_SUFFIX):
        return None
    if spec.name not in _TRANSFORMS:
        resolve(spec.name)
    if spec.name not in _TRANSFORMS:
        raise ValueError(f"{spec.name}: its library's transform is no longer needed; rebuild the detector")
    return _TRANSFORMS[spec.name]
