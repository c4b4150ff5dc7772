"""Imports every built-in detector module so their ``@register_detector`` decorators run."""

from __future__ import annotations

from . import clip, dino, pixel, sscd, timm_models  # noqa: F401
