"""Detector registry: specs, the ``@register_detector`` decorator, lookup and plugins.

Contract. A detector is a factory registered with a frozen :class:`DetectorSpec`. The factory takes the path of
a weights file (or ``None`` for a randomly initialised model) and returns a ``torch.nn.Module`` whose forward
maps a preprocessed batch ``(B, 3, H, W)`` (float32, already resized and normalised by the harness from the
spec) to raw descriptors: ``(B, D)`` for ``output="global"`` or ``(B, T, D)`` for ``output="tokens"``
(token 0 is the global/CLS token). The harness, not the detector, builds the preprocessing and L2-normalises.

Built-in detectors are known from a torch-free catalog (``builtin.py``: spec, factory module, parameter count),
which enters them with :func:`add_builtin` when the package is imported (its ``__init__`` imports it); their
factory modules register with the same decorator and are imported only when a detector is built.
Plugins register from other packages through the entry-point group ``copybench.detectors`` (loaded lazily, on
the first lookup of a name that is not built in) or ad hoc as ``module:factory``. Hub names (``timm:``,
``open_clip:``, ``hf-hub:``, ``hf:``) resolve on demand through the resolver ``hub.py`` registers
(:func:`register_resolver`) and are never enumerated.

This module is the bottom of ``copybench.detectors``: it imports nothing of copybench but the stdlib-only
``codehash``; everything else (catalog, hub, loaders) imports it and plugs in, so arrows point one way.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.machinery
import importlib.util
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
UNIT_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_POLICIES = ("square", "short_crop", "short")
RGB_CONVERSIONS = ("viewer", "convert")  # see DetectorSpec.rgb_conversion
ENTRY_POINT_GROUP = "copybench.detectors"
PLUGINS_ENV = "COPYBENCH_PLUGINS"
HEX = "0123456789abcdef"


class UnknownDetectorError(KeyError):
    """No detector of that name is registered (message names it and suggests close names)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class WeightsMissingError(FileNotFoundError):
    """The detector needs weights that cannot be found offline."""


