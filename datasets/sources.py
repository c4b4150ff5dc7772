"""Pools of source images (and their masks) that recipes turn into references and queries.

A source spec is ``None`` (the embedded default photos that installed pip packages ship), a folder path,
``cutouts:DIR`` (RGBA cut-outs, their alpha is the mask), ``voc:DIR`` (VOC JPEGImages + SegmentationClass) or
``coco:ANNOTATIONS_JSON:IMAGES_DIR`` (COCO instance polygons/RLE). Every pool is split into references and a
held-out part (distractor sources and paste backgrounds) that never appears among the references, so
distractor queries truly have no match and backgrounds are never a hidden positive.

Images are decoded by :func:`copybench.preprocess.read_image` and scaled so their long side is at most
``WORK_SIDE``; files that cannot be read are skipped and reported by name, never fatal unless too few remain.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from copybench.io import file_sha256
from copybench.io import list_images as io_list_images
from copybench.preprocess import ImageReadError, read_image, to_rgb

from .errors import MaskError, SourceError
from .masks import (
    HOW_TO_GET_MASKS,
    alpha_mask,
    check_mask_size,
    decode_coco_segmentation,
    find_u2netp,
    saliency_mask,
)

log = logging.getLogger(__name__)

WORK_SIDE = 512
MIN_REFERENCES = 3
MIN_HELD_OUT = 1
MIN_MASK_FRACTION = 0.01  # a segment smaller than 1% of the image is not a usable foreground


@dataclass
class SourceImage:
    """One decoded source: id (named by origin), RGB uint8 (h, w, 3), optional label mask (h, w)."""

    id: str
    origin: str
    rgb: np.ndarray
    mask: np.ndarray | None = None

    def digest(self) -> str:
        """sha256 of the decoded pixels (not the file bytes: identical on every machine)."""
        h = hashlib.sha256(str(self.rgb.shape).encode())
        h.update(self.rgb.tobytes())
        return h.hexdigest()

    def labels(self, background: bool = False) -> list[int]:
        """Mask labels whose segment is large enough to paste (empty without a mask).

        Label 0 is the background; ``background=True`` includes it as a class, as the study's segmix and
        segmix_hard do. 255 (VOC's 'void' outline) is never a class.
        """
        if self.mask is None:
            return []
        counts = np.bincount(self.mask.ravel(), minlength=256)
        need = MIN_MASK_FRACTION * self.mask.size
        return [k for k in range(0 if background else 1, 255) if counts[k] >= need]


@dataclass
class Pool:
    """References, held-out distractor sources and paste backgrounds, with the skip report."""

    spec: str
    references: list[SourceImage]
    held_out: list[SourceImage]
    backgrounds: list[SourceImage]
    masks: str = "none"  # provenance: none, u2netp:<sha256>, alpha, voc, coco
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def by_id(self) -> dict[str, SourceImage]:
        return {s.id: s for s in (*self.references, *self.held_out, *self.backgrounds)}


def fit_work(img: Image.Image, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """Scale down so the long side is at most WORK_SIDE (never up)."""
    scale = WORK_SIDE / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    return img.resize(size, resample)


def _source(sid: str, origin: str, img: Image.Image, mask: np.ndarray | None = None) -> SourceImage:
    rgb = fit_work(to_rgb(img))
    if mask is not None:
        check_mask_size(mask, (img.size[1], img.size[0]), origin)
        mask = np.asarray(Image.fromarray(mask).resize(rgb.size, Image.Resampling.NEAREST), dtype=np.uint8)
    return SourceImage(sid, origin, np.asarray(rgb, dtype=np.uint8).copy(), mask)


# --- embedded default photos -------------------------------------------------------------------------------

_SKIMAGE_REFS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "camera",
    "moon",
    "coins",
    "clock",
    "text",
    "page",
    "brick",
    "grass",
    "cell",
    "hubble_deep_field",
]
# Whole photos only, as references or held out: a reference and a held-out image cut from one photo look
# alike, and a paste onto the held-out half of a photo came back with the reference half as a (counted wrong)
# rank-1. The retina is held out whole, its tiles serving as paste backgrounds.
_SKIMAGE_HELD_OUT = ["gravel", "microaneurysms", "retina"]


def _embedded_images() -> list[tuple[str, str, Image.Image]]:
    import matplotlib.cbook
    import skimage.data

    out = []
    for name in (*_SKIMAGE_REFS, *_SKIMAGE_HELD_OUT):
        try:
            out.append(
                (f"skimage.{name}", f"skimage.data.{name}", Image.fromarray(getattr(skimage.data, name)()))
            )
        except Exception as exc:  # noqa: BLE001 - some skimage images need a download: skip, as documented
            log.info("embedded source skimage.%s unavailable: %s", name, exc)
    left = skimage.data.stereo_motorcycle()[0]  # the right view would be a near-duplicate: never use it
    out.append(("skimage.stereo_motorcycle", "skimage.data.stereo_motorcycle[0]", Image.fromarray(left)))
    # the files behind sklearn.datasets.load_sample_images(), read directly: importing sklearn costs seconds
    sk_dir = (
        Path(next(iter(importlib.util.find_spec("sklearn").submodule_search_locations)))
        / "datasets"
        / "images"
    )
    for stem in ("china", "flower"):
        with Image.open(sk_dir / f"{stem}.jpg") as img:
            out.append((f"sklearn.{stem}", f"sklearn.datasets.load_sample_images:{stem}", img.convert("RGB")))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        out.append(
            ("matplotlib.grace_hopper", "matplotlib sample_data/grace_hopper.jpg", Image.open(f).copy())
        )
    return out


EMBEDDED_HELD_OUT = frozenset(f"skimage.{name}" for name in _SKIMAGE_HELD_OUT)


# Paste backgrounds besides the held-out photos: non-overlapping tiles of the large held-out photos at their
# native resolution (rows, cols), so segmix and cutmix draw from more than four backgrounds. Tiles that are
# mostly (over half) the black surround of the retina photo are left out. None of them is ever a reference.
_BACKGROUND_TILES = {"skimage.gravel": (2, 2), "skimage.retina": (4, 4)}
_MAX_BLACK_SHARE = 0.5


def _tiles(
    sid: str, origin: str, img: Image.Image, rows: int, cols: int
) -> list[tuple[str, str, Image.Image]]:
    arr = np.asarray(img)
    th, tw = arr.shape[0] // rows, arr.shape[1] // cols
    out = []
    for r in range(rows):
        for c in range(cols):
            tile = arr[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
            if float((tile.reshape(th, tw, -1).max(-1) < 12).mean()) <= _MAX_BLACK_SHARE:
                out.append(
                    (f"{sid}.tile{r}{c}", f"{origin}[tile {r},{c} of {rows}x{cols}]", Image.fromarray(tile))
                )
    return out


@functools.lru_cache(maxsize=1)
def _embedded_decoded() -> tuple[tuple[str, str, np.ndarray], ...]:
    out = []
    for sid, origin, img in _embedded_images():
        items = [(sid, origin, img)]
        if sid in _BACKGROUND_TILES:
            items += _tiles(sid, origin, img, *_BACKGROUND_TILES[sid])
        for tid, torigin, timg in items:
            src = _source(tid, torigin, timg)
            src.rgb.setflags(write=False)  # shared between builds in one process: never written
            out.append((tid, torigin, src.rgb))
    return tuple(out)


def embedded_sources() -> tuple[list[SourceImage], list[SourceImage]]:
    """The embedded default photos: (references, held-out distractor sources); decoded once per process."""
    refs, held = [], []
    for sid, origin, rgb in _embedded_decoded():
        if ".tile" not in sid:
            (held if sid in EMBEDDED_HELD_OUT else refs).append(SourceImage(sid, origin, rgb))
    return refs, held


def embedded_backgrounds() -> list[SourceImage]:
    """Paste backgrounds of the embedded pool: the held-out photos and the tiles of the large ones."""
    return [
        SourceImage(sid, origin, rgb)
        for sid, origin, rgb in _embedded_decoded()
        if sid in EMBEDDED_HELD_OUT or sid.partition(".tile")[0] in EMBEDDED_HELD_OUT and ".tile" in sid
    ]


# --- folders -----------------------------------------------------------------------------------------------


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), by extension."""
    if not folder.is_dir():
        raise SourceError(f"source folder not found: {folder}")
    return io_list_images(folder)


def image_id(path: Path, root: Path, taken: set[str]) -> str:
    """A stable id from the path under ``root`` (extension kept only to break a clash)."""
    rel = path.relative_to(root)
    sid = re.sub(r"[^A-Za-z0-9._-]+", "_", str(rel.with_suffix("")).replace("/", "__"))
    if sid in taken:
        sid = re.sub(r"[^A-Za-z0-9._-]+", "_", str(rel).replace("/", "__"))
    taken.add(sid)
    return sid


def _is_held_out(sid: str, fraction: float = 0.2) -> bool:
    # A hash of the id, not the seed, decides: the same folder always has the same references.
    return int(hashlib.sha1(sid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def _read_folder(
    folder: Path, limit: int, keep_alpha: bool
) -> tuple[list[SourceImage], list[tuple[str, str]]]:
    images, skipped, taken = [], [], set()
    for path in list_images(folder):
        if len(images) >= limit:
            break
        sid = image_id(path, folder, taken)
        try:
            img = _open_keep_alpha(path) if keep_alpha else read_image(path)
        except ImageReadError as exc:
            skipped.append((str(path.relative_to(folder)), str(exc).split(": ", 1)[-1]))
            continue
        mask = alpha_mask(img) if keep_alpha else None
        images.append(_source(sid, str(path), img, mask))
    for name, why in skipped:
        log.warning("skipped unreadable image %s: %s", name, why)
    return images, skipped


def _open_keep_alpha(path: Path) -> Image.Image:
    read_image(path)  # validates (and reports) the file exactly like every other source
    with Image.open(path) as img:
        img.load()
        return img.convert("RGBA") if img.mode in ("LA", "PA", "P", "RGBA") else img.copy()


def _split(
    images: list[SourceImage], where: str, skipped: list
) -> tuple[list[SourceImage], list[SourceImage]]:
    held = [s for s in images if _is_held_out(s.id)]
    refs = [s for s in images if not _is_held_out(s.id)]
    while len(held) < 2 and len(refs) > MIN_REFERENCES:  # paste recipes need two backgrounds
        held, refs = [*held, refs[-1]], refs[:-1]
    if len(refs) < MIN_REFERENCES or len(held) < MIN_HELD_OUT:
        names = ", ".join(n for n, _ in skipped) or "none"
        raise SourceError(
            f"{where}: only {len(images)} usable image(s); need at least {MIN_REFERENCES + MIN_HELD_OUT} "
            f"({MIN_REFERENCES} references + {MIN_HELD_OUT} held out for distractors). Skipped: {names}"
        )
    return refs, held


# --- VOC and COCO ------------------------------------------------------------------------------------------


def _voc_root(folder: Path) -> Path:
    for cand in (
        folder,
        folder / "VOC2012",
        folder / "VOCdevkit" / "VOC2012",
        folder / "VOCdevkit" / "VOC2007",
    ):
        if (cand / "JPEGImages").is_dir() and (cand / "SegmentationClass").is_dir():
            return cand
    raise SourceError(f"{folder}: no VOC layout found (need JPEGImages/ and SegmentationClass/)")


def _read_voc(folder: Path, limit: int) -> tuple[list[SourceImage], list[tuple[str, str]]]:
    root = _voc_root(folder)
    images, skipped = [], []
    for mpath in sorted((root / "SegmentationClass").glob("*.png")):
        if len(images) >= limit:
            break
        ipath = root / "JPEGImages" / f"{mpath.stem}.jpg"
        try:
            img = read_image(ipath)
            with Image.open(mpath) as m:
                mask = np.asarray(m if m.mode in ("P", "L") else m.convert("L"), dtype=np.uint8).copy()
        except (ImageReadError, OSError) as exc:
            skipped.append((mpath.stem, str(exc)))
            continue
        images.append(_source(f"voc.{mpath.stem}", str(ipath), img, mask))
    return images, skipped


def _read_coco(ann_file: Path, img_dir: Path, limit: int) -> tuple[list[SourceImage], list[tuple[str, str]]]:
    try:
        coco = json.loads(Path(ann_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{ann_file}: cannot read COCO annotations ({exc})") from exc
    anns: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        if not a.get("iscrowd", 0):
            anns.setdefault(a["image_id"], []).append(a)
    images, skipped = [], []
    for info in sorted(coco.get("images", []), key=lambda i: i["id"]):
        if len(images) >= limit:
            break
        if info["id"] not in anns:
            continue
        path = img_dir / info["file_name"]
        try:
            img = read_image(path)
        except ImageReadError as exc:
            skipped.append((info["file_name"], str(exc).split(": ", 1)[-1]))
            continue
        mask = _coco_labels(anns[info["id"]], info, img, path)
        images.append(_source(f"coco.{Path(info['file_name']).stem}", str(path), img, mask))
    return images, skipped


def _coco_labels(anns: list[dict], info: dict, img: Image.Image, path: Path) -> np.ndarray:
    h, w = int(info.get("height", img.size[1])), int(info.get("width", img.size[0]))
    check_mask_size(np.zeros((h, w), np.uint8), (img.size[1], img.size[0]), f"{path} (COCO height/width)")
    labels = np.zeros((h, w), dtype=np.uint8)
    for k, a in enumerate(anns[:254], start=1):  # one label per instance
        labels[decode_coco_segmentation(a["segmentation"], h, w, f"{path} annotation {a.get('id')}") > 0] = k
    return labels


# --- the pool ----------------------------------------------------------------------------------------------


def load_pool(spec: str | None, max_references: int, need_masks: bool) -> Pool:
    """Decode the sources named by ``spec`` into a pool; masks are attached when ``need_masks``."""
    if spec is None:
        refs, held = embedded_sources()
        pool = Pool("embedded", refs[:max_references], held, embedded_backgrounds())
    else:
        pool = _load_user_pool(spec, max_references)
    if need_masks:
        attach_masks(pool)
    log.info("sources %s: %d references, %d held out", pool.spec, len(pool.references), len(pool.held_out))
    return pool


def _load_user_pool(spec: str, max_refs: int) -> Pool:
    limit = max(max_refs * 5 // 4 + 1, MIN_REFERENCES + MIN_HELD_OUT)
    kind, _, rest = spec.partition(":")
    if kind == "cutouts" and rest:
        images, skipped = _read_folder(Path(rest).expanduser(), limit, keep_alpha=True)
        refs, held = _split(images, rest, skipped)
        # cut-outs float on white; real photos make better backgrounds, and none of them is a reference
        bg_refs, bg_held = embedded_sources()
        return Pool(spec, refs[:max_refs], held, bg_refs + bg_held, "alpha", skipped)
    if kind == "voc" and rest:
        images, skipped = _read_voc(Path(rest).expanduser(), limit)
        refs, held = _split(images, rest, skipped)
        return Pool(spec, refs[:max_refs], held, held, "voc", skipped)
    if kind == "coco" and rest:
        ann, _, img_dir = rest.partition(":")
        if not img_dir:
            raise SourceError(f"coco source must be coco:ANNOTATIONS_JSON:IMAGES_DIR, got {spec!r}")
        images, skipped = _read_coco(Path(ann).expanduser(), Path(img_dir).expanduser(), limit)
        refs, held = _split(images, ann, skipped)
        return Pool(spec, refs[:max_refs], held, held, "coco", skipped)
    folder = Path(spec).expanduser()
    images, skipped = _read_folder(folder, limit, keep_alpha=False)
    refs, held = _split(images, str(folder), skipped)
    return Pool(str(folder.resolve()), refs[:max_refs], held, held, "none", skipped)


def attach_masks(pool: Pool) -> None:
    """Give every masked source a mask; photos without one get U2-Netp saliency, or MaskError says how."""
    missing = [s for s in (*pool.references, *pool.held_out) if s.mask is None]
    if not missing:
        return
    model = find_u2netp()
    if model is None:
        raise MaskError(f"no masks for sources {pool.spec!r}: {HOW_TO_GET_MASKS}")
    for src in missing:
        src.mask = saliency_mask(src.rgb, model)
    sha = file_sha256(model)
    pool.masks = f"u2netp:{sha}" if pool.masks == "none" else f"{pool.masks}+u2netp:{sha}"
