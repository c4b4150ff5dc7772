"""Image decoding and the per-detector preprocessing the harness builds from a :class:`DetectorSpec`.

Decoding accepts anything Pillow reads (jpg, png, webp, bmp, tiff, gif first frame), in any mode: grayscale,
palette, RGBA/LA (composited on white), CMYK, 16-bit and float images are converted to 8-bit RGB, turned upright
by their EXIF orientation (``rgb="viewer"``, native). The protocols reproducing SSCD, DINO and DCR decode as those
scripts do instead, with Pillow's ``convert("RGB")`` alone (``rgb="convert"``: stored orientation, alpha dropped),
carried by the spec's ``rgb_conversion`` so every decode path and the cache key follow it. A file that cannot be
decoded, or that would decode to more than the pixel limit (``$COPYBENCH_MAX_PIXELS``), raises
:class:`ImageReadError` naming it, so callers can skip it and report it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error we report, not a silently grey image
Image.MAX_IMAGE_PIXELS = 300_000_000
# decompression-bomb guard: a 62 KB PNG can claim 400 megapixels and take gigabytes to decode
DEFAULT_MAX_PIXELS = 120_000_000
MAX_PIXELS_ENV = "COPYBENCH_MAX_PIXELS"
# families of the hub adapters (copybench.detectors.hub): their preprocessing is their library's, bit for bit
LIBRARY_FAMILIES = ("timm", "open_clip", "transformers")
LIBRARY_SUFFIX = "-transform"  # their family on the library route (copybench.detectors.hub.TRANSFORM_SUFFIX)


class ImageReadError(OSError):
    """An image file could not be read or decoded."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB (alpha composited on white, 16-bit and float rescaled)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, img)
    return img.convert("RGB")


def max_pixels() -> int:
    """The decoded-size limit in pixels: $COPYBENCH_MAX_PIXELS (0 disables it) or 120 megapixels."""
    import os

    text = os.environ.get(MAX_PIXELS_ENV, "")
    try:
        return int(text) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        raise ImageReadError(f"${MAX_PIXELS_ENV}={text!r} is not a whole number of pixels") from None


def check_pixels(path: str | Path, size: tuple[int, int]) -> None:
    """ImageReadError naming ``path`` when an image of ``size`` would decode to more pixels than allowed."""
    limit = max_pixels()
    w, h = size
    if limit and w * h > limit:
        raise ImageReadError(
            f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the {limit / 1e6:g}-megapixel decode limit "
            f"(a decompression-bomb guard); raise it with {MAX_PIXELS_ENV}=N if the image is genuine"
        )


def exif_rotated(img: Image.Image) -> bool:
    """Whether the file asks to be shown rotated or mirrored (EXIF orientation other than 1)."""
    return img.getexif().get(0x0112, 1) not in (0, 1)


