"""The HTML leaderboard: one board per dataset and protocol with that protocol's own columns, dataset and
fingerprint said once per board, per-family rows sorted by the metric, its plots inline, red only on a weights
cell saying random, headers aligned like their cells, and the date and commits shown."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from copybench.cli import main
from copybench.report.cells import table
from copybench.report.render import render_table
from copybench.report.table import read_report_results


def test_only_the_weights_cell_saying_random_is_red():
    acc = pd.DataFrame(
        [
            {"detector": "random_proj_64", "weights": "none", "similarity": "cosine", "µAP": 0.5, "queries": 10},
            {"detector": "resnet50 (random weights)", "weights": "random", "similarity": "cosine", "µAP": 0.1,
             "queries": 10},
        ]
    )  # fmt: skip
    cells = [c for row in table(acc)["rows"] for c in row]
    assert [c["text"] for c in cells if c["cls"] == "text random"] == ["random"]
    heads = table(acc)["columns"]
    assert [h["name"] for h in heads if not h["text"]] == ["µAP", "queries"]  # numbers right-aligned
    first = table(acc)["rows"][0]
    assert [bool(h["text"]) for h in heads] == [bool(c["cls"]) for c in first]


@pytest.fixture(scope="module")
def two_protocols(tmp_path_factory, tiny_dataset_module):
    """A tiny dataset scored under native (pixel_gray_8, efficientnet_lite0) and dcr (efficientnet_lite0)."""
    tmp, data = tmp_path_factory.mktemp("two_protocols"), tiny_dataset_module
    common = ["--dataset", str(data), "--results", str(tmp / "res"), "--no-cache", "--n-boot", "20"]
    assert main(["-q", "run", "--detectors", "pixel_gray_8,efficientnet_lite0", *common]) == 0
    assert main(["-q", "run", "--detectors", "efficientnet_lite0", "--protocol", "dcr", *common]) == 0
    return tmp / "res", data


def test_a_board_per_dataset_and_protocol_with_its_plots(two_protocols, tmp_path):
    res, _ = two_protocols
    page = render_table(res, fmt="html", out=tmp_path / "lb.html")
    boards = re.findall(r"<h2>(.*?)</h2>", page)
    assert boards == ["tiny &middot; protocol dcr", "tiny &middot; protocol native"]
    assert page.count("<svg") == 4  # each board: PR curves and per-family bars, inline
    headers = re.findall(r'<table class="sortable">.*?</thead>', page, re.DOTALL)
    native = next(h for h in headers if "µAP 95% CI" in h)
    dcr = next(h for h in headers if "R@1 (frac)" in h)
    assert "R@1 (frac)" not in native and "µAP" not in dcr  # each protocol its own columns
    for header in headers:
        assert "fingerprint" not in header and ">dataset<" not in header  # said once, above the table
    assert "generated " in page and "at commit" in page


def test_per_family_rows_are_sorted_by_the_metric(two_protocols):
    from copybench.report.html import family_frame

    results = [r for r in read_report_results(two_protocols[0]) if r.key.get("protocol") == "native"]
    frame = family_frame(results, "native")
    overall = {r.detector_name: r.metrics["micro_ap"] for r in results}
    assert list(frame.index) == sorted(overall, key=lambda d: -overall[d])


def test_markdown_has_one_table_per_protocol_with_its_own_columns(two_protocols):
    md = render_table(two_protocols[0], fmt="md")
    sections = re.split(r"^### ", md, flags=re.MULTILINE)[1:]
    native = next(s for s in sections if "protocol native" in s.splitlines()[0])
    dcr = next(s for s in sections if "protocol dcr" in s.splitlines()[0])
    assert "µAP" in native and "R@1 (frac)" not in native
    assert "R@1 (frac)" in dcr and "| µAP |" not in dcr


def test_columns_all_shows_every_column_of_the_protocol(two_protocols):
    head = render_table(two_protocols[0], fmt="md", protocol="native").splitlines()
    full = render_table(two_protocols[0], fmt="md", protocol="native", columns="all").splitlines()
    header = next(line for line in head if line.startswith("| detector"))
    every = next(line for line in full if line.startswith("| detector"))
    assert "R@10" not in header and "MRR" not in header
    assert "R@10" in every and "MRR" in every and "mAP 95% CI" in every


def test_csv_of_several_protocols_is_one_file_each(two_protocols, tmp_path, capsys):
    res = str(two_protocols[0])
    assert main(["table", res, "--format", "csv"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["table", res, "--format", "csv", "--out", str(tmp_path / "board.csv")]) == 0
    native = pd.read_csv(tmp_path / "board.native.csv")
    dcr = pd.read_csv(tmp_path / "board.dcr.csv")
    assert set(native["protocol"]) == {"native"} and set(dcr["protocol"]) == {"dcr"}
    assert "recall_frac_at_1" in dcr and "recall_frac_at_1" not in native
    one = pd.read_csv(__import__("io").StringIO(render_table(res, fmt="csv", protocol="dcr")))
    assert set(one["protocol"]) == {"dcr"}


def test_plots_are_one_figure_per_protocol(two_protocols, tmp_path):
    from copybench.report.plots import plot_results

    names = {p.name for p in plot_results(two_protocols[0], tmp_path)}
    native = [n for n in names if n.startswith("pr_") and "__" not in n]
    dcr = [n for n in names if n.startswith("pr_") and n.endswith("__dcr.png")]
    assert len(native) == 1 and len(dcr) == 1


def test_one_colour_per_detector_in_every_plot(two_protocols):
    from copybench.report.plots import colours

    results = read_report_results(two_protocols[0])
    palette = colours(results)
    assert set(palette) == {"pixel_gray_8", "efficientnet_lite0"}  # by detector, not by settings label
    assert palette == colours(list(reversed(results)))  # the order results are read in changes nothing


def test_a_report_skips_non_result_json_quietly_and_lists_a_copied_result_once(
    two_protocols, tmp_path, caplog
):
    import logging
    import shutil

    root = tmp_path / "tree"
    shutil.copytree(two_protocols[0], root / "a")
    shutil.copytree(two_protocols[0], root / "b")  # the same results again
    (root / "a" / "dataset.json").write_text('{"name": "not a result"}')
    (root / "summary.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger="copybench.report.table"):
        results = read_report_results(root)
    assert len(results) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 3 and all("listed once" in w for w in warnings)  # the three copies, by path
    assert not any("dataset.json" in w or "summary.json" in w for w in warnings)


def test_mean_rank_uses_only_the_datasets_every_ranked_detector_ran_on():
    from copybench.report.table import rank_aggregate

    frame = pd.DataFrame(
        [
            {"dataset": "A", "protocol": "native", "detector": "sscd", "µAP": 0.9},
            {"dataset": "B", "protocol": "native", "detector": "sscd", "µAP": 0.8},
            {"dataset": "A", "protocol": "native", "detector": "pixels", "µAP": 0.5},
            {"dataset": "B", "protocol": "native", "detector": "pixels", "µAP": 0.6},
            {"dataset": "A", "protocol": "native", "detector": "plugin", "µAP": 0.99},  # one dataset only
        ]
    )
    ranks = rank_aggregate(frame).set_index("detector")
    assert ranks.loc["sscd", "mean_rank"] == 1.0 and ranks.loc["pixels", "mean_rank"] == 2.0
    assert (
        pd.isna(ranks.loc["plugin", "mean_rank"]) and ranks.loc["plugin", "coverage"] == "incomplete: 1 of 2"
    )
