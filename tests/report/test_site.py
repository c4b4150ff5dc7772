"""``copybench publish``: the site's content, determinism, downloads and bad input (the browser tests are in
test_site_browser.py)."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from copybench.cli import main
from copybench.report.site.build import MARKER, publish


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class _Rows(HTMLParser):
    """The text of each cell of each row of the first table of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tables, self.cell = 0, None

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        if self.tables == 1 and tag == "tr":
            self.rows.append([])
        if self.tables == 1 and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell.split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def first_table(page: Path) -> list[list[str]]:
    parser = _Rows()
    parser.feed(page.read_text())
    return parser.rows


def test_same_inputs_give_byte_identical_sites(site_results, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    publish([site_results], one)
    publish([site_results], two)
    first, second = _files(one), _files(two)
    assert sorted(first) == sorted(second)
    assert [p for p in first if first[p] != second[p]] == []
    svgs = [p for p in first if p.endswith(".svg")]
    assert len(svgs) >= 3  # PR curves of the board, one Pareto plot per device
    assert not [p for p in svgs if b"<dc:date>" in first[p]]  # matplotlib dates every SVG unless told not to
    # republishing over a site this builder wrote replaces it whole: a stray file does not survive
    (one / "stray.html").write_text("old")
    publish([site_results], one)
    assert _files(one) == second


def test_svg_figures_carry_no_date_and_fixed_ids():
    """Without the site's settings matplotlib writes a creation date and random ids; with them, the same bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from copybench.report.site.figures import RC, save_svg

    def draw(settings: dict) -> tuple:
        with matplotlib.rc_context(settings):
            fig, ax = plt.subplots()
            ax.plot([0, 1], [1, 0], label="a")
            ax.legend()
            plain = io.BytesIO()
            fig.savefig(plain, format="svg")
            return plain.getvalue(), save_svg(fig)

    (plain_1, site_1), (_, site_2) = draw(RC), draw(RC)
    assert b"<dc:date>" in plain_1 and b"<dc:date>" not in site_1
    assert site_1 == site_2
    unsalted = [draw({})[1] for _ in range(2)]  # dateless too: only the ids can differ
    assert unsalted[0] != unsalted[1]  # the salt, not luck, keeps the ids fixed


def test_index_ranks_random_weights_below_real_rows(site_results, tmp_path):
    publish([site_results], tmp_path / "site")
    rows = first_table(tmp_path / "site" / "index.html")
    header, body = rows[0], rows[1:]
    assert header[:3] == ["#", "detector", "µAP 95 % CI"]
    names = [r[1] for r in body]
    # fake_random scores 0.999, above both real rows, yet stays last, unranked and marked
    assert names[-1] == "fake_random random weights" and body[-1][0] == "-"
    values = [float(r[2][:5]) for r in body[:-1]]
    assert values == sorted(values, reverse=True)
    # competition ranks: equal headline values share a rank, the next one skips
    expected = [str(1 + sum(v > w for v in values)) for w in values]
    assert [r[0] for r in body[:-1]] == expected
    assert body[-1][-1] == "random"


def test_ranks_hand_computed():
    """Real rows by headline, ties share a rank; random rows after every real one, unranked, whatever they score;
    a result on a query subset gets its own board."""
    from copybench.report.site.boards import build_boards
    from copybench.report.site.inputs import Included
    from copybench.results import Result

    def item(name: str, value: float | None, status: str = "real") -> Included:
        result = Result(kind="accuracy", key={"detector": name, "protocol": "native"},
                        detector={"name": name, "weights": {"status": status}},
                        dataset={"name": "d", "fingerprint": "f" * 64}, metrics={"micro_ap": value})  # fmt: skip
        return Included(result, f"r/{name}.json", f"data/raw/r/{name}.json")

    items = [item("a", 0.5), item("b", 0.9), item("c", 0.5), item("r", 0.99, "random"), item("n", None),
             item("z", 0.7, "none")]  # fmt: skip
    subset = item("s", 0.95).result
    subset = Included(subset.replace(key={**subset.key, "subset": "dev"}), "r/s.json", "data/raw/r/s.json")
    board, on_subset = build_boards([*items, subset])
    assert [r.detector for r in on_subset.rows] == ["s"] and on_subset.slug.endswith("-native-subset-dev")
    assert [(r.detector, r.rank) for r in board.rows] == [
        ("b", 1),
        ("z", 2),
        ("a", 3),
        ("c", 3),
        ("n", 5),
        ("r", None),
    ]


def test_board_page_has_breakdowns_counts_and_figures(site_results, tmp_path):
    report = publish([site_results], tmp_path / "site")
    (slug,) = report.boards
    page = (tmp_path / "site" / f"board-{slug}.html").read_text()
    assert "tiny-handmade" in page and "crop" in page and "light" in page  # recipe, family, tier
    assert f'src="figures/pr-{slug}.svg"' in page and f'src="figures/examples-{slug}.jpg"' in page
    # the random-weight row has no predictions file: said on the page, not skipped silently
    assert "fake_random (random weights) has no PR curve" in page
    published = {"n_queries", "n_references"}
    assert published  # the published comparison is tested in test_published_figures_need_matching_counts


def test_pareto_plot_per_device_never_mixes_devices(site_results, tmp_path):
    report = publish([site_results], tmp_path / "site")
    figures = [f for f in report.files if f.startswith("figures/speed-")]
    assert sorted(f.split("--")[0] for f in figures) == ["figures/speed-Device-A", "figures/speed-Device-B"]
    page = (tmp_path / "site" / "speed.html").read_text()
    device_a, device_b = page.split("<h2>Device B</h2>")
    assert "Device-A/pixel_rgb_32.json" in device_a and "Device-B" not in device_a
    assert "Device-B/pixel_gray_16.json" in device_b and "Device-A" not in device_b
    assert "pixel_rgb_32" not in device_b  # measured on A only


def test_downloads_and_manifest(site_results, tmp_path):
    site = tmp_path / "site"
    publish([site_results], site)
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    files = _files(site)
    assert set(manifest["files"]) == set(files) - {"data/manifest.json"}
    for path, digest in manifest["files"].items():
        assert hashlib.sha256(files[path]).hexdigest() == digest, path
    sources = sorted(p for p in site_results.rglob("*.json"))
    assert len(manifest["results"]) == len(sources) == 6
    for entry in manifest["results"]:
        assert "git_commit" in entry and entry["copybench"] == "0.1.0"
        original = site_results.parent / entry["input"]
        assert (site / entry["file"]).read_bytes() == original.read_bytes()
    csv = pd.read_csv(site / "data" / "accuracy.csv")
    parquet = pd.read_parquet(site / "data" / "accuracy.parquet")
    assert len(csv) == len(parquet) and set(csv["result_file"]) <= set(manifest["files"])
    assert set(csv[csv["group"] == "all"]["detector"]) == {"pixel_gray_16", "pixel_rgb_32", "fake_random"}
    assert csv[csv["detector"] == "fake_random"]["random_weights"].all()
    assert len(pd.read_csv(site / "data" / "throughput.csv")) == 3


def test_bad_files_are_listed_and_warned_about(bad_results, tmp_path, capsys):
    results, expected = bad_results
    assert main(["publish", str(results), "--out", str(tmp_path / "site")]) == 0
    err = capsys.readouterr().err
    listed = {r[0]: r[1] for r in first_table(tmp_path / "site" / "not-included.html")[1:]}
    assert set(expected) <= set(listed)
    for label, word in expected.items():
        assert word in listed[label], (label, listed[label])
        assert label in err  # a warning on stderr names each file
    index = (tmp_path / "site" / "index.html").read_text()
    # the conflicting pixel_gray_16 results are both left out; the identical copy of pixel_rgb_32 is kept once
    assert (
        "pixel_gray_16"
        not in re.sub(r"<ul class=\"detectors\">.*</ul>", "", index, flags=re.DOTALL)
        .split("<table")[1]
        .split("</table>")[0]
    )
    assert index.count('href="detector-pixel_rgb_32.html"') == 2  # its board row and the detector list
    assert main(["publish", str(results), "--out", str(tmp_path / "strict"), "--strict"]) == 2


def test_empty_or_missing_input_is_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["publish", str(tmp_path / "empty"), "--out", str(tmp_path / "site")]) == 2
    assert "no result files" in capsys.readouterr().err
    assert main(["publish", str(tmp_path / "nowhere"), "--out", str(tmp_path / "site")]) == 2
    assert "no such results file or folder" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_an_existing_folder_that_is_not_a_site_is_refused(site_results, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["publish", str(site_results), "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert main(["publish", str(site_results), "--out", str(tmp_path / "file")]) == 2
    assert main(["publish", str(site_results), "--out", str(site_results / "site")]) == 2
    assert "inside the input" in capsys.readouterr().err and not (site_results / "site").exists()
    assert main(["publish", str(site_results), "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / MARKER).is_file()


def test_published_figures_need_matching_counts(site_results, tmp_path, monkeypatch):
    """A published figure is shown beside a measured one only when the counts agree; otherwise apart, with why."""
    from copybench.report import published

    result = json.loads(next((site_results / "acc").rglob("pixel_gray_16.json")).read_text())
    n = result["dataset"]["counts"]["queries"]
    figure = lambda value, queries: published.PublishedFigure(
        "synthetic",
        "all",
        "native",
        "pixel_gray_16",
        False,
        False,
        "micro_ap",
        value,
        queries,
        None,
        f"paper {value}",
    )
    monkeypatch.setattr(
        published, "load_published", lambda path=None: [figure(0.123, n), figure(0.456, n + 5)]
    )
    report = publish([site_results], tmp_path / "site")
    page = (tmp_path / "site" / f"board-{report.boards[0]}.html").read_text()
    beside, apart = page.split("not comparable")
    assert "paper 0.123" in beside and "paper 0.456" not in beside
    assert "paper 0.456" in apart and f"queries: yours {n}, published {n + 5}" in apart


def test_detector_page_shows_recorded_metadata_and_ranks(site_results, tmp_path):
    publish([site_results], tmp_path / "site")
    page = (tmp_path / "site" / "detector-pixel_gray_16.html").read_text()
    result = json.loads(next((site_results / "acc").rglob("pixel_gray_16.json")).read_text())
    assert result["detector"]["meta"]["paper"] in page
    assert "Device A" in page and "Device B" in page  # its throughput rows, one per device
    ranks = first_table(tmp_path / "site" / "detector-pixel_gray_16.html")
    assert ranks[1][1] in ("1", "2") and ranks[1][2] == "3"  # rank of 3 rows on the one board
    random_page = (tmp_path / "site" / "detector-fake_random.html").read_text()
    assert "random weights: numbers say nothing about the published model" in random_page


@pytest.mark.parametrize("examples", [False])
def test_no_examples_leaves_dataset_pictures_out(site_results, tmp_path, examples):
    report = publish([site_results], tmp_path / "site", examples=examples)
    assert not [f for f in report.files if f.endswith(".jpg")]
    assert "publish --no-examples" in (tmp_path / "site" / f"board-{report.boards[0]}.html").read_text()


def test_detector_page_links_release_source_and_weights_hash(site_results, tmp_path):
    """Metadata the result records (release date and its source, licence, weights sha256, paper link) is shown."""
    from copybench.results import read_result, write_result

    source = next((site_results / "acc").rglob("pixel_rgb_32.json"))
    result = read_result(source)
    meta = {**result.detector["meta"], "release_date": "2022-03", "release_source": "https://example.org/release",
            "license": "MIT", "paper": "A paper (https://example.org/paper)", "weights_hash": "ab" * 32}  # fmt: skip
    results = tmp_path / "results"
    write_result(results / "r.json", result.replace(detector={**result.detector, "meta": meta}, source=None))
    publish([results], tmp_path / "site")
    page = (tmp_path / "site" / "detector-pixel_rgb_32.html").read_text()
    assert '2022-03 (<a href="https://example.org/release">source</a>)' in page
    assert "<dd>MIT</dd>" in page and f"<code>{'ab' * 32}</code>" in page
    assert '<a href="https://example.org/paper">A paper (https://example.org/paper)</a>' in page