def read_image(
    path: str | Path, *, min_side: int | None = None, data: bytes | None = None, rgb: str = "viewer"
) -> Image.Image:
    """Decode ``path`` into an RGB image, or raise ImageReadError naming the file.

    ``data``: the file's bytes, already read elsewhere (the Ray engine's read tasks); ``path`` then only names it.

    ``rgb``: ``"viewer"`` turns the image upright by its EXIF orientation and composites transparency on white
    (:func:`to_rgb`), as a viewer shows it; ``"convert"`` is Pillow's ``convert("RGB")`` of the stored pixels and
    nothing else (alpha dropped, no rotation), as SSCD, DINO and DCR decode (the protocols, docs/PROTOCOLS.md).

    ``min_side``: a JPEG whose sides are both at least twice this is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's
    DCT scaling (Pillow's draft mode), keeping both sides at least ``min_side``: a fraction of a full decode's
    cost when the model needs far fewer pixels. Other formats, and smaller JPEGs, decode in full.
    """
    path = Path(path)
    source = path if data is None else io.BytesIO(data)
    try:
        if (path.stat().st_size if data is None else len(data)) == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with Image.open(source) as img:
            if min_side:
                # Pillow picks the largest scale s in (1, 2, 4, 8) with s <= min(w, h) // min_side: never below
                img.draft(img.mode, (min_side, min_side))
            check_pixels(path, img.size)  # after draft: a large JPEG decoded at 1/8 scale is small
            img.load()
            if rgb == "convert":
                return img.convert("RGB")
            # as a viewer shows it: a phone photo stored sideways with an EXIF orientation is upright here
            return to_rgb(ImageOps.exif_transpose(img) if exif_rotated(img) else img)
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Pillow names a file object by its repr: name the file, as for a path
        raise ImageReadError(
            f"{path}: cannot decode image ({str(exc).replace(repr(source), repr(str(path)))})"
        ) from exc


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class Preprocess:
    """uint8 (3, H, W) or (B, 3, H, W) -> float32 normalised tensor at the detector's native size."""

    # decode at least 8x the side the resize maps to. A reduced-size decode is an extra 8-bit rounding of an
    # intermediate image; on smooth gradients its rounding errors do not average out in the final resize and flip
    # the final pixels by 1 level. Measured on Debian's wallpapers (efficientnet_lite0, worst image): a margin of
    # 5.6 moved the descriptor by 1.5e-3 cosine, 8 by 6.9e-4 (upscaled copies, smoother than the originals), 11 by
    # 3.6e-4; the target is 1e-3. int8-quantised models are never drafted (see copybench.decode.draft_refusal).
    DRAFT_MARGIN = 8

    def __init__(self, spec) -> None:
        from torchvision.transforms import InterpolationMode

        self.spec = spec
        self.interpolation = InterpolationMode(spec.interpolation)
        self.mean = torch.tensor(spec.mean).view(3, 1, 1)
        self.std = torch.tensor(spec.std).view(3, 1, 1)
        # a hub model whose library transform the batch path cannot reproduce: that transform, image by image
        self.library = None
        if spec.family.endswith(LIBRARY_SUFFIX):
            from copybench.detectors.hub_transforms import library_transform

            self.library = library_transform(spec)

    @property
    def rgb_conversion(self) -> str:
        """How files become RGB for this spec (:func:`read_image`'s ``rgb``): "viewer", or "convert" under a
        protocol reproducing a script that decodes with Pillow's ``convert("RGB")``."""
        return getattr(self.spec, "rgb_conversion", "viewer")

    @property
    def library_decode(self) -> bool:
        """Whether images must decode as the detector's library decodes them (Pillow, in full): hub models, whose
        descriptors equal the library's own (a GPU JPEG decoder differs from libjpeg by a grey level here and
        there, so ``--decode auto`` keeps them on the CPU workers; an explicit ``--decode device`` is obeyed)."""
        return self.spec.family.removesuffix(LIBRARY_SUFFIX) in LIBRARY_FAMILIES

    @property
    def min_decode_side(self) -> int | None:
        """Smallest side a reduced-size decode may have: DRAFT_MARGIN times the side the resize maps the short side
        (or, for square inputs, both sides) to. None for Pillow-resize specs and hub models (``timm:``,
        ``open_clip:``, ``hf-hub:``, ``hf:``): they reproduce original scripts or a library's own transform, which
        decode in full (a 1/2-scale JPEG decode moved a transformers model's descriptor by 2e-3)."""
        if getattr(self.spec, "resize_backend", "tensor") == "pil" or self.library_decode:
            return None
        side = self.spec.input_size if self.spec.resize in ("square", "short") else self.spec.resize_size
        return self.DRAFT_MARGIN * int(side)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Resize (uint8 in, uint8 out) by the spec's policy, with torchvision or (``resize_backend="pil"``) Pillow."""
        if self.library is not None:
            return self.resize_library(x)
        if getattr(self.spec, "resize_backend", "tensor") == "pil":
            return self.resize_pil(x)
        from torchvision.transforms.v2 import functional as TF

        size, policy = self.spec.input_size, self.spec.resize
        if policy == "square":
            return TF.resize(x, [size, size], interpolation=self.interpolation, antialias=True)
        if policy == "short":
            return TF.resize(x, size, interpolation=self.interpolation, antialias=True)
        # short_crop: short side to size / crop_pct (timm's rule, e.g. 256 for 224), then the centre crop
        x = TF.resize(x, self.spec.resize_size, interpolation=self.interpolation, antialias=True)
        if getattr(self.spec, "crop_offset", "round") == "floor":  # transformers' processors floor the margin
            h, w = TF.get_size(x)
            return TF.crop(x, (h - size) // 2, (w - size) // 2, size, size)
        return TF.center_crop(x, [size, size])

    def resize_pil(self, x: torch.Tensor) -> torch.Tensor:
        """Resize one uint8 (3, H, W) image with Pillow, as torchvision's PIL transforms do in the originals."""
        # torchvision's tensor resize differs from Pillow's by one grey level on about 0.2 % of the pixels;
        # the protocols reproduce scripts that resize PIL images, so they resize with Pillow too.
        from torchvision.transforms import functional as F

        if x.ndim != 3:
            return torch.stack([self.resize_pil(im) for im in x])
        img = Image.fromarray(x.permute(1, 2, 0).cpu().numpy())
        size, policy = self.spec.input_size, self.spec.resize
        if policy == "square":
            img = F.resize(img, [size, size], interpolation=self.interpolation)
        elif policy == "short":
            img = F.resize(img, size, interpolation=self.interpolation)
        else:
            img = F.resize(img, self.spec.resize_size, interpolation=self.interpolation)
            if getattr(self.spec, "crop_offset", "round") == "floor":
                img = F.crop(img, (img.height - size) // 2, (img.width - size) // 2, size, size)
            else:
                img = F.center_crop(img, size)
        return pil_to_tensor(img).to(x.device)

    def resize_library(self, x: torch.Tensor) -> torch.Tensor:
        """The library's own transform on one uint8 (3, H, W) image as Pillow (its input): float, normalised."""
        if x.ndim != 3:
            return torch.stack([self.resize_library(im) for im in x])
        img = Image.fromarray(x.permute(1, 2, 0).cpu().numpy())
        return self.library(img).float().to(x.device)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in [0, 1] -> (x - mean) / std; works on CPU or GPU tensors. On the library route the
        pixels arrive already normalised by the library's transform."""
        if self.library is not None:
            return x.float()
        x = x.float().div_(255.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize(x))
