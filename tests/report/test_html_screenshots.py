"""The HTML pages as a browser draws them: headless Chromium screenshots of leaderboard.html and report.html.

Skipped where no Chromium is installed (Debian: ``apt-get install chromium``). Set COPYBENCH_SCREENSHOTS=DIR to
keep the PNGs and look at them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "default"


def screenshot(page: Path, out: Path, tmp: Path, size: tuple[int, int] = (1400, 1000)) -> Image.Image:
    """A PNG of ``page`` as headless Chromium renders it (no network, no GPU, a throwaway profile)."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={out}",
    ]
    done = subprocess.run(
        [CHROMIUM, *flags, page.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-1500:]}"
    keep = os.environ.get("COPYBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / out.name)
    return Image.open(out).convert("RGB")


def _drawn(img: Image.Image) -> float:
    """Fraction of pixels that are not page background (white)."""
    arr = np.asarray(img).astype(int)
    return float((np.abs(arr - 255).sum(axis=2) > 30).mean())


@pytest.mark.skipif(not any(PUBLISHED.rglob("*.json")), reason="no published results")
def test_leaderboard_renders(tmp_path):
    from copybench.report.render import render_table

    page = tmp_path / "leaderboard.html"
    render_table(PUBLISHED, fmt="html", out=page)
    img = screenshot(page, tmp_path / "leaderboard.png", tmp_path)
    assert img.size == (1400, 1000)
    assert 0.02 < _drawn(img) < 0.6  # text and table rules drawn, not a blank or an error page


def test_scan_report_renders(tmp_path):
    from copybench.scan.pipeline import scan

    rng = np.random.default_rng(0)
    for folder, n in (("train", 6), ("gen", 4)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((96, 96), Image.BICUBIC).save(tmp_path / folder / f"{i}.jpg")
    summary = scan(
        tmp_path / "gen", tmp_path / "train", "pixel_gray_16", out=tmp_path / "scan", top_k=3, threshold=0.5
    )
    img = screenshot(tmp_path / "scan" / "report.html", tmp_path / "report.png", tmp_path, (1400, 2400))
    assert summary["counts"]["generated_scanned"] == 4
    assert 0.05 < _drawn(img) < 0.9
