"""Where a detector's weights are, found offline without building anything (and without importing torch).

Weights resolution order (first hit wins):
1. an explicit file the caller names (``weights_file``);
2. ``$COPYBENCH_WEIGHTS_DIR/<detector name>.<ext>`` (any extension) or
   ``$COPYBENCH_WEIGHTS_DIR/<file name of the official URL>``;
3. the pip package that ships them (spec.weights ``package:<module>[/<relative file>]``);
4. the official URL's file in torch hub's ``checkpoints`` folder, where ``copybench weights fetch`` (or
   ``download=True``) puts it, checked against its published sha256 or the sha256 pinned on first download.
:mod:`copybench.detectors.load` builds the model from what is found here.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .params import entry_parameters
from .registry import DetectorSpec, WeightsMissingError, get_entry, registered_names
from .weightfiles import is_url, official_path

WEIGHTS_DIR_ENV = "COPYBENCH_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of the weights a detector runs with: status is real, random or none (parameter-free)."""

    status: str
    source: str = ""
    sha256: str | None = None


def package_file(ref: str) -> Path | None:
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
        return package_file(spec.weights.removeprefix("package:"))
    if is_url(spec.weights):
        cached = official_path(spec.weights)
        return cached if cached.is_file() else None
    return None


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
        return "random" if entry_parameters(entry) else "none"  # a plugin with unloaded parameters
    if spec.random_only:
        return "random-only"
    try:
        if getattr(entry, "locate", None) is not None:
            return "real" if entry.locate() else "missing"
        return "real" if find_weights(spec) else "missing"
    except WeightsMissingError:
        return "missing"
