"""The study's training subsets: sizes, nested seeded subsets of one folder, their keys and folders, and the
pixels a DDPM trains on (decoded square at its resolution)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def parse_sizes(sizes: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``"300,3000,30000"`` -> (300, 3000, 30000): positive, distinct, sorted."""
    if isinstance(sizes, str):
        try:
            sizes = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError as exc:
            raise ValueError(f"--sizes must be a comma list of integers, got {sizes!r}") from exc
    out = tuple(sorted({int(s) for s in sizes}))
    if not out or out[0] < 2:
        raise ValueError(f"--sizes needs at least one size, each at least 2 images; got {list(sizes)}")
    return out


def nested_subsets(n_images: int, sizes: tuple[int, ...], seed: int) -> dict[int, np.ndarray]:
    """Sorted row indices of each size's subset: prefixes of one seeded permutation, hence nested."""
    if sizes[-1] > n_images:
        raise ValueError(f"--sizes asks for {sizes[-1]} images but the training folder holds only {n_images}")
    perm = np.random.default_rng(seed).permutation(n_images)
    return {s: np.sort(perm[:s]) for s in sizes}


def files_key(root: Path, paths: list[str]) -> str:
    """Fingerprint of a list of files: relative path, size and mtime of each (a changed file changes it)."""
    h = hashlib.sha256()
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def write_subset(folder: Path, size: int, root: Path, paths: list[str]) -> Path:
    """``folder/size-N.txt`` and ``folder/size-N/`` (links mirroring the relative paths); rebuilt when stale."""
    from copybench.io import atomic_write_text, make_temp_dir

    rel = [str(Path(p).relative_to(root)) for p in paths]
    listing, target = folder / f"size-{size}.txt", folder / f"size-{size}"
    text = "".join(r + "\n" for r in rel)
    if target.is_dir() and listing.exists() and listing.read_text() == text:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(folder, f".size-{size}.")
    for src, r in zip(paths, rel):
        dst = tmp / r
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(src, dst)
        except OSError:  # file systems without links: a copy scans the same
            shutil.copy2(src, dst)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    atomic_write_text(listing, text)
    return target


def _decode_square(path: str, resolution: int) -> np.ndarray:
    """Centre square crop resized to ``resolution`` (JPEGs decoded at reduced size first: much faster)."""
    from PIL import Image

    from copybench.preprocess import ImageReadError, read_image, to_rgb

    try:
        with Image.open(path) as img:
            img.draft("RGB", (resolution * 2, resolution * 2))  # a no-op for non-JPEGs
            img.load()
            rgb = to_rgb(img)
    except Exception:  # noqa: BLE001 - re-read the plain way, which raises ImageReadError naming the file
        rgb = read_image(path)
    w, h = rgb.size
    if min(w, h) < 1:
        raise ImageReadError(f"{path}: empty image")
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    sq = rgb.crop(box).resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(sq, dtype=np.uint8)


def load_pixels(
    paths: list[str], resolution: int, progress: bool = True
) -> tuple[np.ndarray, dict[int, str]]:
    """Decode ``paths`` to (N, R, R, 3) uint8 in parallel threads; unreadable rows are zero and listed."""
    from concurrent.futures import ThreadPoolExecutor

    from copybench.preprocess import ImageReadError
    from copybench.progress import progress_bar

    out = np.zeros((len(paths), resolution, resolution, 3), np.uint8)
    failed: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            out[i] = _decode_square(paths[i], resolution)
        except ImageReadError as exc:
            failed[i] = str(exc)

    workers = max(1, min(16, os.cpu_count() or 1))
    label = f"decoding {len(paths)} training images"
    with ThreadPoolExecutor(workers) as pool, progress_bar(label, len(paths), progress) as bar:
        for _ in pool.map(one, range(len(paths))):
            bar.advance()
    return out, failed


def shrink_folder(src: str | Path, dst: str | Path, resolution: int, progress: bool = True) -> list[str]:
    """Centre squares of every image under ``src`` at ``resolution``, as PNGs under ``dst`` (same relative
    names), e.g. to carry a large training folder to a machine without network; returns the unreadable files."""
    from PIL import Image

    from copybench.scan.search import find_images

    root, dst = Path(src).expanduser().resolve(), Path(dst)
    paths = find_images(root, "train")
    pixels, failed = load_pixels(paths, resolution, progress)
    for i, p in enumerate(paths):
        if i not in failed:
            target = (dst / Path(p).relative_to(root)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i]).save(target)
    return sorted(failed.values())
