"""Batched rendering of query parameters with kornia, on CPU or GPU, then AugLy overlays and JPEG on CPU.

Two orders of stages, as the transforms they reproduce define them:

- single-image families (crop, colour, blur, rotation, ...): warp the source (RGB, paste alpha and a validity
  channel) by ``H``; photometric jitter, grayscale, solarize and autocontrast on the warped image; composite
  over the background (cutmix); blur; noise. Image statistics (the contrast mean, autocontrast's min and max)
  are taken over the valid pixels only: the black padding a rotation or perspective warp leaves is not image.
- source-first (segmix_hard, segmix_resized, as the study's code does): ``H_pre`` brings the whole source to the
  output size; photometric transforms and blur act on it there; then ``H`` places the chosen segment over the
  background, which is never transformed (no blur after pasting).

Then AugLy overlays and JPEG. Queries that share a group key run as one batch; every random value was drawn
beforehand per query. JPEG uses the real codec (Pillow's libjpeg) rather than kornia's differentiable
approximation: the artefacts copy detectors meet in the wild are the real ones.
"""

from __future__ import annotations

import io
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .sources import WORK_SIDE, SourceImage


def group_key(p: dict) -> tuple:
    """Queries with equal keys can share a batch."""
    return (
        tuple(p["out"]),
        p["blur"][0] if p["blur"] else 0,
        p["bg"] is not None,
        p.get("H_pre") is not None,
    )


def render(
    plist: list[dict], pool: dict[str, SourceImage], device: str = "cpu", threads: int | None = None
) -> list[np.ndarray]:
    """uint8 (h, w, 3) images of the queries ``plist``, in order.

    The kornia stage runs batched (on ``device``); overlays and JPEG then run per image on the CPU, spread
    over ``threads`` (default: every core, ``$COPYBENCH_BUILD_THREADS`` to set it): Pillow's codecs and drawing
    release the GIL, and each image depends on its own parameters only, so the output is the same bytes
    whatever the thread count."""
    rendered: list[np.ndarray | None] = [None] * len(plist)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(plist):
        groups.setdefault(group_key(p), []).append(i)
    t0 = time.perf_counter()
    for idx in groups.values():
        for i, img in zip(idx, render_group([plist[i] for i in idx], pool, device)):
            rendered[i] = img
    account_stage("kornia", time.perf_counter() - t0, len(plist))
    return list(cpu_pool(threads).map(post_process, rendered, plist))


# ---------------------------------------------------------------------------------------------- profile
_STAGES: dict[str, list[float]] = {}  # stage -> [seconds (summed over threads), images]
_STAGES_LOCK = threading.Lock()
_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def account_stage(stage: str, seconds: float, n: int = 1) -> None:
    with _STAGES_LOCK:
        entry = _STAGES.setdefault(stage, [0.0, 0])
        entry[0] += seconds
        entry[1] += n


def stage_profile(reset: bool = False) -> dict[str, dict[str, float]]:
    """Seconds and images per copy-generation stage since the last reset (``kornia``: wall time of the batched
    stage; ``overlay``, ``jpeg``: summed over the threads that ran them; ``write`` is added by the builder)."""
    with _STAGES_LOCK:
        out = {k: {"seconds": v[0], "images": v[1]} for k, v in sorted(_STAGES.items())}
        if reset:
            _STAGES.clear()
    return out


def build_threads(threads: int | None = None) -> int:
    """Threads for the per-image CPU stages: ``threads``, else $COPYBENCH_BUILD_THREADS, else every core."""
    if threads is None:
        threads = int(os.environ.get("COPYBENCH_BUILD_THREADS") or 0) or (os.cpu_count() or 1)
    if threads < 1:
        raise ValueError(f"build threads must be at least 1, got {threads}")
    return threads


def cpu_pool(threads: int | None) -> ThreadPoolExecutor:
    n = build_threads(threads)
    if n not in _EXECUTORS:  # one pool per size for the process: no threads started per batch
        _EXECUTORS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="copybench-build")
    return _EXECUTORS[n]


def _canvas(plist: list[dict], pool: dict, key: str, with_alpha: bool) -> torch.Tensor:
    """uint8 (B, 5, S, S): RGB, paste alpha, validity; or (B, 3, S, S) without alpha (backgrounds)."""
    # A fixed canvas for every batch: the warp's normalisation must not depend on the batch's other images.
    c = torch.zeros(len(plist), 5 if with_alpha else 3, WORK_SIDE, WORK_SIDE, dtype=torch.uint8)
    for i, p in enumerate(plist):
        src = pool[p[key]]
        h, w = src.rgb.shape[:2]
        c[i, :3, :h, :w] = torch.from_numpy(np.array(src.rgb)).permute(2, 0, 1)
        if with_alpha:
            c[i, 3, :h, :w] = torch.from_numpy(_alpha(src, p))
            c[i, 4, :h, :w] = 255
    return c


