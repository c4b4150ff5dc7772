"""The segmix family and cutmix against the study's code (DCR, utils_ret.py): transform statistics of each
recipe, paste order (transforms on the source, never on the background), autocontrast without warp padding,
the embedded background pool, replay and fingerprints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from copybench.datasets import build_dataset, replay_query
from copybench.datasets.params import PoolView, sample_query
from copybench.datasets.recipes import parse_recipe
from copybench.datasets.render import VALID, autocontrast, render
from copybench.datasets.sources import Pool, SourceImage, embedded_backgrounds, embedded_sources

N = 2000  # sampled queries per statistic: a share p is within 3 sigma = 3 sqrt(p(1-p)/N) <= 0.034


def _source(sid: str, h: int, w: int, seed: int, with_mask: bool = True) -> SourceImage:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    mask = None
    if with_mask:
        yy, xx = np.mgrid[0:h, 0:w]
        mask = (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 3) ** 2).astype(np.uint8)
    return SourceImage(sid, sid, rgb, mask)


@pytest.fixture(scope="module")
def pool() -> Pool:
    refs = [_source(f"r{i}", 96 + 8 * i, 128, i) for i in range(4)]
    held = [_source(f"h{i}", 100, 100, 10 + i) for i in range(2)]
    bgs = [_source(f"b{i}", 120, 160, 20 + i, with_mask=False) for i in range(3)]
    return Pool("test", refs, held, bgs, "alpha")


@pytest.fixture(scope="module")
def view(pool) -> PoolView:
    return PoolView.of(pool)


def _sample(family: str, view: PoolView, n: int = N) -> list[dict]:
    rec = parse_recipe(f"{family}-xs", n)
    out = [sample_query(rec, 0, i, view, True) for i in range(n)]
    return [p for p in out if not p["distractor"]]


def _share(ps: list[dict], pred) -> float:
    return float(np.mean([bool(pred(p)) for p in ps]))


def _study_rand_bbox_area(rng: np.random.Generator, w: int, h: int, n: int) -> float:
    """Mean pasted area of the study's rand_bbox (CutMix), written here from its definition."""
    areas = []
    for _ in range(n):
        lam = rng.beta(1.0, 1.0)
        cw, ch = int(w * np.sqrt(1.0 - lam)), int(h * np.sqrt(1.0 - lam))
        cx, cy = rng.integers(w), rng.integers(h)
        x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        areas.append((x1 - x0) * (y1 - y0) / (w * h))
    return float(np.mean(areas))


def test_cutmix_box_is_the_studys_clipped_box(view):
    ps = _sample("cutmix", view)
    areas = []
    for p in ps:
        oh, ow = p["out"]
        x0, y0, x1, y1 = p["box"]
        assert 0 <= x0 <= x1 <= ow and 0 <= y0 <= y1 <= oh and all(float(v).is_integer() for v in p["box"])
        areas.append((x1 - x0) * (y1 - y0) / (ow * oh))
    study = _study_rand_bbox_area(np.random.default_rng(123), 320, 240, 20000)
    assert abs(study - 0.32) < 0.01  # the figure for the study's box
    assert abs(np.mean(areas) - study) < 0.02  # not 0.50, the mean of a box always inside the image
    assert _share(ps, lambda p: p["box"][0] == 0 or p["box"][2] == p["out"][1]) > 0.3  # clipped at the border
    assert abs(_share(ps, lambda p: p["direction"] == "source_into_other") - 0.5) < 0.04
    for p in ps:  # the positive is always the source, whichever way the box goes
        assert p["source"] in (p["fg"], p["bg"]) and p["fg"] != p["bg"]


@pytest.mark.parametrize(
    ("family", "bg_share"), [("segmix", 0.5), ("segmix_hard", 0.5), ("segmix_resized", 0.0)]
)
def test_background_class_share(family, bg_share, view):
    # every test source has one object class and the background: the study draws among both (segmix,
    # segmix_hard: classes > -100) or among objects only (segmix_resized: classes > 0)
    ps = _sample(family, view)
    assert abs(_share(ps, lambda p: p["label"] == 0) - bg_share) < 0.04
    assert all(p["label"] in (0, 1) for p in ps)


