"""Sweep recipes, ``sweep-AXIS-SIZE`` and ``sweep-all-SIZE``: one transform axis at K severity levels.

Every level is made from the same items: item ``j`` (its source image, whether it is a distractor, and every
random choice of the axis such as a crop's position or a rotation's direction) is drawn from (seed, j) only, and
only the severity changes from level to level. The size fixes the number of items per level (20% distractors,
from held-out sources, as in every recipe). Query ``i`` of a sweep is item ``i % n`` of level
``(i // n) % K`` of axis ``i // (n K)``, so a query can still be regenerated alone.

Severities are in the axis's own unit (kept area, JPEG quality, degrees, ...) and go from mild to severe;
``position`` maps a severity to [0, 1] along the axis's default span, so areas under curves of different axes
and of custom severities are on one scale. Parameters are plain JSON (``params`` column), rendered by
:mod:`copybench.datasets.render` as every other recipe's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import RecipeError
from .params import (
    TEXT_FONTS,
    PoolView,
    _about_center,
    _base,
    _cover,
    _r,
    _rounded,
    _s,
    _t,
    homography,
    query_rng,
)
from .recipes import DISTRACTOR_EVERY, SWEEP_AXES, Recipe

DEFAULT_LEVELS = 8


@dataclass(frozen=True)
class Axis:
    """One transform axis: its unit, its default span (mild to severe) and the range severities may take."""

    name: str
    unit: str
    mild: float
    severe: float
    lo: float
    hi: float
    integer: bool = False
    about: str = ""

    def position(self, severity: float) -> float:
        """Severity mapped to [0, 1] along the default span (0 = mild end, 1 = severe end; may exceed it)."""
        return (float(severity) - self.mild) / (self.severe - self.mild)

    def defaults(self, k: int) -> tuple[float, ...]:
        """K severities evenly spaced over the default span, mild first."""
        values = np.linspace(self.mild, self.severe, k)
        return tuple(round(float(v)) if self.integer else round(float(v), 6) for v in values)


AXES: dict[str, Axis] = {
    a.name: a
    for a in (
        Axis("crop", "kept area", 1.0, 0.05, 0.01, 1.0, about="a crop keeping this fraction of the source area"),
        Axis("downscale", "side scale", 1.0, 0.1, 0.03, 1.0, about="the copy shrunk to this fraction of its side"),
        Axis("jpeg", "JPEG quality", 95, 5, 1, 100, integer=True, about="re-encoded as JPEG at this quality"),
        Axis("rotation", "degrees", 0.0, 180.0, 0.0, 180.0, about="rotated by this angle (direction per item)"),
        Axis("blur", "sigma (px)", 0.0, 8.0, 0.0, 20.0, about="Gaussian blur of this sigma in output pixels"),
        Axis("colour", "strength", 0.0, 1.0, 0.0, 1.0,
             about="brightness, contrast, saturation and hue shifted jointly, up to x1.7 / x0.3 and 180 deg"),
        Axis("perspective", "corner shift", 0.0, 0.3, 0.0, 0.45,
             about="perspective warp moving each corner up to this fraction of the side"),
        Axis("overlay", "coverage", 0.0, 0.8, 0.0, 0.95,
             about="an AugLy emoji or text block whose box covers this fraction of the image"),
        Axis("paste", "pasted area", 1.0, 0.05, 0.01, 1.0,
             about="the source shrunk to this fraction of the image area and pasted into another photo"),
        Axis("mix", "step", 0.0, 1.0, 0.0, 1.0,
             about="crop and JPEG stacked: kept area 1.0 to 0.05 and quality 95 to 5 at once"),
    )
}  # fmt: skip
ALL = "all"


@dataclass(frozen=True)
class Sweep:
    """A sweep's axes and, per axis, its severities (mild first)."""

    axes: tuple[str, ...]
    severities: dict[str, tuple[float, ...]]

    @property
    def n_levels(self) -> int:
        return len(self.severities[self.axes[0]])

    def to_json(self) -> dict:
        return {"axes": list(self.axes), "severities": {a: list(v) for a, v in self.severities.items()}}


def axis_names() -> str:
    return ", ".join([*AXES, ALL])