def _alpha(src: SourceImage, p: dict) -> np.ndarray:
    # cutmix's box is cut in output pixels after the warp (_box_alpha): here the whole image
    if p["box"] is None and p["label"] is not None and src.mask is not None:
        return (src.mask == p["label"]).astype(np.uint8) * 255
    return np.full(src.rgb.shape[:2], 255, np.uint8)


def _box_alpha(alpha: torch.Tensor, plist: list[dict]) -> torch.Tensor:
    """Zero the paste alpha outside each query's integer output box (cutmix), so its edges are hard."""
    for i, p in enumerate(plist):
        if p["box"] is not None:
            x0, y0, x1, y1 = (int(v) for v in p["box"])
            keep = torch.zeros_like(alpha[i])
            keep[:, y0:y1, x0:x1] = 1
            alpha[i] *= keep
    return alpha


def _warp(
    canvas: torch.Tensor, mats: list, out_hw: tuple, device: str, padding: str = "zeros"
) -> torch.Tensor:
    from kornia.geometry.transform import warp_perspective

    x = canvas.to(device).float()
    if canvas.dtype == torch.uint8:
        x = x.div_(255.0)
    m = torch.tensor(mats, dtype=torch.float32, device=device)
    return warp_perspective(x, m, dsize=out_hw, mode="bilinear", padding_mode=padding, align_corners=True)


def render_group(plist: list[dict], pool: dict, device: str) -> list[np.ndarray]:
    """Render queries sharing a group key as one batch."""
    out_hw = tuple(plist[0]["out"])
    canvas = _canvas(plist, pool, "fg", True)
    if plist[0].get("H_pre") is not None:
        # the source at output size (border padding: a stretch has no outside), transformed, then placed
        pre = _warp(canvas, [p["H_pre"] for p in plist], out_hw, device, padding="border")
        rgb = _blur(photometric(pre[:, :3].contiguous(), plist, pre[:, 4:]), plist)
        fg = _warp(torch.cat([rgb, pre[:, 3:]], 1), [p["H"] for p in plist], out_hw, device)
        rgb, alpha = fg[:, :3], fg[:, 3:4]
    else:
        fg = _warp(canvas, [p["H"] for p in plist], out_hw, device)
        rgb, alpha = photometric(fg[:, :3].contiguous(), plist, fg[:, 4:]), _box_alpha(fg[:, 3:4], plist)
    if plist[0]["bg"] is not None:
        bg = _warp(_canvas(plist, pool, "bg", False), [p["H_bg"] for p in plist], out_hw, device)
        rgb = rgb * alpha + bg * (1 - alpha)
    else:
        rgb = rgb * alpha
    if plist[0].get("H_pre") is None:
        rgb = _blur(rgb, plist)
    rgb = _noise(rgb, plist)
    arr = rgb.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)


def _subset(plist: list[dict], pred) -> list[int]:
    return [i for i, p in enumerate(plist) if pred(p)]


VALID = 0.999  # a warped pixel counts as image (not padding) when its validity channel is at least this


def photometric(x: torch.Tensor, plist: list[dict], valid: torch.Tensor | None = None) -> torch.Tensor:
    """Jitter, grayscale, solarize, autocontrast with per-query parameters and flags.

    ``valid`` (B, 1, H, W) marks image pixels; the contrast mean and autocontrast's per-channel min and max
    are taken over them only (all pixels when None).
    """
    import kornia

    w = torch.ones_like(x[:, :1]) if valid is None else (valid >= VALID).to(x.dtype)
    _jitter(x, w, plist)
    idx = _subset(plist, lambda p: p["gray"])
    if idx:
        x[idx] = kornia.color.rgb_to_grayscale(x[idx]).expand(-1, 3, -1, -1)
    idx = _subset(plist, lambda p: p["solarize"] is not None)
    if idx:
        thr = torch.tensor([plist[i]["solarize"] for i in idx], device=x.device).view(-1, 1, 1, 1)
        x[idx] = torch.where(x[idx] >= thr, 1 - x[idx], x[idx])
    idx = _subset(plist, lambda p: p["autocontrast"])
    if idx:
        x[idx] = autocontrast(x[idx], w[idx])
    return x