@pytest.mark.parametrize(
    ("family", "resize", "sol", "auto_p"),
    [("segmix_hard", (0.75, 1.0), 0.9, 0.3), ("segmix_resized", (0.5, 1.0), 0.8, 0.5)],
)
def test_segmix_transformed_statistics(family, resize, sol, auto_p, view):
    ps = _sample(family, view)
    assert abs(_share(ps, lambda p: p["jitter"]) - 0.8) < 0.04
    assert abs(_share(ps, lambda p: p["gray"]) - 0.3) < 0.04
    assert abs(_share(ps, lambda p: p["solarize"] == sol) - 0.5) < 0.04
    assert abs(_share(ps, lambda p: p["autocontrast"]) - auto_p) < 0.04
    assert abs(_share(ps, lambda p: p["flips"][0]) - 0.5) < 0.04
    assert abs(_share(ps, lambda p: p["flips"][1]) - 0.2) < 0.04
    sig = np.array([p["blur"][1] for p in ps])
    assert all(p["blur"][0] == 5 for p in ps) and sig.min() >= 0.1 and sig.max() <= 4.0
    jit = np.array([p["jitter"] for p in ps if p["jitter"]])
    assert (np.abs(jit - [1, 1, 1, 0]) <= [0.4, 0.4, 0.2, 0.1]).all()
    orders = {tuple(p["jitter_order"]) for p in ps if p["jitter"]}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(orders) > 12  # ColorJitter's random order
    objects = [p for p in ps if p["label"] != 0]
    scales = np.array([p["scale"] for p in objects])
    assert resize[0] <= scales.min() and scales.max() <= resize[1]
    assert all(-10 <= p["angle"] <= 10 for p in objects)
    for p in ps:
        if p["label"] == 0:  # the background class: pasted in place after the flips, not resized or rotated
            assert "scale" not in p
        else:
            assert p["paste_at"][0] >= 0 and p["paste_at"][1] >= 0


def _segmix_params(view: PoolView, **change) -> dict:
    p = next(p for p in _sample("segmix_hard", view, 200) if p["label"] == 1)
    p = {**p, **change}
    return json.loads(json.dumps(p))


def _paste_alpha(p: dict, pool: Pool) -> np.ndarray:
    """Where the segment lands: the object mask taken through H_pre then H (nearest pixel centres)."""
    from copybench.datasets.render import _canvas, _warp

    c = _canvas([p], pool.by_id(), "fg", True)
    pre = _warp(c, [p["H_pre"]], tuple(p["out"]), "cpu", padding="border")
    return _warp(pre[:, 3:4], [p["H"]], tuple(p["out"]), "cpu")[0, 0].numpy()


def test_blur_and_colour_only_on_the_pasted_segment(view, pool):
    base = {
        "jitter": [1.3, 0.7, 1.1, 0.05],
        "jitter_order": [3, 1, 0, 2],
        "autocontrast": True,
        "gray": False,
    }
    soft = _segmix_params(view, blur=[5, 0.1], **base)
    hard = {**soft, "blur": [5, 4.0]}
    a, b = render([soft, hard], pool.by_id())
    alpha = _paste_alpha(soft, pool)
    outside, inside = alpha == 0, alpha >= 0.999
    assert outside.sum() > 1000 and inside.sum() > 500
    # the background is never transformed: identical whatever the blur, and equal to the plain background
    assert np.array_equal(a[outside], b[outside])
    plain = render([{**soft, "label": 7}], pool.by_id())[0]  # no pixel of class 7: the background alone
    assert np.array_equal(a[outside], plain[outside])
    assert np.abs(a[inside].astype(int) - b[inside].astype(int)).mean() > 2  # the segment is blurred


