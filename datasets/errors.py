"""Errors raised while building or importing datasets; every message names the bad value or file."""

from __future__ import annotations


class RecipeError(ValueError):
    """An unknown or malformed recipe name."""


class SourceError(ValueError):
    """A source of images is missing, malformed or holds too few usable images."""


class MaskError(ValueError):
    """Masks are unavailable, or a mask does not fit its image."""
