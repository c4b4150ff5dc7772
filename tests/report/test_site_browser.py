"""The published site in a real browser: Playwright driving the system Chromium (Debian's ``chromium``; .ci/setup.sh
installs it). Every page loads without a console error, every link and image resolves from ``file://``, sorting
reorders rows, and the index fits a desktop and a phone screen (screenshots read back).

Set COPYBENCH_SCREENSHOTS=DIR to keep the PNGs and look at them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from copybench.report.site.build import publish

CHROMIUM = Path("/usr/bin/chromium")
PROJECT_SITE = Path(__file__).resolve().parents[2] / "docs" / "leaderboard"


@pytest.fixture(scope="module")
def tiny_site(site_results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "site"
    publish([site_results], out)
    return out


@pytest.fixture(params=["tiny", "project"])
def site(request, tiny_site) -> Path:
    """The tiny test site, and the project's own committed board (docs/leaderboard)."""
    return tiny_site if request.param == "tiny" else PROJECT_SITE


@pytest.fixture(scope="module")
def browser():
    # not skipped when missing: these tests must run wherever the suite runs (.ci/setup.sh installs chromium)
    assert CHROMIUM.is_file(), "Chromium is missing: run .ci/setup.sh (or apt-get install -y chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _open(browser, page: Path, size: tuple[int, int] = (1280, 900)):
    """A loaded page and the console errors and failed requests it produced."""
    tab = browser.new_page(viewport={"width": size[0], "height": size[1]})
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))
    tab.goto(page.as_uri(), wait_until="load")
    return tab, errors


def test_every_page_loads_and_every_link_and_image_resolves(site, browser):
    pages = sorted(site.glob("*.html"))
    assert len(pages) >= 6
    for page in pages:
        tab, errors = _open(browser, page)
        assert errors == [], (page.name, errors)
        urls = tab.eval_on_selector_all("a[href], link[href]", "els => els.map(e => e.href)")
        urls += tab.eval_on_selector_all("img, script[src]", "els => els.map(e => e.src)")
        for url in urls:
            parsed = urlparse(url)
            if parsed.scheme in ("http", "https"):
                assert tab.eval_on_selector(f'a[href="{url}"]', "e => !!e"), f"{page.name}: asset from {url}"
                continue  # a paper or weights link in the metadata, never an asset
            assert parsed.scheme == "file", url
            assert Path(unquote(parsed.path)).is_file(), f"{page.name}: broken link {url}"
        broken = tab.eval_on_selector_all(
            "img", "els => els.filter(i => !i.complete || !i.naturalWidth).length"
        )
        assert broken == 0, page.name
        tab.close()


def _column(tab, board: str, col: int) -> list[str]:
    return tab.eval_on_selector_all(
        f"#{board} tbody tr", f"rows => rows.map(r => r.cells[{col}].textContent.trim())"
    )


def test_clicking_a_header_sorts_the_rows(tiny_site, browser):
    tab, errors = _open(browser, tiny_site / "index.html")
    board = tab.eval_on_selector("section.board", "e => e.id")
    before = _column(tab, board, 1)
    assert before[-1].startswith("fake_random")  # random weights last by default
    tab.click(f"#{board} thead th:nth-child(2)")  # detector, A to Z
    ascending = _column(tab, board, 1)
    assert ascending == sorted(before) and ascending != before
    tab.click(f"#{board} thead th:nth-child(2)")
    assert _column(tab, board, 1) == sorted(before, reverse=True)
    tab.click(f"#{board} thead th:nth-child(3)")  # headline metric, numerically
    values = [float(v[:5]) for v in _column(tab, board, 2)]
    assert values == sorted(values)
    assert errors == []


@pytest.mark.parametrize("size", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_index_screenshot_shows_the_first_board_without_horizontal_scroll(site, browser, tmp_path, size):
    tab, errors = _open(browser, site / "index.html", size)
    shot = tmp_path / f"index_{site.parent.name}_{size[0]}x{size[1]}.png"
    tab.screenshot(path=str(shot))
    width, inner = tab.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert width <= inner, f"the page scrolls sideways at {size}: {width} > {inner}"
    box = tab.eval_on_selector("section.board table", "t => t.getBoundingClientRect().toJSON()")
    assert box["right"] <= inner and box["top"] < size[1], box  # the first board starts on the first screen
    keep = os.environ.get("COPYBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (size[1], size[0])
    drawn = (np.abs(img - 255).sum(axis=2) > 30).mean()
    assert 0.03 < drawn < 0.6, drawn  # a page was drawn: neither blank nor a solid block
    assert errors == []