@dataclass(frozen=True)
class DetectorSpec:
    """Everything the harness needs to preprocess, run and report a detector."""

    name: str
    dims: int
    input_size: int
    # square: squash to size x size; short_crop: short side then centre crop; short: short side only
    resize: str = "square"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # where real weights come from: "package:<module>[/<file>]", an https URL, "hub:<repo>:<name>",
    # "random" for a model that is random-init by design, or "" if parameter-free
    weights: str = ""
    sha256: str | None = None  # of the official weights file, when published
    license: str = ""
    paper: str = ""
    output: str = "global"  # "global" (B, D) or "tokens" (B, T, D)
    family: str = ""
    # short_crop only: the short side goes to floor(input_size / crop_pct) before the centre crop (timm's
    # convention; torchvision's ImageNet eval is 256 -> 224, crop_pct 0.875). 1.0 = resize straight to input_size.
    crop_pct: float = 1.0
    # "tensor": torchvision resize of the uint8 tensor (batchable, GPU-capable); "pil": Pillow's resize, as
    # the original evaluation scripts run it (protocols other than native; docs/PROTOCOLS.md)
    resize_backend: str = "tensor"
    # centre-crop offset: "round" as torchvision and timm, "floor" as transformers' image processors (an odd
    # margin then leaves its extra pixel at the bottom/right); a one-pixel shift changes every descriptor
    crop_offset: str = "round"
    # how a file becomes RGB: "viewer" (upright by its EXIF orientation, transparency over white, 16-bit
    # rescaled) or "convert" (Pillow's Image.convert("RGB") on the stored pixels, as the original evaluation
    # scripts decode: the protocols other than native; docs/PROTOCOLS.md)
    rgb_conversion: str = "viewer"
    # metadata only, never part of the cache key (see to_dict): YYYY-MM the model was first published (its
    # paper's first arXiv version, or its weights' release) and the URL that date is read from; "" when unknown
    release_date: str = ""
    release_source: str = ""
    # hub models only: the library, with its installed version, that builds the model and its transform
    # ("timm 1.0.9"); part of the cache key, so a library upgrade that changes either never reuses old descriptors
    library: str = ""

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(
                f"detector {self.name!r}: resize must be one of {RESIZE_POLICIES}, got {self.resize!r}"
            )
        if self.output not in ("global", "tokens"):
            raise ValueError(
                f"detector {self.name!r}: output must be 'global' or 'tokens', got {self.output!r}"
            )
        if self.dims <= 0 or self.input_size <= 0:
            raise ValueError(f"detector {self.name!r}: dims and input_size must be positive")
        if self.crop_offset not in ("round", "floor"):
            raise ValueError(
                f"detector {self.name!r}: crop_offset must be 'round' or 'floor', got {self.crop_offset!r}"
            )
        if self.resize_backend not in ("tensor", "pil"):
            raise ValueError(
                f"detector {self.name!r}: resize_backend must be 'tensor' or 'pil', got {self.resize_backend!r}"
            )
        if self.rgb_conversion not in RGB_CONVERSIONS:
            raise ValueError(
                f"detector {self.name!r}: rgb_conversion must be one of {RGB_CONVERSIONS}, "
                f"got {self.rgb_conversion!r}"
            )
        if self.sha256 is not None and not (
            isinstance(self.sha256, str) and len(self.sha256) == 64 and set(self.sha256) <= set(HEX)
        ):
            raise ValueError(
                f"detector {self.name!r}: sha256 must be the file's full sha256, 64 hex digits in lower case, "
                f"got {self.sha256!r}"
            )
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"detector {self.name!r}: crop_pct must be in (0, 1], got {self.crop_pct!r}")

    @property
    def resize_size(self) -> int:
        """Short-side size before the centre crop (``short_crop``), else ``input_size``."""
        if self.resize != "short_crop":
            return self.input_size
        return math.floor(self.input_size / self.crop_pct + 1e-9)  # timm's rule: 224 / 0.9 -> 248

    @property
    def parameter_free(self) -> bool:
        return self.weights == ""

    @property
    def random_only(self) -> bool:
        return self.weights == "random"

    def to_dict(self) -> dict:
        out = asdict(self)
        if (
            out["resize_backend"] == "tensor"
        ):  # written only when set, so native specs and cache keys stay as before
            del out["resize_backend"]
        if out["crop_offset"] == "round":  # likewise
            del out["crop_offset"]
        if out["rgb_conversion"] == "viewer":  # likewise
            del out["rgb_conversion"]
        if not out["library"]:  # likewise: built-in and plugin detectors name no library
            del out["library"]
        # metadata: results carry it under detector.meta, descriptors do not depend on it
        del out["release_date"], out["release_source"]
        return out


Factory = Callable[[Path | None], "object"]


@dataclass
class _Entry:
    """A registered detector. A built-in is known from its catalog entry (``builtin.py``, no torch) before its
    factory module is imported: ``module`` names that module, imported on the first use of ``factory``, and
    ``params`` is the catalog's static parameter count (tests count the architecture's and compare)."""

    spec: DetectorSpec
    _factory: Factory | None
    origin: str = field(default="builtin")
    module: str = ""
    params: int | None = None

    @property
    def factory(self) -> Factory:
        if self._factory is None:
            module_name, _, attr = self.module.partition(":")
            module = importlib.import_module(
                module_name
            )  # a built-in's @register_detector fills this entry in
            if self._factory is None and attr:  # a declared plugin names its factory: "module:function"
                self._factory = getattr(module, attr)
            if self._factory is None:
                raise LookupError(
                    f"built-in detector {self.spec.name!r}: {self.module} registers no factory for it"
                )
        return self._factory


_REGISTRY: dict[str, _Entry] = {}
_PLUGINS_LOADED = False
# name prefix -> the function resolving names that start with it (hub.py registers the hub prefixes)
_RESOLVERS: dict[str, Callable[[str], object]] = {}


