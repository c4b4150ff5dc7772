"""Detector registry and built-in detectors (``copybench.detectors``)."""

from __future__ import annotations

from .contract import ContractError, ContractReport, check_detector_contract
from .fetch import BASELINES, fetch_weights, list_weights
from .load import (
    Detector,
    WeightsInfo,
    create_detector,
    describe_detectors,
    find_weights,
    read_state_dict,
    weights_status,
)
from .meta import DetectorMeta, detector_meta
from .registry import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DetectorSpec,
    UnknownDetectorError,
    WeightsMissingError,
    get_spec,
    list_detectors,
    register_detector,
    unregister_detector,
)

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
