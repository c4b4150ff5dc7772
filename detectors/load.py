"""Turning a registered name into a ready model: weights resolution, provenance, device placement.

Weights resolution order (first hit wins):
1. an explicit file the caller names (``weights_file``);
2. ``$COPYBENCH_WEIGHTS_DIR/<detector name>.<ext>`` (any extension) or
   ``$COPYBENCH_WEIGHTS_DIR/<file name of the official URL>``;
3. the pip package that ships them (spec.weights ``package:<module>[/<relative file>]``);
4. the official URL's file in torch hub's ``checkpoints`` folder, where ``copybench weights fetch`` (or
   ``download=True``) puts it, checked against its published sha256 or the sha256 pinned on first download.
With nothing found, :class:`WeightsMissingError` says which file is missing and where to put it, unless the
caller explicitly allows random weights, in which case the provenance says ``random`` everywhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from copybench.io import file_sha256

from .fetch import fetch_spec, is_url, official_path, verify_file
from .registry import DetectorSpec, WeightsMissingError, get_entry, list_detectors, registered_names

WEIGHTS_DIR_ENV = "COPYBENCH_WEIGHTS_DIR"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of the weights a detector runs with: status is real, random or none (parameter-free)."""

    status: str
    source: str = ""
    sha256: str | None = None


def _package_file(ref: str) -> Path | None:
    """``module[/relative/file]`` inside an installed package, or None when it is not installed."""
    module, _, rel = ref.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    if rel:
        path = root / rel
        return path if path.exists() else None
    candidates = sorted(
        p for ext in ("*.pth", "*.pt", "*.onnx", "*.safetensors", "*.bin") for p in root.rglob(ext)
    )
    return candidates[0] if candidates else None


def _official_name(spec: DetectorSpec) -> str | None:
    return spec.weights.rsplit("/", 1)[-1] if is_url(spec.weights) else None


def find_weights(spec: DetectorSpec, weights_file: str | Path | None = None) -> Path | None:
    """The first weights file found offline for ``spec``, or None."""
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise WeightsMissingError(f"weights file for {spec.name!r} not found: {path}")
        return path
    wdir = os.environ.get(WEIGHTS_DIR_ENV)
    if wdir:
        # "sscd_disc_mixup.*" must not pick up "sscd_disc_mixup.onnx_int8.onnx", which belongs to a longer name
        longer = [n for n in registered_names() if n.startswith(spec.name + ".")]
        names = [
            p
            for p in Path(wdir).glob(f"{spec.name}.*")
            if p.is_file() and not any(p.name.startswith(n + ".") for n in longer)
        ]
        official = _official_name(spec)
        if official and (Path(wdir) / official).is_file():
            names.append(Path(wdir) / official)
        if names:
            return min(names)
    if spec.weights.startswith("package:"):
        return _package_file(spec.weights.removeprefix("package:"))
    if is_url(spec.weights):
        cached = official_path(spec.weights)
        return cached if cached.is_file() else None
    return None


def download_weights(spec: DetectorSpec, progress: bool = True) -> Path:
    """Fetch the official file into the managed folder (resuming, sha256 checked or pinned)."""
    return fetch_spec(spec, progress=progress)[0]


def missing_message(spec: DetectorSpec) -> str:
    """Where a user should put the weights of ``spec``, naming the command that fetches them."""
    where = spec.weights
    if where.startswith("package:"):
        hint = f"install the pip package that ships them ({where.removeprefix('package:').split('/')[0]})"
    elif is_url(where):
        hint = (
            f"fetch them with `copybench weights fetch {spec.name}` (or add --download), which downloads "
            f"{where} into {official_path(where).parent}; or put the file in ${WEIGHTS_DIR_ENV}/ or pass "
            f"--weights {spec.name}=FILE"
        )
    else:
        hint = f"put the weights file at ${WEIGHTS_DIR_ENV}/{spec.name}.<ext> (official source: {where})"
    return (
        f"no weights for detector {spec.name!r}: {hint}; "
        f"or pass --allow-random to run it with random weights (results are then marked 'random')"
    )


def weights_status(name: str) -> str:
    """``real``, ``missing``, ``random-only`` (random init by design) or ``none`` (parameter-free); builds nothing."""
    entry = get_entry(name)
    spec = entry.spec
    if spec.parameter_free:
        from .meta import cached_parameters

        return "random" if cached_parameters(entry) else "none"  # a plugin with unloaded parameters
    if spec.random_only:
        return "random-only"
    try:
        if getattr(entry, "locate", None) is not None:
            return "real" if entry.locate() else "missing"
        return "real" if find_weights(spec) else "missing"
    except WeightsMissingError:
        return "missing"