def make_sweep(axis: str, levels: int | None = None, severities: list[float] | None = None) -> Sweep:
    """The sweep of ``axis`` (or ``all``): ``levels`` default severities, or the given ``severities``."""
    if axis != ALL and axis not in AXES:
        raise RecipeError(f"unknown sweep axis {axis!r}: valid axes are {axis_names()}")
    axes = tuple(AXES) if axis == ALL else (axis,)
    if severities is not None:
        if levels is not None:
            raise RecipeError("give either --levels or --severities, not both")
        if axis == ALL:
            raise RecipeError(
                "--severities needs a single-axis sweep (sweep-AXIS-SIZE): axes have different units"
            )
        return Sweep(axes, {axis: _checked(AXES[axis], severities)})
    k = DEFAULT_LEVELS if levels is None else int(levels)
    if k < 2:
        raise RecipeError(f"a sweep needs at least 2 levels, got {levels!r} (default {DEFAULT_LEVELS})")
    return Sweep(axes, {a: AXES[a].defaults(k) for a in axes})


def _checked(ax: Axis, severities: list[float]) -> tuple[float, ...]:
    values = []
    for v in severities:
        v = float(v)
        if not (ax.lo <= v <= ax.hi) or math.isnan(v):
            raise RecipeError(
                f"severity {v:g} is outside the {ax.name} axis's range: {ax.unit} from {ax.lo:g} to {ax.hi:g} "
                f"(default span {ax.mild:g} to {ax.severe:g})"
            )
        values.append(round(v) if ax.integer else round(v, 6))
    distinct = sorted(set(values), key=ax.position)  # mild first, whatever order they were given in
    if len(distinct) < 2:
        raise RecipeError(f"a sweep needs at least 2 distinct severities, got {list(severities)!r}")
    return tuple(distinct)


