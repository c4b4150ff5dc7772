"""A hub model's preprocessing: its library's eval config as DetectorSpec fields, and whether the harness's batch
path reproduces the library's transform (checked on probe images) or the library route must run it.

Used by the hub adapters; the transforms of models on the library route are remembered in
:mod:`copybench.detectors.hub_transforms`, which the harness's preprocessing reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from .hub_transforms import TRANSFORM_SUFFIX, remember_transform
from .registry import DetectorSpec

log = logging.getLogger(__name__)


def spec_fields(data: dict, strict: bool = True) -> dict:
    """DetectorSpec preprocessing fields from a library's eval config; ``strict``: refuse (ValueError) what the
    harness's batch path cannot reproduce, else describe it as closely as the fields allow (the library route).

    ``data``: size (int or (H, W)), mode (shortest / squash / center), crop_pct, interpolation, mean, std.
    """
    size = data["size"]
    if isinstance(size, (tuple, list)):
        if size[0] != size[1] and strict:
            raise ValueError(
                f"non-square input size {tuple(size)} is not supported (the harness crops squares)"
            )
        size = size[0]
    mode, crop_pct = data["mode"], float(data.get("crop_pct") or 1.0)
    if mode == "squash" and crop_pct == 1.0:
        resize = "square"
    elif mode in ("shortest", "center") or not strict:
        resize = "short_crop"
    else:
        raise ValueError(f"resize mode {mode!r} with crop_pct {crop_pct} cannot be reproduced by the harness")
    return {
        "input_size": int(size),
        "resize": resize,
        "crop_pct": min(max(crop_pct, 1e-3), 1.0),
        "interpolation": data["interpolation"],
        "mean": tuple(float(v) for v in data["mean"]),
        "std": tuple(float(v) for v in data["std"]),
    }


# ------------------------------------------------------------------------------------------------ library route
PROBE_SIZES = ((97, 131), (480, 301), (640, 427), (37, 53))  # (W, H): portrait, landscapes, an upscale
PROBE_ATOL = 1e-5


def probe_images() -> list:
    """Deterministic photo-like probes (smooth colour fields with fine noise) of several sizes and aspects."""
    import numpy as np
    from PIL import Image

    rng, out = np.random.default_rng(12), []
    for w, h in PROBE_SIZES:
        low = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        noise = rng.integers(-12, 13, (h, w, 3))
        out.append(Image.fromarray(np.clip(np.asarray(low, dtype=np.int64) + noise, 0, 255).astype(np.uint8)))
    return out


_PROBED: dict[str, str] = {}  # fields + transform (its repr states every setting) -> the probe's verdict


def reproduces(fields: dict, transform: Callable) -> str:
    """Empty when the batch path built from ``fields`` gives the library transform's pixels (within 1e-5 after
    normalisation) on every probe image, else how it differs; remembered for this process (a name is resolved
    several times per run, and a probe costs a few hundred milliseconds)."""
    key = json.dumps(fields, sort_keys=True, default=str) + "|" + repr(transform)
    if key not in _PROBED:
        _PROBED[key] = _probe(fields, transform)
    return _PROBED[key]


def _probe(fields: dict, transform: Callable) -> str:
    from copybench.preprocess import Preprocess, pil_to_tensor

    pre = Preprocess(DetectorSpec(name="probe", dims=1, **fields))
    for img in probe_images():
        want, got = transform(img), pre(pil_to_tensor(img))
        where = f"on a {img.width}x{img.height} probe image"
        if tuple(got.shape) != tuple(want.shape):
            return f"the batch path gives {tuple(got.shape)}, the library {tuple(want.shape)} {where}"
        diff = float((got - want).abs().max())
        if diff > PROBE_ATOL:
            return f"the batch path differs from the library's transform by {diff:.2g} {where}"
    return ""


def library_version(library: str) -> str:
    """``"timm 1.0.9"``: the library (already imported by its resolver) and the version installed."""
    import importlib

    return f"{library} {importlib.import_module(library).__version__}"


def preprocessing(name: str, family: str, fields: Callable[[bool], dict], transform: Callable) -> dict:
    """Spec fields (family and library version included) for ``name``: the harness's batch path when it
    reproduces the library's ``transform`` exactly (checked on probe images), else the library route:
    ``transform`` itself runs on each decoded image, and the fields only describe the config (``fields(False)``).
    Either way the library builds the model, and on the library route its transform makes the pixels too."""
    try:
        batch = fields(True)
        why = reproduces(batch, transform)
    except ValueError as exc:
        why = str(exc)
    library = library_version(family)
    if not why:
        return {**batch, "family": family, "library": library}
    log.info("%s: images go through %s's own transform (%s)", name, family, why)
    remember_transform(name, transform)
    return {**fields(False), "family": family + TRANSFORM_SUFFIX, "library": library}
