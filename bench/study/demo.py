"""The embedded data-size demo: a training folder made from images that installed packages ship, and the run.

The folder holds AugLy's Twemoji PNGs (872 emoji in ten categories, CC-BY 4.0, composited on white) and the
embedded default photos (scikit-image, scikit-learn, matplotlib; centre squares), each stored at the study's
resolution so that generations and training images meet the detector at the same size. Nothing is downloaded
and nothing third-party is committed: the files are written from the installed packages at run time.

The demo's settings are chosen so that a 2-core CPU finishes in about ten minutes and the effect stays visible:
a tiny UNet at 16 px predicting the clean image, the same number of steps for every size, so each image of the
smallest subset is seen about 1,600 times and memorised while each of the largest is seen about 25 times.
"""

from __future__ import annotations

import logging
from pathlib import Path

from copybench.options import renamed_keyword

log = logging.getLogger(__name__)

DEMO_SIZES = (8, 64, 512)
DEMO_RESOLUTION = 16
DEMO_STEPS = 800
DEMO_SAMPLES = 48
DEMO_BATCH = 16
DEMO_MODEL = "tiny"
DEMO_LR = 2e-3
# the UNet predicts the clean image: a tiny model then reproduces a handful of images within a few hundred
# steps, where noise prediction still draws noise (measured: docs/study.md)
DEMO_PREDICTION = "sample"
# At 16 px SSCD cannot tell copies from unrelated emoji (measured: README), so the demo scans with the
# correlation of 16x16 RGB thumbnails, the pixel-space test used for tiny images, at 0.9: near-identical.
DEMO_DETECTOR = "pixel_rgb_16"
DEMO_THRESHOLD = 0.9


def _emoji_files() -> list[Path]:
    from copybench.extras import require

    augly = require("augly")

    root = Path(augly.__file__).parent / "assets" / "twemojis"
    files = sorted(root.rglob("*.png"))
    if not files:
        raise FileNotFoundError(f"no emoji PNGs under {root}: is AugLy installed?")
    return files


def _square(img, resolution: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return img.crop(box).resize((resolution, resolution), Image.Resampling.LANCZOS)


def build_demo_images(folder: str | Path, resolution: int = DEMO_RESOLUTION) -> Path:
    """Write the demo training folder (emoji and embedded photos at ``resolution``); reused when complete."""
    import numpy as np
    from PIL import Image

    from copybench.datasets.sources import embedded_sources
    from copybench.io import make_temp_dir
    from copybench.preprocess import to_rgb

    folder = Path(folder)
    marker = folder / f".complete-{resolution}"
    if marker.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(folder.parent, f".{folder.name}.")
    for path in _emoji_files():
        with Image.open(path) as img:
            rgb = to_rgb(img)  # alpha composited on white
        (tmp / "emoji").mkdir(exist_ok=True)
        _square(rgb, resolution).save(tmp / "emoji" / f"{path.parent.name}__{path.stem}.png")
    refs, held = embedded_sources()
    (tmp / "photos").mkdir(exist_ok=True)
    for src in refs + held:
        _square(Image.fromarray(np.asarray(src.rgb)), resolution).save(tmp / "photos" / f"{src.id}.png")
    marker_tmp = tmp / marker.name
    marker_tmp.touch()
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


@renamed_keyword(cache_dir="descriptor_dir")
def study_demo(
    out: str | Path = "runs/study-demo",
    *,
    device: str = "cpu",
    detector: str = DEMO_DETECTOR,
    threshold: float = DEMO_THRESHOLD,
    seed: int = 0,
    descriptor_dir: str | Path | None = None,
    threads: int | None = 1,
    progress: bool = True,
) -> dict:
    """Build the demo folder under ``out/train`` and run the data-size study on it with the demo settings."""
    from copybench.settings import DEFAULT_CACHE
    from copybench.study.experiment import data_size_study

    out = Path(out)
    train = build_demo_images(out.parent / f"{out.name}-train", DEMO_RESOLUTION)
    return data_size_study(
        train,
        DEMO_SIZES,
        out,
        device=device,
        steps=DEMO_STEPS,
        resolution=DEMO_RESOLUTION,
        samples=DEMO_SAMPLES,
        detector=detector,
        threshold=threshold,
        seed=seed,
        model=DEMO_MODEL,
        batch_size=DEMO_BATCH,
        lr=DEMO_LR,
        prediction=DEMO_PREDICTION,
        threads=threads,
        descriptor_dir=DEFAULT_CACHE if descriptor_dir is None else descriptor_dir,
        progress=progress,
    )