def test_autocontrast_ignores_padding():
    x = torch.zeros(1, 3, 20, 20)
    x[:, :, 5:15, 5:15] = torch.linspace(0.2, 0.6, 100).view(1, 1, 10, 10)
    w = torch.zeros(1, 1, 20, 20)
    w[:, :, 5:15, 5:15] = 1
    y = autocontrast(x.clone(), w)
    inner = y[:, :, 5:15, 5:15]
    assert torch.allclose(inner.amin(dim=(2, 3)), torch.zeros(1, 3)) and torch.allclose(
        inner.amax(dim=(2, 3)), torch.ones(1, 3)
    )
    assert torch.allclose(inner, (x[:, :, 5:15, 5:15] - 0.2) / 0.4, atol=1e-6)
    flat = autocontrast(torch.full((1, 3, 4, 4), 0.3), torch.ones(1, 1, 4, 4))
    assert torch.equal(flat, torch.full((1, 3, 4, 4), 0.3))  # torchvision leaves a flat channel alone


def test_rotated_colour_copy_autocontrast_spans_the_image_not_the_padding(view, pool):
    p = _sample("color", view, 20)[0]
    oh, ow = p["out"]
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    rot = np.array(
        [[c, -s, ow / 2 - c * ow / 2 + s * oh / 2], [s, c, oh / 2 - s * ow / 2 - c * oh / 2], [0, 0, 1]]
    )
    p = json.loads(json.dumps({**p, "H": (rot @ np.array(p["H"])).tolist(), "jitter": None, "gray": False,
                               "solarize": None, "autocontrast": True}))  # fmt: skip
    img = render([p], pool.by_id())[0]
    v = _valid(p, pool)
    inside, padding = v >= VALID, v == 0
    assert (img[padding] == 0).all() and padding.sum() > 1000  # the black corners of the rotation
    vals = img[inside]
    assert (vals.min(axis=0) == 0).all() and (vals.max(axis=0) == 255).all()  # sources span 60..199 only


def _valid(p: dict, pool: Pool) -> np.ndarray:
    from copybench.datasets.render import _canvas, _warp

    c = _canvas([p], pool.by_id(), "fg", True)
    return _warp(c, [p["H"]], tuple(p["out"]), "cpu")[0, 4].numpy()


def test_embedded_background_pool():
    refs, held = embedded_sources()
    bgs = embedded_backgrounds()
    ref_ids = {s.id for s in refs}
    assert len(bgs) >= 12 and not ref_ids & {b.id for b in bgs}
    assert {s.id for s in held} <= {b.id for b in bgs}
    assert len({b.digest() for b in bgs}) == len(bgs)  # all different images
    # whole photos are held out, never a part of a reference's photo: a paste onto the other half of a
    # reference's photo came back with that reference as the (counted wrong) rank-1
    photos = [
        {s.origin.split("[")[0] for s in group} for group in (refs, (*held, *bgs))
    ]  # "...retina[tile 0,1]"
    assert not photos[0] & photos[1]


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory):
    d = tmp_path_factory.mktemp("cutouts")
    for i in range(6):
        src = _source(f"c{i}", 80 + 6 * i, 96, 40 + i)
        rgba = np.dstack([src.rgb, src.mask * 255])
        Image.fromarray(rgba, "RGBA").save(d / f"c{i}.png")
    return d


@pytest.mark.parametrize("family", ["segmix_hard", "cutmix"])
def test_replay_and_fingerprint(family, cutouts, tmp_path, monkeypatch):
    kw = {"sources": f"cutouts:{cutouts}", "n_queries": 6, "seed": 5, "progress": False}
    a = build_dataset(f"{family}-xs", tmp_path / "a", **kw)
    b = build_dataset(f"{family}-xs", tmp_path / "b", **kw)
    assert a.fingerprint == b.fingerprint and a.meta["pixels_sha256"] == b.meta["pixels_sha256"]
    assert a.meta["recipe_version"] == 2
    for qid, path in zip(a.query_ids[:2], a.queries["path"][:2]):
        assert np.array_equal(replay_query(a, qid), np.asarray(Image.open(path).convert("RGB")))
    if family == "segmix_hard":  # once: the recipe version is part of what a dataset is
        monkeypatch.setattr("copybench.datasets.build.RECIPE_VERSION", 99)
        c = build_dataset(f"{family}-xs", tmp_path / "c", **kw)
        assert c.fingerprint != a.fingerprint
