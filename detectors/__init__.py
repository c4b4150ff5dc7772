"""Detector registry and built-in detectors (``copybench.detectors``).

Importing this package does not import torch: the registry, the built-in catalog, metadata and weights lookup
are torch-free, so ``copybench list detectors`` starts at once. The names that build or check models
(``create_detector``, ``Detector``, ``check_detector_contract``, ``read_state_dict``) load on first access.

Layers, each importing only those below it (``tests/test_import_cycles.py`` checks there is no cycle):
``registry`` (specs, errors, the registry; stdlib only) and ``codehash``; ``builtin`` (the catalog);
``bars``, ``weightfiles`` (lock, checks, downloads); ``hub_transforms``, ``hub_core``, ``hub_prep``; the hub
adapters ``hub_timm``, ``hub_open_clip``, ``hub_transformers``; ``hub`` (name resolution); ``params``,
``locate``, ``meta``, ``fetch`` (the weights commands); ``load`` and ``contract`` (torch), and the built-ins'
factory modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# the catalog and the hub resolvers enter the registry on import: the registry, at the bottom, imports neither
from . import builtin, hub  # noqa: F401
from .fetch import BASELINES, fetch_weights, list_weights
from .locate import WeightsInfo, find_weights, weights_status
from .meta import DetectorMeta, describe_detectors, detector_meta
from .registry import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DetectorSpec,
    UnknownDetectorError,
    WeightsMissingError,
    declare_detector,
    get_spec,
    list_detectors,
    register_detector,
    unregister_detector,
)

if TYPE_CHECKING:
    from .contract import ContractError, ContractReport, check_detector_contract
    from .load import Detector, create_detector, read_state_dict

# name -> module holding it; these import torch, so they load when first used
_LAZY = {
    "ContractError": "contract",
    "ContractReport": "contract",
    "check_detector_contract": "contract",
    "Detector": "load",
    "create_detector": "load",
    "read_state_dict": "load",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASELINES",
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ContractError",
    "ContractReport",
    "Detector",
    "DetectorMeta",
    "DetectorSpec",
    "UnknownDetectorError",
    "WeightsInfo",
    "WeightsMissingError",
    "check_detector_contract",
    "create_detector",
    "declare_detector",
    "describe_detectors",
    "detector_meta",
    "fetch_weights",
    "find_weights",
    "get_spec",
    "list_detectors",
    "list_weights",
    "read_state_dict",
    "register_detector",
    "unregister_detector",
    "weights_status",
]