class Detector(torch.nn.Module):
    """A registered model with its spec and weights provenance; forward returns raw (unnormalised) output."""

    def __init__(
        self,
        spec: DetectorSpec,
        model: torch.nn.Module,
        weights: WeightsInfo,
        code: str | None = None,
        entry=None,
    ):
        super().__init__()
        self.spec, self.model, self.weights, self._entry = spec, model, weights, entry
        self.code = (
            code  # sha256 of a plugin factory's source file (None for built-ins): part of the cache key
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def meta(self):
        """The detector's :class:`~copybench.detectors.meta.DetectorMeta` (computed on first use)."""
        from .meta import DetectorMeta, entry_meta

        if self._entry is None:  # a Detector built by hand: what its spec says
            count = sum(p.numel() for p in self.model.parameters())
            spec = self.spec
            return DetectorMeta(
                spec.name,
                count,
                spec.dims,
                spec.input_size,
                spec.output,
                spec.license,
                spec.paper,
                spec.weights,
                self.weights.sha256 or "",
                spec.release_date,
                "",
            )
        return entry_meta(self._entry, self.weights.sha256)


def create_detector(
    name: str,
    *,
    weights_file: str | Path | None = None,
    allow_random: bool = False,
    download: bool = False,
    device: str | torch.device = "cpu",
) -> Detector:
    """Build a detector in eval mode on ``device`` with real weights, or random ones only when allowed."""
    entry = _resolve(name, download)
    spec = entry.spec
    if spec.parameter_free:
        path, info = None, WeightsInfo("none")
    elif spec.random_only and weights_file is None:
        path, info = None, WeightsInfo("random", "random init by design")
    elif getattr(entry, "locate", None) is not None and weights_file is None:
        path, info = _hub_weights(entry, download, allow_random)
    else:
        path = find_weights(spec, weights_file)
        if path is None and download:
            path = download_weights(spec)
        if path is None and not allow_random:
            raise WeightsMissingError(missing_message(spec))
        info = _checked_info(spec, path) if path else WeightsInfo("random")
    model = entry.factory(path)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"detector {name!r}: factory returned {type(model).__name__}, expected a torch.nn.Module"
        )
    if info.status == "none" and any(True for _ in model.parameters()):
        # declared parameter-free, yet the model has parameters nobody loaded: random init, and results say so
        info = WeightsInfo("random", "random init (the detector declares no weights)")
    return Detector(spec, model, info, plugin_code_digest(entry.factory), entry).eval().to(device)


def _resolve(name: str, download: bool):
    """The registry entry; a hub repository not cached yet is downloaded first when asked."""
    if download and name.startswith(("hf-hub:", "hf:")):
        from .hub import resolve

        return resolve(name, download=True)
    return get_entry(name)


def _hub_weights(entry, download: bool, allow_random: bool) -> tuple[Path | None, WeightsInfo]:
    """Weights of a hub model from its library's cache (fetched when asked), checked and pinned."""
    from .hub import missing

    path = entry.locate(download)
    if path is None:
        if not allow_random:
            raise missing(entry.spec.name, "not found in the caches")
        return None, WeightsInfo("random")
    source = f"{entry.spec.weights}@{entry.revision}" if entry.revision else str(path)
    return path, WeightsInfo("real", source, entry.check(path))


def _checked_info(spec: DetectorSpec, path: Path) -> WeightsInfo:
    """Provenance of a found file; the managed copy of an official file must pass its sha256 check."""
    digest = file_sha256(path)
    if is_url(spec.weights):
        if path.resolve() == official_path(spec.weights).resolve():
            verify_file(spec.weights, path, digest, spec.sha256)  # raises WeightsHashError
        elif spec.sha256 and digest != spec.sha256:  # a user's own file may be a converted copy: say so
            log.warning("%s: %s is not the official file (sha256 %s)", spec.name, path, digest[:12])
    return WeightsInfo("real", str(path), digest)


def plugin_code_digest(factory) -> str | None:
    """A plugin factory's code hash (its file, or its definition when made in ``__main__``, e.g. a notebook),
    part of the descriptor cache key, so editing a plugin never reuses its old descriptors."""
    from .codehash import code_digest

    return code_digest(factory)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding ``<root>/code/`` and ``<root>/constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") for n in zf.namelist())


def read_state_dict(path: str | Path) -> dict:
    """A checkpoint as a dict, without running pickled code.

    safetensors files load with safetensors; TorchScript archives (OpenAI's CLIP ``.pt``) through ``torch.jit.load``,
    keeping only their tensors; anything else through ``torch.load(weights_only=True)``, which refuses pickled
    objects other than tensors and plain containers.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if _is_torchscript(path):
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a clear message beats pickle's
        raise ValueError(
            f"{path}: not a loadable weights file (state dict, safetensors or TorchScript): {exc}"
        ) from exc


def unwrap_state_dict(state: dict, keys: tuple[str, ...] = ("state_dict", "model")) -> dict:
    """The tensor dict inside a training checkpoint (``{"state_dict": ...}``, ``{"model": ...}``)."""
    for key in keys:
        if key in state and isinstance(state[key], dict):
            return state[key]
    return state


def strip_prefix(state: dict, prefix: str) -> dict:
    """Keys starting with ``prefix``, without it (checkpoints saved from DDP add ``module.``)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def describe_detectors(pattern: str = "*") -> list[dict]:
    """One row per registered detector matching ``pattern``: what ``copybench list detectors`` shows.

    ``weights`` is the status (real, missing, random, random-only, none); ``source`` where real weights come
    from; ``params``, ``paper``, ``release_date``, ``weights_hash``: the detector's metadata (``DetectorMeta``).
    """
    from .meta import entry_meta

    rows = []
    for name in list_detectors(pattern):
        entry = get_entry(name)
        spec = entry.spec
        meta = entry_meta(entry)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "dims": spec.dims,
                "output": spec.output,
                "input_size": spec.input_size,
                "resize": spec.resize,
                "resize_size": spec.resize_size,
                "interpolation": spec.interpolation,
                "weights": weights_status(name),
                "source": spec.weights or "none (parameter-free)",
                "license": spec.license,
                "origin": entry.origin,
                "params": meta.params,
                "paper": spec.paper,
                "release_date": spec.release_date,
                "weights_hash": meta.weights_hash,
            }
        )
    return rows
