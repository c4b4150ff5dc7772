"""Recipe names: ``FAMILY[.TIER]-SIZE``, e.g. ``segmix_hard-s``, ``crop-m``, ``crop.strong-xs``, ``mixed-l``,
and sweeps ``sweep-AXIS-SIZE`` / ``sweep-all-SIZE`` (:mod:`copybench.datasets.sweep`).

The size fixes the number of queries (20% of them distractors) and the most references used from a source.
Tiered families draw each query's tier (light, medium, strong) at random unless the name fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RecipeError

# 2: the segmix family and cutmix follow the study's code (background class, transforms on the source before
# pasting, the clipped CutMix box), autocontrast/contrast statistics without warp padding, 16 embedded backgrounds
RECIPE_VERSION = 2
TIERS = ("light", "medium", "strong")
# size: (queries, max references)
SIZES: dict[str, tuple[int, int]] = {"xs": (40, 20), "s": (150, 50), "m": (1000, 250), "l": (5000, 1000)}

FAMILIES: dict[str, str] = {
    "segmix": "one mask class of the source (background included) pasted where it is onto another photo",
    "segmix_hard": "source jittered/blurred/flipped, one class (background included) resized U(0.75,1), "
    "rotated U(-10,10), pasted anywhere onto an untouched photo",
    "segmix_resized": "as segmix_hard with objects only, resize U(0.5,1), solarize at 0.8, autocontrast p=0.5",
    "cutmix": "CutMix box (Beta(1,1) area, uniform centre clipped at the border) of the source into another "
    "photo, or of another photo into the source",
    "crop": "random crop and resize (area 60-90% / 30-60% / 10-30%)",
    "color": "color jitter, grayscale, solarize, autocontrast",
    "blur_noise": "Gaussian blur and Gaussian noise",
    "jpeg": "JPEG re-encoding (quality 50-80 / 20-50 / 5-20)",
    "rotate": "rotation and perspective warp",
    "flip": "horizontal, vertical and transposing flips",
    "overlay": "DISC21-style AugLy overlays: emoji, text, onto a screenshot, stripes",
    "mixed": "a chain: crop + rotation + color + one of blur/noise, JPEG or overlay, maybe a flip",
    "default": "the demo mix: crop, color, blur/noise, JPEG, rotation, overlays and segment paste",
}
TIERED = frozenset({"crop", "color", "blur_noise", "jpeg", "rotate", "flip", "overlay", "mixed"})
MASKED = frozenset({"segmix", "segmix_hard", "segmix_resized"})
DEFAULT_RECIPE = "default-s"
# the sweep axes (their units and spans: copybench.datasets.sweep.AXES); "all" sweeps every one
SWEEP_AXES = (
    "crop",
    "downscale",
    "jpeg",
    "rotation",
    "blur",
    "colour",
    "perspective",
    "overlay",
    "paste",
    "mix",
)
DISTRACTOR_EVERY = 5  # every 5th query is a distractor: 20%, independent of the other queries


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe name."""

    name: str
    family: str
    tier: str | None
    size: str
    n_queries: int  # a sweep: queries per level
    max_references: int
    axis: str | None = None  # a sweep's axis, or "all"

    @property
    def needs_masks(self) -> bool:
        return self.family in MASKED


def parse_recipe(name: str, n_queries: int | None = None) -> Recipe:
    """Parse ``FAMILY[.TIER]-SIZE``; RecipeError names the recipe and lists the known ones."""
    head, _, size = str(name).rpartition("-")
    family, _, tier = head.partition(".")
    if head.startswith("sweep-"):
        return _parse_sweep(str(name), head.removeprefix("sweep-"), size, n_queries)
    if family not in FAMILIES or size not in SIZES or (tier and (tier not in TIERS or family not in TIERED)):
        known = ", ".join(n for n, _ in list_recipes())
        raise RecipeError(
            f"unknown recipe {name!r}: use FAMILY[.TIER]-SIZE with tiers {'/'.join(TIERS)} for tiered families. "
            f"Known recipes: {known}"
        )
    nq, max_refs = SIZES[size]
    if n_queries is not None:
        if int(n_queries) < 1:
            raise RecipeError(f"n_queries must be >= 1, got {n_queries!r}")
        nq = int(n_queries)
    return Recipe(str(name), family, tier or None, size, nq, max_refs)


def _parse_sweep(name: str, axis: str, size: str, n_queries: int | None) -> Recipe:
    if axis not in (*SWEEP_AXES, "all"):
        raise RecipeError(
            f"unknown sweep axis {axis!r} in {name!r}: use sweep-AXIS-SIZE with AXIS one of "
            f"{', '.join(SWEEP_AXES)}, all"
        )
    if size not in SIZES:
        raise RecipeError(f"unknown size {size!r} in {name!r}: sizes are {', '.join(SIZES)}")
    nq, max_refs = SIZES[size]
    if n_queries is not None:
        if int(n_queries) < 1:
            raise RecipeError(f"n_queries must be >= 1, got {n_queries!r}")
        nq = int(n_queries)
    return Recipe(name, "sweep", None, size, nq, max_refs, axis)


def list_recipes() -> list[tuple[str, str]]:
    """(name, one-line description) of every family at every size."""
    out = []
    for family, desc in FAMILIES.items():
        for size, (nq, refs) in SIZES.items():
            tiers = " (tiers light/medium/strong; FAMILY.TIER-SIZE fixes one)" if family in TIERED else ""
            out.append((f"{family}-{size}", f"{desc}; {nq} queries, <= {refs} references{tiers}"))
    for axis in (*SWEEP_AXES, "all"):
        what = "every axis" if axis == "all" else f"the {axis} axis"
        for size, (nq, refs) in SIZES.items():
            out.append(
                (
                    f"sweep-{axis}-{size}",
                    (
                        f"{what} at 8 severity levels (--levels, --severities); "
                        f"{nq} queries per level, <= {refs} references"
                    ),
                )
            )
    return out
