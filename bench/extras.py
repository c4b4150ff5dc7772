"""Optional dependencies and the extras that install them.

copybench's core (datasets without overlays, the offline detectors, evaluation, tables) installs with its plain
requirements; what only some users need comes with an extra. :func:`require` imports such a module or raises
:class:`MissingExtraError` naming the extra to install, so a missing library reads as what to do, not as a bare
``No module named ...``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module -> (extra, what needs it)
EXTRAS = {
    "augly": ("overlays", "overlay copies (emoji, text, screenshots) in dataset recipes"),
    "h5py": ("h5", "ISC HDF5 descriptor files (score-h5)"),
    "open_clip": ("hub", "CLIP detectors and open_clip: hub names"),
    "transformers": ("hub", "hf:ORG/NAME detectors"),
    "diffusers": ("study", "the data-size study's DDPMs"),
    "accelerate": ("study", "the data-size study's DDPMs"),
    "ray": ("ray", "--engine ray"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional library is not installed; the message names the extra that installs it."""


def missing_extra_message(module: str) -> str | None:
    """The install hint for a missing top-level module, or None when no extra provides it."""
    top = module.split(".")[0]
    if top not in EXTRAS:
        return None
    extra, why = EXTRAS[top]
    return f"{top} is not installed; {why} need(s) it: pip install 'copybench[{extra}]'"


def require(module: str) -> ModuleType:
    """``import module``, or MissingExtraError naming the extra when the library itself is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc.name or module) if exc.name == module.split(".")[0] else None
        if message is None:
            raise
        raise MissingExtraError(message, name=exc.name) from exc