def register_detector(spec: DetectorSpec, *, origin: str = "builtin") -> Callable[[Factory], Factory]:
    """Decorator, the one way to register a detector: ``@register_detector(DetectorSpec(...))`` on a factory.

    Registering the same definition again (same spec, same factory code: a notebook cell run twice, a module
    reloaded) replaces the entry; a different definition under a name already taken is an error naming who
    has it. A factory defined in ``__main__`` is keyed in the descriptor cache by its code and the code it
    uses (see :mod:`copybench.detectors.codehash`)."""
    from .codehash import factory_digest

    def wrap(factory: Factory) -> Factory:
        old = _REGISTRY.get(spec.name)
        if old is None:
            _REGISTRY[spec.name] = _Entry(spec, factory, origin)
        elif old.spec == spec and (
            old._factory is None  # a built-in's factory arriving for its catalog entry
            or factory_digest(old._factory) == factory_digest(factory)  # the same definition again
        ):
            old._factory = factory
        else:
            raise ValueError(
                f"detector {spec.name!r} is already registered (by {old.origin}) with another definition; "
                "unregister_detector(name) first to replace it"
            )
        factory.copybench_spec = spec  # lets "module:factory" find the spec of a decorated factory
        return factory

    return wrap


def unregister_detector(name: str) -> None:
    """Remove a registered detector (tests and interactive plugin development); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def registered_names() -> list[str]:
    """Names registered so far, without loading plugins."""
    return list(_REGISTRY)


def add_builtin(spec: DetectorSpec, module: str, params: int) -> None:
    """Enter a built-in from the torch-free catalog (``builtin.py``, imported with the package); ``module``, its
    factory's module, is imported only when the detector is built (its ``@register_detector`` fills it in)."""
    _REGISTRY.setdefault(spec.name, _Entry(spec, None, "builtin", module, params))


def declare_detector(spec: DetectorSpec, factory: str, *, params: int | None = None) -> None:
    """Register a detector by its spec and where its factory is (``"package.module:function"``), imported only
    when the detector is built: a plugin's package then lists, shows ``--help`` and reads its metadata without
    importing torch or its model code (keep the spec module free of them, as mteb keeps ``ModelMeta`` apart).
    ``params``: the model's parameter count, shown by ``list detectors`` (unknown when not given).

    Declaring the same spec and factory again is a no-op; another definition under a taken name is an error."""
    module, sep, attr = factory.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"detector {spec.name!r}: factory must be 'module:function', got {factory!r}")
    old = _REGISTRY.get(spec.name)
    if old is not None and not (old.spec == spec and old.module == factory):
        raise ValueError(
            f"detector {spec.name!r} is already registered (by {old.origin}) with another definition; "
            "unregister_detector(name) first to replace it"
        )
    if old is None:
        _REGISTRY[spec.name] = _Entry(spec, None, f"declared {module}", factory, params)


def register_resolver(prefixes: tuple[str, ...], resolve: Callable[[str], object]) -> None:
    """Resolve names starting with one of ``prefixes`` with ``resolve(name)`` (an entry with ``spec`` and
    ``factory``), before plugins and ``module:factory`` are tried; such names are never enumerated."""
    for prefix in prefixes:
        _RESOLVERS[prefix] = resolve


def plugin_allowed(ep: metadata.EntryPoint) -> bool:
    """Whether an entry point's distribution may load: all of them, unless ``$COPYBENCH_PLUGINS`` lists the
    distributions allowed (comma-separated; empty: none), as the test suite does to stay apart from plugins
    a user installed."""
    allowed = os.environ.get(PLUGINS_ENV)
    if allowed is None:
        return True
    names = {_normalise(n) for n in allowed.split(",") if n.strip()}
    dist = getattr(ep, "dist", None)
    return dist is not None and _normalise(dist.metadata["Name"] or "") in names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()  # PEP 503: My_Plugin == my-plugin


