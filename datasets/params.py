"""Per-query parameter sampling: every query's parameters come from its own seed, (dataset seed, index).

Parameters are plain JSON (stored in the ``params`` column) and the renderer reads only them, so a query can be
regenerated alone and the same seed gives the same parameters on CPU or GPU. Floats are rounded before use, so
the stored values are exactly the applied ones. ``H`` maps source pixels to output pixels (3x3 homography).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .recipes import DISTRACTOR_EVERY, TIERED, TIERS, Recipe

DEFAULT_MIX = ("crop", "color", "blur_noise", "jpeg", "rotate", "overlay", "paste")
OVERLAYS = ("emoji", "text", "screenshot", "stripes")
TEXT_FONTS = (
    "NotoSans-Regular.ttf",
    "Montserrat-Bold.ttf",
    "OpenSans-Bold.ttf",
    "Impact.ttf",
    "Raleway-Black.ttf",
)


@dataclass(frozen=True)
class PoolView:
    """What sampling needs to know of a pool: ids, sizes, and per mask class its box and outline points.

    ``segments`` holds every class of at least 1% of the image, the background (label 0) included: the study's
    segmix and segmix_hard add the background as a class. ``outlines`` holds, per class, the corners of the
    first and last mask pixel of every row: their convex hull is the class's, so the box of the class after any
    rotation and scaling is exact.
    """

    references: tuple[str, ...]
    held_out: tuple[str, ...]
    backgrounds: tuple[str, ...]
    sizes: dict  # id -> (h, w)
    segments: dict  # id -> {label: (x0, y0, x1, y1)}
    outlines: dict = field(default_factory=dict)  # id -> {label: (n, 2) float64 points, source pixels}

    @classmethod
    def of(cls, pool) -> PoolView:
        sizes, segments, outlines = {}, {}, {}
        for s in (*pool.references, *pool.held_out, *pool.backgrounds):
            sizes[s.id] = tuple(s.rgb.shape[:2])
            segments[s.id], outlines[s.id] = {}, {}
            for k in s.labels(background=True):
                ys, xs = np.nonzero(s.mask == k)
                segments[s.id][k] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                outlines[s.id][k] = _row_outline(ys, xs)
        ids = lambda items: tuple(s.id for s in items)
        return cls(ids(pool.references), ids(pool.held_out), ids(pool.backgrounds), sizes, segments, outlines)

    def foreground(self, sid: str) -> list[int]:
        """The object classes of a source (label 0, the background, excluded), sorted."""
        return sorted(k for k in self.segments[sid] if k != 0)


def _row_outline(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Corners of the leftmost and rightmost pixel of every row of a mask (np.nonzero order: row-major)."""
    rows, first = np.unique(ys, return_index=True)
    last = np.append(first[1:], len(xs)) - 1
    x0, x1, y = xs[first].astype(np.float64), xs[last].astype(np.float64) + 1, rows.astype(np.float64)
    return np.concatenate([np.stack([x, yy], 1) for x in (x0, x1) for yy in (y, y + 1)])


def query_rng(seed: int, index: int, family: str) -> np.random.Generator:
    """The generator of one query: seeded from (seed, index, family) only."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), zlib.crc32(family.encode())])


def out_size(h: int, w: int) -> list[int]:
    """Output (h, w) by the source's aspect: landscape, portrait or square buckets."""
    a = w / h
    return [240, 320] if a > 1.2 else [320, 240] if a < 1 / 1.2 else [288, 288]


def sample_query(recipe: Recipe, seed: int, index: int, view: PoolView, paste_ok: bool) -> dict:
    """Parameters of query ``index`` (JSON-ready, rounded)."""
    rng = query_rng(seed, index, recipe.family)
    distractor = index % DISTRACTOR_EVERY == DISTRACTOR_EVERY - 1
    family = recipe.family
    if family == "default":
        family = str(rng.choice(DEFAULT_MIX))
        if family == "paste":
            family = "segmix_hard" if paste_ok else "cutmix"
    tier = (recipe.tier or str(rng.choice(TIERS))) if family in TIERED else ""
    masked = family.startswith("segmix")
    pool_ids = view.held_out if distractor else view.references
    if masked:  # the source must hold an object, even where the background class may be the one pasted
        pool_ids = tuple(i for i in pool_ids if view.foreground(i)) or pool_ids
    source = pool_ids[int(rng.integers(len(pool_ids)))]
    p = _base(family, tier, source, distractor, view)
    BUILDERS[family](p, rng, view)
    return _rounded(p)


