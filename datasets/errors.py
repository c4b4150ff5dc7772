"""Errors raised while building, importing or reading datasets; every message names the bad value or file."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset folder is missing, malformed or of an unknown schema (message names the file)."""


class RecipeError(ValueError):
    """An unknown or malformed recipe name."""


class SourceError(ValueError):
    """A source of images is missing, malformed or holds too few usable images."""


class MaskError(ValueError):
    """Masks are unavailable, or a mask does not fit its image."""
