"""Detector registry and built-in detectors (``copybench.detectors``)."""

from __future__ import annotations

from .contract import ContractError, ContractReport, check_detector_contract
from .load import (
    Detector,
    WeightsInfo,
    create_detector,
    describe_detectors,
    find_weights,
    read_state_dict,
    weights_status,
)
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
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ContractError",
    "ContractReport",
    "Detector",
    "DetectorSpec",
    "UnknownDetectorError",
    "WeightsInfo",
    "WeightsMissingError",
    "check_detector_contract",
    "create_detector",
    "describe_detectors",
    "find_weights",
    "get_spec",
    "list_detectors",
    "read_state_dict",
    "register_detector",
    "unregister_detector",
    "weights_status",
]
