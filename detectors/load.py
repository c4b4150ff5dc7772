"""Turning a registered name into a ready model: weights, provenance, device placement.

Weights are found as :mod:`copybench.detectors.locate` says (an explicit file, ``$COPYBENCH_WEIGHTS_DIR``, the
pip package that ships them, the managed copy of the official file). With nothing found,
:class:`WeightsMissingError` says which file is missing and where to put it, unless the caller explicitly allows
random weights, in which case the provenance says ``random`` everywhere.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import torch

from copybench.io import file_sha256

from .locate import (  # noqa: F401  (WEIGHTS_DIR_ENV, weights_status: re-exported, this module's names before)
    WEIGHTS_DIR_ENV,
    WeightsInfo,
    find_weights,
    missing_message,
    package_file,
    weights_status,
)
from .registry import DetectorSpec, WeightsMissingError, get_entry
from .weightfiles import WeightsHashError, fetch_spec, is_url, official_path, verify_file

log = logging.getLogger(__name__)


def download_weights(spec: DetectorSpec, progress: bool = True) -> Path:
    """Fetch the official file into the managed folder (resuming, sha256 checked or pinned)."""
    return fetch_spec(spec, progress=progress)[0]


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
                name=spec.name,
                params=count,
                dims=spec.dims,
                input_size=spec.input_size,
                output=spec.output,
                license=spec.license,
                paper=spec.paper,
                source=spec.weights,
                weights_hash=self.weights.sha256 or "",
                release_date=spec.release_date,
                origin="",
                release_source=spec.release_source,
            )
        return entry_meta(self._entry, self.weights.sha256)


def create_detector(
    name: str,
    *,
    weights_file: str | Path | None = None,
    allow_random: bool = False,
    download: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Detector:
    """Build a detector in eval mode on ``device`` with real weights, or random ones only when allowed;
    ``download``: fetch missing official weights first, with ``progress`` bars on stderr."""
    entry = resolve_entry(name, download, progress)
    spec = entry.spec
    if spec.parameter_free:
        path, info = None, WeightsInfo("none")
    elif spec.random_only and weights_file is None:
        path, info = None, WeightsInfo("random", "random init by design")
    elif getattr(entry, "locate", None) is not None and weights_file is None:
        path, info = _hub_weights(entry, download, allow_random, progress)
    else:
        path = find_weights(spec, weights_file)
        if path is None and download:
            path = download_weights(spec, progress)
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


def resolve_entry(name: str, download: bool = False, progress: bool = True):
    """The registry entry; a hub repository not cached yet is downloaded first when asked (``progress``: its
    bars on stderr)."""
    if download and name.startswith(("hf-hub:", "hf:")):
        from .hub import resolve

        return resolve(name, download=True, progress=progress)
    return get_entry(name)


def _hub_weights(
    entry, download: bool, allow_random: bool, progress: bool = True
) -> tuple[Path | None, WeightsInfo]:
    """Weights of a hub model from its library's cache (fetched when asked), checked and pinned."""
    from .hub import missing

    path = entry.locate(download, progress)
    if path is None:
        if not allow_random:
            raise missing(entry.spec.name, "not found in the caches")
        return None, WeightsInfo("random")
    source = f"{entry.spec.weights}@{entry.revision}" if entry.revision else str(path)
    return path, WeightsInfo("real", source, entry.check(path))


def _checked_info(spec: DetectorSpec, path: Path) -> WeightsInfo:
    """Provenance of a found file; the managed copy of an official file and the file a pip package ships must
    pass their sha256 check."""
    digest = file_sha256(path)
    if spec.weights.startswith("package:") and spec.sha256 and digest != spec.sha256:
        if path == package_file(spec.weights.removeprefix("package:")):
            raise WeightsHashError(
                f"{path} has sha256 {digest}, but the file {spec.name!r} loads from its package must hash to "
                f"{spec.sha256}: refusing it (edited or replaced; reinstall the package)"
            )
        log.warning("%s: %s is not the packaged file (sha256 %s)", spec.name, path, digest[:12])
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