def locate(sweep: Sweep, n_items: int, index: int) -> tuple[str, int, int]:
    """(axis, level, item) of query ``index``."""
    k = sweep.n_levels
    return sweep.axes[index // (n_items * k)], (index // n_items) % k, index % n_items


def sample_sweep_query(recipe: Recipe, sweep: Sweep, seed: int, index: int, view: PoolView) -> dict:
    """Parameters of query ``index`` of a sweep (JSON-ready, rounded); severity recorded under ``sweep``."""
    axis, level, item = locate(sweep, recipe.n_queries, index)
    severity = sweep.severities[axis][level]
    pick = query_rng(seed, item, "sweep")  # the item's source: the same for every axis and level
    distractor = item % DISTRACTOR_EVERY == DISTRACTOR_EVERY - 1
    pool_ids = view.held_out if distractor else view.references
    source = pool_ids[int(pick.integers(len(pool_ids)))]
    p = _base(f"sweep_{axis}", "", source, distractor, view)
    rng = query_rng(seed, item, f"sweep_{axis}")  # the item's choices on this axis: the same at every level
    _APPLY[axis](p, rng, view, severity)
    p["sweep"] = {
        "axis": axis,
        "level": level,
        "severity": severity,
        "position": AXES[axis].position(severity),
    }
    return _rounded(p)


def _crop(p: dict, rng: np.random.Generator, view: PoolView, area: float) -> None:
    h, w = view.sizes[p["source"]]
    u, v = rng.uniform(0, 1, 2)  # where the crop sits, as a fraction of the room left: fixed per item
    side = math.sqrt(area)
    cw, ch = w * side, h * side
    x0, y0 = u * (w - cw), v * (h - ch)
    oh, ow = p["out"]
    p["crop"] = [x0, y0, x0 + cw, y0 + ch]
    p["H"] = _s(ow / cw, oh / ch) @ _t(-x0, -y0)


def _downscale(p: dict, rng: np.random.Generator, view: PoolView, scale: float) -> None:
    oh, ow = p["out"]
    small = [max(8, round(oh * scale)), max(8, round(ow * scale))]
    p["H"] = _s(small[1] / ow, small[0] / oh) @ p["H"]
    p["out"] = small


def _jpeg(p: dict, rng: np.random.Generator, view: PoolView, quality: float) -> None:
    p["jpeg"] = int(quality)


def _rotation(p: dict, rng: np.random.Generator, view: PoolView, degrees: float) -> None:
    p["angle"] = degrees * (1 if rng.random() < 0.5 else -1)
    p["H"] = _about_center(_r(p["angle"]), p["out"]) @ p["H"]


def _blur(p: dict, rng: np.random.Generator, view: PoolView, sigma: float) -> None:
    if sigma > 0:  # kernel of +-3 sigma: the level's kernel is fixed, so its queries share a render batch
        p["blur"] = [2 * math.ceil(3 * sigma) + 1, sigma]


def _colour(p: dict, rng: np.random.Generator, view: PoolView, strength: float) -> None:
    signs = rng.choice([-1.0, 1.0], size=4)  # each item's direction (darker or brighter, ...) at every level
    b, c, s, hue = signs * np.array([0.7, 0.7, 1.0, 0.5]) * strength
    p["jitter"] = [1 + b, 1 + c, 1 + s, hue]


def _perspective(p: dict, rng: np.random.Generator, view: PoolView, shift: float) -> None:
    oh, ow = p["out"]
    corners = np.array([[0, 0], [ow, 0], [ow, oh], [0, oh]], dtype=np.float64)
    direction = rng.choice([-1.0, 1.0], size=(4, 2)) * rng.uniform(0.5, 1.0, size=(4, 2))
    p["H"] = homography(corners, corners + direction * shift * np.array([ow, oh])) @ p["H"]


def _overlay(p: dict, rng: np.random.Generator, view: PoolView, coverage: float) -> None:
    oh, ow = p["out"]
    emoji, where = bool(rng.random() < 0.5), rng.uniform(0, 1, 2)
    ident, font = int(rng.integers(1 << 30)), TEXT_FONTS[int(rng.integers(len(TEXT_FONTS)))]
    chars = rng.integers(1, 95, size=(16, 48))  # drawn at every level, so the other draws stay aligned
    if coverage <= 0:
        return
    if emoji:  # AugLy's emoji is square, its side emoji_size x the image height
        size = min(1.0, math.sqrt(coverage * ow / oh), ow / oh)
        x, y = where[0] * max(0.0, 1 - size * oh / ow), where[1] * (1 - size)
        p["overlay"] = {"kind": "emoji", "emoji": ident, "size": size, "opacity": 1.0, "x": x, "y": y}
        return
    # text: full-width lines of 8% of the short side; AugLy spaces lines by the font's pixels + 5
    font_px = int(min(oh, ow) * 0.08)
    lines = max(1, min(len(chars), round(coverage * oh / (font_px + 5))))
    y = where[1] * max(0.0, 1 - lines * (font_px + 5) / oh)
    p["overlay"] = {"kind": "text", "font": font, "chars": chars[:lines].tolist(), "size": 0.08, "opacity": 1.0,
                    "color": [int(v) for v in rng.integers(0, 256, 3)], "x": 0.0, "y": y}  # fmt: skip


def _paste(p: dict, rng: np.random.Generator, view: PoolView, area: float) -> None:
    others = [b for b in view.backgrounds if b != p["source"]]
    p["bg"] = others[int(rng.integers(len(others)))]
    p["H_bg"] = _cover(rng, view.sizes[p["bg"]], p["out"])
    u, v = rng.uniform(0, 1, 2)
    oh, ow = p["out"]
    side = math.sqrt(area)
    p["paste_at"] = [u * ow * (1 - side), v * oh * (1 - side)]
    p["H"] = _t(*p["paste_at"]) @ _s(side, side) @ p["H"]


def _mix(p: dict, rng: np.random.Generator, view: PoolView, step: float) -> None:
    crop, jpeg = AXES["crop"], AXES["jpeg"]
    _crop(p, rng, view, crop.mild + step * (crop.severe - crop.mild))
    _jpeg(p, rng, view, round(jpeg.mild + step * (jpeg.severe - jpeg.mild)))


_APPLY = {"crop": _crop, "downscale": _downscale, "jpeg": _jpeg, "rotation": _rotation, "blur": _blur,
          "colour": _colour, "perspective": _perspective, "overlay": _overlay, "paste": _paste,
          "mix": _mix}  # fmt: skip
assert tuple(_APPLY) == tuple(AXES) == SWEEP_AXES
