"""Batched rendering of query parameters with kornia, on CPU or GPU, then AugLy overlays and JPEG on CPU.

Stages per query: warp the foreground (RGB + alpha) by ``H``; photometric jitter, grayscale, solarize and
autocontrast on it; composite over the warped background (if any); blur; noise; overlay; JPEG. Queries that
share an output size and blur kernel run as one batch; every random value was drawn beforehand per query.
JPEG uses the real codec (Pillow's libjpeg) rather than kornia's differentiable approximation: the artefacts
copy detectors meet in the wild are the real ones.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .sources import WORK_SIDE, SourceImage


def group_key(p: dict) -> tuple:
    """Queries with equal keys can share a batch."""
    return (tuple(p["out"]), p["blur"][0] if p["blur"] else 0, p["bg"] is not None)


def render(plist: list[dict], pool: dict[str, SourceImage], device: str = "cpu") -> list[np.ndarray]:
    """uint8 (h, w, 3) images of the queries ``plist``, in order."""
    out: list[np.ndarray | None] = [None] * len(plist)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(plist):
        groups.setdefault(group_key(p), []).append(i)
    for idx in groups.values():
        imgs = render_group([plist[i] for i in idx], pool, device)
        for i, img in zip(idx, imgs):
            out[i] = post_process(img, plist[i])
    return out  # type: ignore[return-value]


def _canvas(plist: list[dict], pool: dict, key: str, with_alpha: bool) -> torch.Tensor:
    # A fixed canvas for every batch: the warp's normalisation must not depend on the batch's other images.
    c = torch.zeros(len(plist), 4 if with_alpha else 3, WORK_SIDE, WORK_SIDE, dtype=torch.uint8)
    for i, p in enumerate(plist):
        src = pool[p[key]]
        h, w = src.rgb.shape[:2]
        c[i, :3, :h, :w] = torch.from_numpy(np.array(src.rgb)).permute(2, 0, 1)
        if with_alpha:
            c[i, 3, :h, :w] = torch.from_numpy(_alpha(src, p))
    return c


def _alpha(src: SourceImage, p: dict) -> np.ndarray:
    h, w = src.rgb.shape[:2]
    if p["box"] is not None:
        a = np.zeros((h, w), np.uint8)
        x0, y0, x1, y1 = (round(v) for v in p["box"])
        a[y0:y1, x0:x1] = 255
        return a
    if p["label"] is not None and src.mask is not None:
        return (src.mask == p["label"]).astype(np.uint8) * 255
    return np.full((h, w), 255, np.uint8)


def _warp(canvas: torch.Tensor, mats: list, out_hw: tuple, device: str) -> torch.Tensor:
    from kornia.geometry.transform import warp_perspective

    x = canvas.to(device).float().div_(255.0)
    m = torch.tensor(mats, dtype=torch.float32, device=device)
    return warp_perspective(x, m, dsize=out_hw, mode="bilinear", padding_mode="zeros", align_corners=True)


def render_group(plist: list[dict], pool: dict, device: str) -> list[np.ndarray]:
    """Render queries sharing a group key as one batch."""
    out_hw = tuple(plist[0]["out"])
    fg = _warp(_canvas(plist, pool, "fg", True), [p["H"] for p in plist], out_hw, device)
    rgb, alpha = photometric(fg[:, :3].contiguous(), plist), fg[:, 3:]
    if plist[0]["bg"] is not None:
        bg = _warp(_canvas(plist, pool, "bg", False), [p["H_bg"] for p in plist], out_hw, device)
        rgb = rgb * alpha + bg * (1 - alpha)
    else:
        rgb = rgb * alpha
    rgb = _noise(_blur(rgb, plist), plist)
    arr = rgb.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)


def _subset(plist: list[dict], pred) -> list[int]:
    return [i for i, p in enumerate(plist) if pred(p)]


def photometric(x: torch.Tensor, plist: list[dict]) -> torch.Tensor:
    """Jitter, grayscale, solarize, autocontrast with per-query parameters and flags."""
    import kornia

    idx = _subset(plist, lambda p: p["jitter"])
    if idx:
        f = torch.tensor([plist[i]["jitter"] for i in idx], dtype=torch.float32, device=x.device)
        s = (x[idx] * f[:, 0].view(-1, 1, 1, 1)).clamp(0, 1)
        s = kornia.enhance.adjust_contrast_with_mean_subtraction(s, f[:, 1]).clamp(0, 1)
        # saturation as torchvision's ColorJitter does it: a blend with the grayscale image (no HSV round trip)
        gray = kornia.color.rgb_to_grayscale(s)
        s = torch.lerp(gray, s, f[:, 2].view(-1, 1, 1, 1)).clamp(0, 1)
        x[idx] = kornia.enhance.adjust_hue(s, f[:, 3] * 2 * math.pi).clamp(0, 1)
    idx = _subset(plist, lambda p: p["gray"])
    if idx:
        x[idx] = kornia.color.rgb_to_grayscale(x[idx]).expand(-1, 3, -1, -1)
    idx = _subset(plist, lambda p: p["solarize"] is not None)
    if idx:
        thr = torch.tensor([plist[i]["solarize"] for i in idx], device=x.device).view(-1, 1, 1, 1)
        x[idx] = torch.where(x[idx] >= thr, 1 - x[idx], x[idx])
    idx = _subset(plist, lambda p: p["autocontrast"])
    if idx:
        s = x[idx]
        lo, hi = s.amin(dim=(2, 3), keepdim=True), s.amax(dim=(2, 3), keepdim=True)
        x[idx] = torch.where(hi > lo, (s - lo) / (hi - lo).clamp_min(1e-6), s)
    return x


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
        img = apply_overlay(img, p["overlay"]).convert("RGB")
    if p["jpeg"]:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(p["jpeg"]))
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def apply_overlay(img: Image.Image, o: dict) -> Image.Image:
    """One AugLy overlay with explicit arguments (AugLy itself draws nothing at random here)."""
    import augly.image.functional as F
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
