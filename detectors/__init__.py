"""Detector registry and built-in detectors (``copybench.detectors``)."""

from __future__ import annotations

from .load import Detector, WeightsInfo, create_detector, find_weights, weights_status
from .registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DetectorSpec,
    UnknownDetectorError,
    WeightsMissingError,
    get_spec,
    list_detectors,
    register_detector,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Detector",
    "DetectorSpec",
    "UnknownDetectorError",
    "WeightsInfo",
    "WeightsMissingError",
    "create_detector",
    "find_weights",
    "get_spec",
    "list_detectors",
    "register_detector",
    "weights_status",
]