def autocontrast(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """torchvision's autocontrast (per-channel min-max stretch; a flat channel is left alone), with the min
    and max over the pixels where ``w`` is 1."""
    inside = w.bool().expand_as(x)
    lo = torch.where(inside, x, torch.full_like(x, float("inf"))).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(inside, x, torch.full_like(x, float("-inf"))).amax(dim=(2, 3), keepdim=True)
    flat = ~(hi > lo)  # also a query without a valid pixel (inf/-inf)
    lo, scale = torch.where(flat, 0.0, lo), torch.where(flat, 1.0, 1.0 / (hi - lo).clamp_min(1e-12))
    return ((x - lo) * scale).clamp(0, 1)


# ColorJitter's four operations: brightness, contrast, saturation, hue (torchvision's fn_idx numbering)
def _brightness(s: torch.Tensor, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (s * f.view(-1, 1, 1, 1)).clamp(0, 1)


def _contrast(s: torch.Tensor, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import kornia

    # torchvision blends with the mean of the grayscale image; here over the valid pixels only
    gray = kornia.color.rgb_to_grayscale(s)
    mean = (gray * w).sum(dim=(1, 2, 3), keepdim=True) / w.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    return torch.lerp(mean.expand_as(s), s, f.view(-1, 1, 1, 1)).clamp(0, 1)


def _saturation(s: torch.Tensor, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import kornia

    # as torchvision's ColorJitter: a blend with the grayscale image (no HSV round trip)
    return torch.lerp(kornia.color.rgb_to_grayscale(s), s, f.view(-1, 1, 1, 1)).clamp(0, 1)


def _hue(s: torch.Tensor, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import kornia

    return kornia.enhance.adjust_hue(s, f * 2 * math.pi).clamp(0, 1)


_JITTER_OPS = (_brightness, _contrast, _saturation, _hue)


def _jitter(x: torch.Tensor, w: torch.Tensor, plist: list[dict]) -> None:
    """Colour jitter in place, each query's operations in its ``jitter_order`` (default 0, 1, 2, 3)."""
    idx = _subset(plist, lambda p: p["jitter"])
    if not idx:
        return
    f = torch.tensor([plist[i]["jitter"] for i in idx], dtype=torch.float32, device=x.device)
    orders = [plist[i].get("jitter_order") or [0, 1, 2, 3] for i in idx]
    s = x[idx]
    for step in range(4):
        for op in range(4):
            rows = [j for j, order in enumerate(orders) if order[step] == op]
            if rows:
                s[rows] = _JITTER_OPS[op](s[rows], f[rows, op], w[idx][rows])
    x[idx] = s


def _blur(x: torch.Tensor, plist: list[dict]) -> torch.Tensor:
    import kornia

    idx = _subset(plist, lambda p: p["blur"])
    if idx:
        k = int(plist[idx[0]]["blur"][0])
        sig = torch.tensor([[plist[i]["blur"][1]] * 2 for i in idx], dtype=torch.float32, device=x.device)
        x[idx] = kornia.filters.gaussian_blur2d(x[idx], (k, k), sig, border_type="reflect")
    return x


def _noise(x: torch.Tensor, plist: list[dict]) -> torch.Tensor:
    for i, p in enumerate(plist):
        if p["noise"]:
            std, seed = p["noise"]
            g = torch.Generator().manual_seed(int(seed))  # drawn on CPU: the same noise on every device
            x[i] += torch.randn(x.shape[1:], generator=g).to(x.device) * float(std)
    return x


def post_process(arr: np.ndarray, p: dict) -> np.ndarray:
    """AugLy overlay then JPEG, on CPU (Pillow)."""
    img = Image.fromarray(arr)
    if p["overlay"]:
        t0 = time.perf_counter()
        img = apply_overlay(img, p["overlay"]).convert("RGB")
        account_stage("overlay", time.perf_counter() - t0)
    if p["jpeg"]:
        t0 = time.perf_counter()
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(p["jpeg"]))
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
        account_stage("jpeg", time.perf_counter() - t0)
    return np.asarray(img, dtype=np.uint8)


def apply_overlay(img: Image.Image, o: dict) -> Image.Image:
    """One AugLy overlay with explicit arguments (AugLy itself draws nothing at random here)."""
    from copybench.extras import require

    F = require("augly.image.functional")
    from augly.utils import FONTS_DIR, SCREENSHOT_TEMPLATES_DIR

    from .params import emoji_files

    kind = o["kind"]
    if kind == "emoji":
        files = emoji_files()
        path = str(files[o["emoji"] % len(files)])
        return F.overlay_emoji(
            img, emoji_path=path, opacity=o["opacity"], emoji_size=o["size"], x_pos=o["x"], y_pos=o["y"]
        )
    if kind == "text":
        font = str(Path(FONTS_DIR) / o["font"])
        return F.overlay_text(img, text=o["chars"], font_file=font, font_size=o["size"], opacity=o["opacity"],
                              color=tuple(o["color"]), x_pos=o["x"], y_pos=o["y"])  # fmt: skip
    if kind == "screenshot":
        shot = F.overlay_onto_screenshot(
            img, template_filepath=str(Path(SCREENSHOT_TEMPLATES_DIR) / o["template"])
        )
        scale = 320 / max(shot.size)  # templates are large: bring the copy back to query size
        return shot.convert("RGB").resize(
            (round(shot.size[0] * scale), round(shot.size[1] * scale)), Image.BILINEAR
        )
    return F.overlay_stripes(img, line_width=o["width"], line_color=tuple(o["color"]), line_angle=o["angle"],
                             line_density=o["density"], line_type=o["type"], line_opacity=o["opacity"])  # fmt: skip
