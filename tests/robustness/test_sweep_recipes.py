"""Sweep recipes: names, severities, one set of items at every level, seeded and byte-identical, replayable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from copybench.cli import main
from copybench.datasets import RecipeError, build_dataset, list_recipes, replay_query
from copybench.datasets.recipes import SWEEP_AXES, parse_recipe
from copybench.datasets.sweep import AXES, DEFAULT_LEVELS, locate, make_sweep


def test_parse_sweep_names() -> None:
    rec = parse_recipe("sweep-jpeg-xs")
    assert (rec.family, rec.axis, rec.n_queries) == ("sweep", "jpeg", 40)
    assert parse_recipe("sweep-all-s", 7).axis == "all" and parse_recipe("sweep-all-s", 7).n_queries == 7
    names = {n for n, _ in list_recipes()}
    assert {f"sweep-{a}-m" for a in (*SWEEP_AXES, "all")} <= names


def test_unknown_axis_names_the_valid_ones() -> None:
    with pytest.raises(RecipeError, match="crop, downscale, jpeg.*mix, all"):
        parse_recipe("sweep-zoom-xs")
    with pytest.raises(RecipeError, match="crop, downscale"):
        make_sweep("zoom")


def test_default_levels_span_each_axis() -> None:
    sw = make_sweep("all")
    assert sw.axes == SWEEP_AXES and sw.n_levels == DEFAULT_LEVELS
    assert sw.severities["crop"][0] == 1.0 and sw.severities["crop"][-1] == 0.05
    assert sw.severities["jpeg"] == (95, 82, 69, 56, 44, 31, 18, 5)  # integers, rounded from linspace
    assert sw.severities["rotation"][-1] == 180.0
    for a, ax in AXES.items():
        pos = [ax.position(v) for v in sw.severities[a]]
        assert pos[0] == pytest.approx(0) and pos[-1] == pytest.approx(1) and pos == sorted(pos)


@pytest.mark.parametrize("levels", [0, 1, -3])
def test_too_few_levels_refused(levels: int) -> None:
    with pytest.raises(RecipeError, match="at least 2 levels"):
        make_sweep("crop", levels)


def test_severities_checked_and_ordered_mild_first() -> None:
    assert make_sweep("jpeg", severities=[5, 95, 50]).severities["jpeg"] == (95, 50, 5)
    with pytest.raises(RecipeError, match=r"outside the jpeg axis's range: JPEG quality from 1 to 100"):
        make_sweep("jpeg", severities=[95, 0])
    with pytest.raises(RecipeError, match="rotation.*0 to 180"):
        make_sweep("rotation", severities=[10, 190])
    with pytest.raises(RecipeError, match="2 distinct"):
        make_sweep("blur", severities=[2, 2])
    with pytest.raises(RecipeError, match="single-axis"):
        make_sweep("all", severities=[0.1, 0.2])


def test_locate_walks_items_then_levels_then_axes() -> None:
    sw = make_sweep("all", 3)
    assert locate(sw, 5, 0) == ("crop", 0, 0)
    assert locate(sw, 5, 7) == ("crop", 1, 2)
    assert locate(sw, 5, 15) == ("downscale", 0, 0)
    assert locate(sw, 5, 5 * 3 * len(SWEEP_AXES) - 1) == ("mix", 2, 4)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sweep-zoom-xs"], "unknown sweep axis 'zoom'"),
        (["sweep-crop-xs", "--levels", "1"], "at least 2 levels"),
        (["sweep-jpeg-xs", "--severities", "95,120"], "outside the jpeg axis's range"),
        (["sweep-jpeg-xs", "--severities", "95,x"], "comma list of numbers"),
        (["crop-xs", "--levels", "4"], "apply to sweep recipes"),
    ],
)
def test_cli_bad_sweep_input_exits_2(tmp_path, capsys, args, needle) -> None:
    assert main(["--quiet", "data", "build", *args, "--out", str(tmp_path / "d")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def _params(ds) -> list[dict]:
    return [json.loads(p) for p in ds.queries["params"]]


@pytest.fixture(scope="module")
def sweep_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "ds"
    return build_dataset("sweep-all-xs", out, n_queries=5, seed=3, progress=False, levels=2)


def test_every_level_uses_the_same_items(sweep_ds) -> None:
    ps = _params(sweep_ds)
    assert len(ps) == 5 * 2 * len(SWEEP_AXES)
    by_item: dict[int, set] = {}
    for i, p in enumerate(ps):
        axis, level, item = locate(make_sweep("all", 2), 5, i)
        assert p["sweep"]["axis"] == axis and p["sweep"]["level"] == level
        assert p["sweep"]["severity"] == AXES[axis].defaults(2)[level]
        assert p["family"] == f"sweep_{axis}"
        by_item.setdefault(item, set()).add((p["source"], p["distractor"]))
    assert all(len(v) == 1 for v in by_item.values())  # one source per item, across axes and levels
    assert [next(iter(by_item[j]))[1] for j in range(5)] == [False] * 4 + [True]  # every 5th a distractor
    assert sweep_ds.meta["sweep"]["severities"]["jpeg"] == [95, 5]


def test_item_choices_fixed_across_levels(sweep_ds) -> None:
    ps = _params(sweep_ds)
    rot = [p for p in ps if p["sweep"]["axis"] == "rotation"]
    # item 0 at level 0 (0 degrees) and level 1 (180 degrees) turns the same way
    signs = {np.sign(p["angle"]) for p in rot if p["sweep"]["level"] == 1}
    assert all(abs(p["angle"]) == 180 for p in rot if p["sweep"]["level"] == 1) and signs
    crops = [p for p in ps if p["sweep"]["axis"] == "crop" and p["sweep"]["level"] == 1]
    for p in crops:  # kept area 0.05 of the source, exactly
        x0, y0, x1, y1 = p["crop"]
        sub = "sources" if p["distractor"] else "references"
        w, h = Image.open(sweep_ds.root / sub / f"{p['source']}.png").size
        assert (x1 - x0) * (y1 - y0) / (h * w) == pytest.approx(0.05, rel=1e-4)


def test_same_seed_same_bytes_and_replay(sweep_ds, tmp_path) -> None:
    again = build_dataset("sweep-all-xs", tmp_path / "b", n_queries=5, seed=3, progress=False, levels=2)
    assert again.fingerprint == sweep_ds.fingerprint
    assert again.meta["pixels_sha256"] == sweep_ds.meta["pixels_sha256"]
    for qid in sweep_ds.query_ids:
        assert (tmp_path / "b" / "queries" / f"{qid}.png").read_bytes() == (
            sweep_ds.root / "queries" / f"{qid}.png"
        ).read_bytes()
    for qid in ("Q000003", "Q000047", "Q000099"):  # crop, overlay and mix queries regenerated alone
        stored = np.asarray(Image.open(sweep_ds.root / "queries" / f"{qid}.png"))
        assert np.array_equal(replay_query(sweep_ds, qid), stored)


def test_custom_severities_change_the_fingerprint(tmp_path) -> None:
    a = build_dataset("sweep-jpeg-xs", tmp_path / "a", n_queries=2, progress=False, severities=[90, 10])
    b = build_dataset("sweep-jpeg-xs", tmp_path / "b", n_queries=2, progress=False, severities=[90, 20])
    assert a.fingerprint != b.fingerprint
    assert [json.loads(p)["jpeg"] for p in a.queries["params"]] == [90, 90, 10, 10]