def _base(family: str, tier: str, source: str, distractor: bool, view: PoolView) -> dict:
    h, w = view.sizes[source]
    return {
        "family": family, "tier": tier, "source": source, "distractor": distractor, "out": out_size(h, w),
        "fg": source, "H": _stretch((h, w), out_size(h, w)), "label": None, "box": None, "bg": None,
        "H_bg": None, "H_pre": None, "jitter": None, "jitter_order": None, "gray": False, "solarize": None,
        "autocontrast": False,
        "blur": None, "noise": None, "overlay": None, "jpeg": None,
    }  # fmt: skip


# --- geometry (numpy float64, y down) ----------------------------------------------------------------------


def _t(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def _s(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def _r(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def _stretch(src_hw, out_hw) -> np.ndarray:
    return _s(out_hw[1] / src_hw[1], out_hw[0] / src_hw[0])


def _about_center(m: np.ndarray, out_hw) -> np.ndarray:
    cx, cy = out_hw[1] / 2, out_hw[0] / 2
    return _t(cx, cy) @ m @ _t(-cx, -cy)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking 4 points ``src`` to ``dst`` (direct linear solve)."""
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        b += [u, v]
    h = np.linalg.solve(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def _perspective(rng: np.random.Generator, out_hw, d: float) -> np.ndarray:
    h, w = out_hw
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    moved = corners + rng.uniform(-d, d, size=(4, 2)) * np.array([w, h])
    return homography(corners, moved)


def _cover(rng: np.random.Generator, src_hw, out_hw) -> np.ndarray:
    """A random zoomed crop of a background that covers the whole output."""
    scale = max(out_hw[1] / src_hw[1], out_hw[0] / src_hw[0]) * rng.uniform(1.0, 1.3)
    ox = rng.uniform(0, src_hw[1] * scale - out_hw[1])
    oy = rng.uniform(0, src_hw[0] * scale - out_hw[0])
    return _t(-ox, -oy) @ _s(scale, scale)


# --- families ----------------------------------------------------------------------------------------------

_CROP_AREA = {"light": (0.6, 0.9), "medium": (0.3, 0.6), "strong": (0.1, 0.3)}
_JITTER = {"light": (0.2, 0.2, 0.1, 0.02), "medium": (0.4, 0.4, 0.3, 0.1), "strong": (0.6, 0.6, 0.6, 0.3)}
_BLUR = {"light": (7, 0.5, 1.5, 0.02), "medium": (13, 1.5, 3.0, 0.05), "strong": (25, 3.0, 6.0, 0.1)}
_JPEG = {"light": (50, 80), "medium": (20, 50), "strong": (5, 20)}
_ROT = {"light": (10, 0.0), "medium": (30, 0.08), "strong": (90, 0.18)}


def _crop(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    h, w = view.sizes[p["source"]]
    oh, ow = p["out"]
    area = rng.uniform(*_CROP_AREA[p["tier"]]) * h * w
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3))) * ow / oh
    cw, ch = min(w, math.sqrt(area * ratio)), min(h, math.sqrt(area / ratio))
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    p["crop"] = [x0, y0, x0 + cw, y0 + ch]
    p["H"] = _s(ow / cw, oh / ch) @ _t(-x0, -y0)


def _jitter(p: dict, rng: np.random.Generator, strength: tuple) -> None:
    b, c, s, hue = strength
    p["jitter"] = [
        rng.uniform(1 - b, 1 + b),
        rng.uniform(1 - c, 1 + c),
        rng.uniform(1 - s, 1 + s),
        rng.uniform(-hue, hue),
    ]


def _color(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    tier = p["tier"]
    _jitter(p, rng, _JITTER[tier])
    gray_p, sol_p, auto_p = {"light": (0, 0, 0.2), "medium": (0.2, 0.1, 0.3), "strong": (0.3, 0.3, 0.5)}[tier]
    p["gray"] = bool(rng.random() < gray_p)
    p["solarize"] = rng.uniform(0.5, 0.9) if rng.random() < sol_p else None
    p["autocontrast"] = bool(rng.random() < auto_p)


def _blur_noise(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    k, lo, hi, std = _BLUR[p["tier"]]
    if rng.random() < 0.8:
        p["blur"] = [k, rng.uniform(lo, hi)]
    if p["blur"] is None or rng.random() < 0.5:
        p["noise"] = [rng.uniform(std / 2, std), int(rng.integers(2**31))]


def _jpeg(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    p["jpeg"] = int(rng.integers(*_JPEG[p["tier"]], endpoint=True))


def _rotate(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    deg, d = _ROT[p["tier"]]
    p["angle"] = rng.uniform(-deg, deg)
    m = _about_center(_r(p["angle"]), p["out"]) @ p["H"]
    p["H"] = (_perspective(rng, p["out"], d) if d else np.eye(3)) @ m


def _flip(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    tier = p["tier"]
    fx, fy = {"light": (-1, 1), "medium": (1, -1), "strong": (-1, -1)}[tier]
    m = _about_center(_s(fx, fy), p["out"]) @ p["H"]
    if tier == "strong" and rng.random() < 0.5:  # transpose: a 90-degree turn of a flipped image
        oh, ow = p["out"]
        m = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float64) @ m
        p["out"] = [ow, oh]
    p["flips"] = [fx < 0, fy < 0]
    p["H"] = m


def _overlay(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    p["overlay"] = sample_overlay(rng, p["tier"])


def sample_overlay(rng: np.random.Generator, tier: str) -> dict:
    """AugLy overlay arguments (emoji, text, screenshot or stripes) for a tier."""
    kind = str(rng.choice(OVERLAYS))
    t = TIERS.index(tier)
    if kind == "emoji":
        size = rng.uniform(*[(0.1, 0.2), (0.2, 0.35), (0.35, 0.5)][t])
        return {"kind": kind, "emoji": int(rng.integers(1 << 30)), "size": size, "opacity": rng.uniform(0.7, 1.0),
                "x": rng.uniform(0, 1 - size), "y": rng.uniform(0, 1 - size)}  # fmt: skip
    if kind == "text":
        n = [6, 12, 24][t]
        return {"kind": kind, "font": TEXT_FONTS[int(rng.integers(len(TEXT_FONTS)))],
                "chars": [int(c) for c in rng.integers(1, 95, size=n)], "size": [0.08, 0.12, 0.18][t],
                "opacity": rng.uniform(0.6, 1.0), "color": [int(c) for c in rng.integers(0, 256, 3)],
                "x": rng.uniform(0, 0.4), "y": rng.uniform(0, 0.8)}  # fmt: skip
    if kind == "screenshot":
        return {"kind": kind, "template": str(rng.choice(["web.png", "mobile.png"]))}
    return {"kind": kind, "width": rng.uniform(0.1, 0.5), "color": [int(c) for c in rng.integers(0, 256, 3)],
            "angle": rng.uniform(-90, 90), "density": rng.uniform(*[(0.1, 0.3), (0.3, 0.5), (0.5, 0.7)][t]),
            "type": str(rng.choice(["solid", "dotted", "dashed"])),
            "opacity": rng.uniform(*[(0.3, 0.5), (0.5, 0.8), (0.8, 1.0)][t])}  # fmt: skip


def _mixed(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    tier = p["tier"]
    crop_tier = {"light": "light", "medium": "light", "strong": "medium"}[tier]
    p["tier"] = crop_tier
    _crop(p, rng, view)
    p["tier"] = tier
    p["angle"] = rng.uniform(-1, 1) * _ROT[tier][0] / 3
    p["H"] = _about_center(_r(p["angle"]), p["out"]) @ p["H"]
    if rng.random() < 0.5:
        p["H"] = _about_center(_s(-1, 1), p["out"]) @ p["H"]
        p["flips"] = [True, False]
    _color(p, rng, view)
    {"blur_noise": _blur_noise, "jpeg": _jpeg, "overlay": _overlay}[
        str(rng.choice(["blur_noise", "jpeg", "overlay"]))
    ](p, rng, view)


def _background(p: dict, rng: np.random.Generator, view: PoolView) -> str:
    others = [b for b in view.backgrounds if b != p["source"]]
    return others[int(rng.integers(len(others)))]


def _segmix(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    # The study's segmix: one class of the source's mask, background included, pasted where it is, untouched.
    labels = sorted(view.segments[p["source"]])
    p["label"] = labels[int(rng.integers(len(labels)))] if labels else None
    p["bg"] = _background(p, rng, view)
    p["H_bg"] = _cover(rng, view.sizes[p["bg"]], p["out"])


# (resize range, solarize threshold, autocontrast p, background is a class): the study's segmix_hard and
# segmix_resized (utils_ret.py); segmix_resized draws its class among the objects only (labels > 0).
_SEGMIX_TRANSFORMED = {"segmix_hard": ((0.75, 1.0), 0.9, 0.3, True),
                       "segmix_resized": ((0.5, 1.0), 0.8, 0.5, False)}  # fmt: skip


def _segmix_transformed(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    """Photometric transforms and flips of the whole source, then its class segment resized, rotated, pasted.

    The parameters follow the study's torchvision pipeline on the source: ColorJitter(0.4, 0.4, 0.2, 0.1)
    with p=0.8 (its four operations in a random order), GaussianBlur(5, sigma U(0.1, 4)), RandomGrayscale
    p=0.3, RandomSolarize (p=0.5), RandomAutocontrast; horizontal flip p=0.5, vertical p=0.2. The background
    image is never transformed. ``H_pre`` brings the source to the output size (where the photometric
    transforms act, as the study's source is at the training size); ``H`` then places the segment.
    """
    resize, sol_thr, auto_p, with_background = _SEGMIX_TRANSFORMED[p["family"]]
    labels = sorted(view.segments[p["source"]]) if with_background else view.foreground(p["source"])
    p["label"] = labels[int(rng.integers(len(labels)))] if labels else None
    p["bg"] = _background(p, rng, view)
    p["H_bg"] = _cover(rng, view.sizes[p["bg"]], p["out"])
    if rng.random() < 0.8:
        _jitter(p, rng, (0.4, 0.4, 0.2, 0.1))
        p["jitter_order"] = [int(k) for k in rng.permutation(4)]
    p["blur"] = [5, rng.uniform(0.1, 4.0)]
    p["gray"] = bool(rng.random() < 0.3)
    p["solarize"] = sol_thr if rng.random() < 0.5 else None
    p["autocontrast"] = bool(rng.random() < auto_p)
    fx, fy = (-1 if rng.random() < 0.5 else 1), (-1 if rng.random() < 0.2 else 1)
    p["flips"], p["H_pre"] = [fx < 0, fy < 0], p["H"]
    if (
        p["label"] == 0
    ):  # the background class is pasted where it is (after the flips), neither resized nor rotated
        p["H"] = _about_center(_s(fx, fy), p["out"])
        return
    _place_segment(p, rng, view, rng.uniform(*resize), rng.uniform(-10, 10), (fx, fy))


def _place_segment(
    p: dict, rng: np.random.Generator, view: PoolView, scale: float, angle: float, flips
) -> None:
    # torchvision's rotate turns counter-clockwise for a positive angle: in y-down pixels that is _r(-angle).
    m = _r(-angle) @ _s(scale * flips[0], scale * flips[1])
    pts = view.outlines[p["source"]].get(p["label"])
    if pts is None:  # no mask: the whole source
        sh, sw = view.sizes[p["source"]]
        pts = np.array([[0, 0], [sw, 0], [0, sh], [sw, sh]], dtype=np.float64)
    pre = (p["H_pre"] @ np.c_[pts, np.ones(len(pts))].T)[:2]
    moved = m[:2, :2] @ pre
    lo, hi = moved.min(axis=1), moved.max(axis=1)
    oh, ow = p["out"]
    # the study: the segment's box goes to a uniform integer top-left corner, cut at the right/bottom border
    x1 = int(rng.integers(0, max(1, int(ow - (hi[0] - lo[0])))))
    y1 = int(rng.integers(0, max(1, int(oh - (hi[1] - lo[1])))))
    p["H"] = _t(x1 - lo[0], y1 - lo[1]) @ m
    p.update(scale=scale, angle=angle, paste_at=[x1, y1])


def _cutmix(p: dict, rng: np.random.Generator, view: PoolView) -> None:
    """The study's cutmix (CutMix's rand_bbox): lam ~ Beta(1, 1), a box of side sqrt(1 - lam) of the image
    around a uniform integer centre, clipped at the border; the same box of the source pasted into another
    image, or of another image pasted into the source (p=0.5 each). Box in output pixels."""
    lam = rng.beta(1.0, 1.0)
    other = _background(p, rng, view)
    into_other = bool(rng.random() < 0.5)
    oh, ow = p["out"]
    cut_w, cut_h = int(ow * math.sqrt(1.0 - lam)), int(oh * math.sqrt(1.0 - lam))
    cx, cy = int(rng.integers(ow)), int(rng.integers(oh))
    box = [min(max(cx - cut_w // 2, 0), ow), min(max(cy - cut_h // 2, 0), oh),
           min(max(cx + cut_w // 2, 0), ow), min(max(cy + cut_h // 2, 0), oh)]  # fmt: skip
    fg, bg = (p["source"], other) if into_other else (other, p["source"])
    p.update(lam=lam, direction="source_into_other" if into_other else "other_into_source")
    p.update(fg=fg, box=box, H=_stretch(view.sizes[fg], p["out"]), bg=bg)
    p["H_bg"] = _stretch(view.sizes[bg], p["out"])


BUILDERS = {
    "crop": _crop, "color": _color, "blur_noise": _blur_noise, "jpeg": _jpeg, "rotate": _rotate, "flip": _flip,
    "overlay": _overlay, "mixed": _mixed, "segmix": _segmix, "segmix_hard": _segmix_transformed,
    "segmix_resized": _segmix_transformed, "cutmix": _cutmix,
}  # fmt: skip
assert TIERED <= set(BUILDERS)


def _rounded(obj):
    if isinstance(obj, np.ndarray):
        return _rounded(obj.tolist())
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return round(float(obj), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def emoji_files() -> list[Path]:
    """AugLy's bundled emoji PNGs, sorted (stable across machines)."""
    from copybench.extras import require

    require("augly")
    from augly.utils import EMOJI_DIR

    return sorted(Path(EMOJI_DIR).rglob("*.png"))
