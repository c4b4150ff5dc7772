"""The library route's transforms: hub models whose images go through their library's own transform.

A hub adapter that finds the harness's batch path cannot reproduce its library's transform (see
:mod:`copybench.detectors.hub_prep`) remembers that transform here under the detector's name, and gives the
spec the family ``<library>-transform``; the harness's preprocessing (``copybench.preprocess``) asks
:func:`library_transform` for it. This module sits below both: it imports only the registry, which resolves a
hub name again (through the resolver ``hub.py`` registers) when a fresh process has not seen it yet.
"""

from __future__ import annotations

from collections.abc import Callable

from .registry import get_entry

# family suffix of a hub model whose images go through its library's own transform, one by one, in the decode
# workers (the harness's batch path cannot reproduce it); part of the spec, so of the descriptor cache key
TRANSFORM_SUFFIX = "-transform"
_TRANSFORMS: dict[str, Callable] = {}


def remember_transform(name: str, transform: Callable) -> None:
    """Record the library transform the images of hub detector ``name`` go through."""
    _TRANSFORMS[name] = transform


def library_transform(spec) -> Callable | None:
    """The library transform of a hub spec on the library route (resolving its name again in a fresh process),
    None for every other spec."""
    if not spec.family.endswith(TRANSFORM_SUFFIX):
        return None
    if spec.name not in _TRANSFORMS:
        get_entry(spec.name)
    if spec.name not in _TRANSFORMS:
        raise ValueError(f"{spec.name}: its library's transform is no longer needed; rebuild the detector")
    return _TRANSFORMS[spec.name]