def _load_plugins() -> None:
    """Import every entry point of the plugin group; a broken plugin is logged, never fatal."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not plugin_allowed(ep):
            log.debug("detector plugin %s (%s) not loaded: not in $%s", ep.name, ep.value, PLUGINS_ENV)
            continue
        try:
            before = set(_REGISTRY)
            ep.load()
            for name in set(_REGISTRY) - before:
                _REGISTRY[name].origin = f"plugin {ep.value}"
        except Exception as exc:  # noqa: BLE001  (a third-party bug must not take the harness down)
            log.warning("detector plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)


def _import_from_cwd(module_name: str) -> ModuleType:
    """Import ``module_name`` from the import path, else its top-level package from the working folder.

    The README's plugin is a folder ``my_detectors/`` beside the user: ``python -m`` and notebooks have the
    working folder on ``sys.path``, the ``copybench`` console script does not. Only this one package is
    looked up there (``sys.path`` is left alone, so a stray file in the working folder never shadows a
    library elsewhere); once it is in ``sys.modules`` its submodules and relative imports resolve as usual."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        if exc.name != top or top in sys.modules:
            raise
        found = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        if found is None or found.loader is None:
            raise
        module = importlib.util.module_from_spec(found)
        sys.modules[top] = module
        try:
            found.loader.exec_module(module)
        except BaseException:
            del sys.modules[top]
            raise
        log.debug("imported %s from the working folder %s", top, found.origin)
        return importlib.import_module(module_name)


def _declared_by(module_name: str, name: str, before: set[str]) -> _Entry | None:
    """The detector ``name`` when ``module_name`` declared it (``declare_detector`` with a factory in that
    package), just now or on an earlier import; None otherwise."""
    entry = _REGISTRY.get(name)
    if entry is None:
        return None
    factory_module = entry.module.partition(":")[0]
    if name in set(_REGISTRY) - before:
        entry.origin = f"ad hoc {module_name}"
    elif not (factory_module == module_name or factory_module.startswith(module_name + ".")):
        return None
    return entry


def _load_ad_hoc(name: str) -> _Entry:
    """``module:factory``: import it (from the import path, or the working folder); a decorated factory
    brings its own spec."""
    module_name, _, attr = name.partition(":")
    before = set(_REGISTRY)
    try:
        module = _import_from_cwd(module_name)
        declared = None if hasattr(module, attr) else _declared_by(module_name, attr, before)
        if declared is not None:  # "package:name" where the package declares that detector
            return declared
        factory = getattr(module, attr)
    except ModuleNotFoundError as exc:
        raise UnknownDetectorError(
            f"cannot load detector {name!r}: {exc} (a `module:factory` name is imported from the Python path "
            f"or from a package or module `{module_name.partition('.')[0]}` in the working folder, "
            f"{os.getcwd()})"
        ) from exc
    except (ImportError, AttributeError) as exc:
        raise UnknownDetectorError(f"cannot load detector {name!r}: {exc}") from exc
    spec = getattr(factory, "copybench_spec", None)
    if spec is None:
        raise UnknownDetectorError(
            f"{name!r} is not a registered detector factory: decorate it with @register_detector(DetectorSpec(...))"
        )
    for added in set(_REGISTRY) - before:  # registered by this import: not a built-in
        _REGISTRY[added].origin = f"ad hoc {module_name}"
    return _REGISTRY.get(spec.name) or _Entry(spec, factory, f"ad hoc {name}")


def get_entry(name: str) -> _Entry:
    """Look up one detector by name (built-in, plugin, or ``module:factory``)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    resolve = next((r for prefix, r in _RESOLVERS.items() if name.startswith(prefix)), None)
    if resolve is not None:  # hub names, never "module:factory"
        return resolve(name)
    if ":" in name and not name.startswith(("http:", "https:")):
        return _load_ad_hoc(name)
    _load_plugins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = close_names(name, list(_REGISTRY))
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise UnknownDetectorError(f"unknown detector {name!r}{hint} (see `copybench list detectors`)")


def close_names(name: str, names: list[str], n: int = 5) -> list[str]:
    """Up to ``n`` registered names a typo most likely meant, the closest first (difflib's similarity ratio),
    then names sharing its family prefix (``dino_...``) to fill the list."""
    import difflib

    close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    family = name.split("_")[0]
    close += sorted(m for m in names if family and m.startswith(family) and m not in close)
    return close[:n]


def get_spec(name: str) -> DetectorSpec:
    """The spec of a registered detector."""
    return get_entry(name).spec


def list_detectors(pattern: str = "*") -> list[str]:
    """Sorted names of registered detectors (plugins included) matching a shell-style pattern."""
    _load_plugins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
