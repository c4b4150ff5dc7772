"""The HTML leaderboard's markup: headers aligned like their cells, red only on a weights cell saying random,
date and commits shown."""

from __future__ import annotations

import re

import pandas as pd

from copybench.report.html import leaderboard_html


def _page() -> str:
    acc = pd.DataFrame(
        [
            {"detector": "random_proj_64", "weights": "none", "similarity": "cosine", "µAP": 0.5, "queries": 10},
            {"detector": "resnet50 (random weights)", "weights": "random", "similarity": "cosine", "µAP": 0.1,
             "queries": 10},
        ]
    )  # fmt: skip
    return leaderboard_html(
        acc, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), meta="generated X at commit Y"
    )


def test_only_the_weights_cell_saying_random_is_red():
    page = _page()
    red = re.findall(r'<td class="text random">([^<]*)</td>', page)
    assert red == ["random"]  # not random_proj_64's cells, not the detector label, not whole rows
    assert "tr class" not in page


def test_headers_align_like_their_cells():
    page = _page()
    heads = re.findall(r"<th( class=text)?>([^<]*)</th>", page)
    first_row = re.search(r"<tbody><tr>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td( class=\"text[^\"]*\")?[^>]*>", first_row)
    assert [bool(h[0]) for h in heads] == [bool(c) for c in cells]
    assert [h[1] for h in heads if not h[0]] == ["µAP", "queries"]  # numbers right-aligned, text left


def test_meta_line_is_shown():
    assert '<p class="meta">generated X at commit Y</p>' in _page()
