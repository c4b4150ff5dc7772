"""Synthetic recipes: every recipe builds, seeds fix fingerprints, replay is exact, ground truth is right."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from copybench.datasets import (
    DEFAULT_RECIPE,
    MaskError,
    RecipeError,
    SourceError,
    build_dataset,
    list_recipes,
    replay_query,
)
from copybench.datasets.masks import find_u2netp
from copybench.datasets.recipes import FAMILIES, MASKED, parse_recipe

HAS_U2NETP = find_u2netp() is not None


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A tiny 'photo': smooth gradients plus a bright blob (a salient object) and texture."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(xx * rng.uniform(2, 8)), np.cos(yy * rng.uniform(2, 8)), xx * yy], -1)
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.15, 0.3) * min(h, w)
    blob = ((np.mgrid[0:h, 0:w][0] - cy) ** 2 + (np.mgrid[0:h, 0:w][1] - cx) ** 2) < r**2
    img = (base * 0.5 + 0.25 + rng.normal(0, 0.05, (h, w, 3))) * 255
    img[blob] = rng.uniform(150, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """User photos in many formats, plus a zero-byte and a truncated file."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(_photo(rng, 60 + 8 * i, 80)).save(d / f"p{i}.jpg")
    Image.fromarray(_photo(rng, 64, 64)).save(d / "p5.webp")
    Image.fromarray(_photo(rng, 50, 70)).save(d / "p6.bmp")
    Image.fromarray(_photo(rng, 64, 64)).save(d / "p7.tiff")
    Image.fromarray(_photo(rng, 64, 64)[..., 0]).save(d / "gray.png")
    rgba = np.dstack([_photo(rng, 64, 64), np.full((64, 64), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(_photo(rng, 64, 64)[..., 1].astype(np.uint16) * 257).save(d / "deep16.png")
    Image.fromarray(_photo(rng, 64, 64)).convert("CMYK").save(d / "cmyk.jpg")
    (d / "empty.jpg").write_bytes(b"")
    good = d / "p0.jpg"
    (d / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    return d


def _all_families() -> list[str]:
    return [f for f in FAMILIES if f not in MASKED or HAS_U2NETP]


def test_list_recipes_and_default():
    names = [n for n, _ in list_recipes()]
    assert DEFAULT_RECIPE in names and "segmix_hard-s" in names and "crop-m" in names and "mixed-xs" in names
    assert all(desc for _, desc in list_recipes())
    assert parse_recipe("crop.strong-xs").tier == "strong"


@pytest.mark.parametrize("name", ["nope-s", "crop-xxl", "segmix.strong-s", "crop.hard-s", "crop"])
def test_unknown_recipe(name, tmp_path):
    with pytest.raises(RecipeError, match="Known recipes") as err:
        build_dataset(name, tmp_path / "x", progress=False)
    assert name in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("family", _all_families())
def test_every_recipe_builds_from_embedded(family, tmp_path):
    ds = build_dataset(f"{family}-xs", tmp_path / family, n_queries=6, seed=3, progress=False)
    assert ds.counts() == {"references": 19, "queries": 6, "distractors": 1}
    for p in ds.queries["path"]:
        assert np.asarray(Image.open(p)).dtype == np.uint8
    assert (ds.root / "contact_sheet.png").is_file() and ds.meta["images_root"] == "."
    params = [json.loads(p) for p in ds.queries["params"]]
    assert all(p["family"] for p in params)
    if family != "default":
        assert {p["family"] for p in params} == {family}


@pytest.mark.parametrize("family", _all_families())
def test_every_recipe_builds_from_folder(family, photo_dir, tmp_path):
    ds = build_dataset(f"{family}-xs", tmp_path / family, sources=str(photo_dir), n_queries=5, progress=False)
    assert sorted(ds.meta["skipped"]) == ["empty.jpg", "truncated.jpg"]
    skipped = (ds.root / "skipped.txt").read_text()
    assert "empty.jpg" in skipped and "truncated.jpg" in skipped
    assert ds.counts()["queries"] == 5 and ds.counts()["references"] >= 3


def test_same_seed_same_fingerprint_and_replay(tmp_path):
    a = build_dataset("mixed-xs", tmp_path / "a", n_queries=10, seed=7, progress=False)
    b = build_dataset("mixed-xs", tmp_path / "b", n_queries=10, seed=7, progress=False)
    c = build_dataset("mixed-xs", tmp_path / "c", n_queries=10, seed=8, progress=False)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.meta["pixels_sha256"] == b.meta["pixels_sha256"]
    for qid, path in zip(a.query_ids[:4], a.queries["path"][:4]):
        assert np.array_equal(replay_query(a, qid), np.asarray(Image.open(path).convert("RGB")))


def test_rebuild_replaces_dataset(tmp_path):
    out = tmp_path / "d"
    build_dataset("crop-xs", out, n_queries=3, progress=False)
    ds = build_dataset("flip-xs", out, n_queries=4, progress=False)
    assert ds.counts()["queries"] == 4 and len(list((out / "queries").iterdir())) == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(SourceError, match="not a copybench dataset"):
        build_dataset("crop-xs", tmp_path / "other", n_queries=3, progress=False)


def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        ds = build_dataset("crop-xs", tmp_path / "d", n_queries=3, progress=False)
    finally:
        os.umask(old)
    # mkdtemp/mkstemp made the folder 0700 and dataset.json 0600: unreadable by the rest of a team or CI
    assert (ds.root.stat().st_mode & 0o777) == 0o755
    assert ((ds.root / "dataset.json").stat().st_mode & 0o777) == 0o644


def test_distractors_have_no_reference_and_held_out_sources(tmp_path):
    ds = build_dataset("crop-xs", tmp_path / "d", n_queries=15, progress=False)
    refs = set(ds.reference_ids)
    dis = ds.queries[ds.queries["reference_id"] == ""]
    assert len(dis) == 3
    for p in dis["params"]:
        assert json.loads(p)["source"] not in refs


@pytest.mark.skipif(not HAS_U2NETP, reason="U2-Netp model not installed (.ci/setup.sh)")
def test_segmix_positive_is_source_not_background(tmp_path):
    ds = build_dataset("segmix_hard-xs", tmp_path / "s", n_queries=8, progress=False)
    refs = set(ds.reference_ids)
    for _, row in ds.queries.iterrows():
        p = json.loads(row["params"])
        assert p["bg"] not in refs and p["bg"] != p["source"]
        assert row["reference_id"] == ("" if p["distractor"] else p["source"])
        if p["label"] != 0:  # the background class is pasted in place, neither resized nor rotated
            assert 0.75 <= p["scale"] <= 1.0 and -10 <= p["angle"] <= 10


@pytest.mark.skipif(not HAS_U2NETP, reason="U2-Netp model not installed (.ci/setup.sh)")
def test_u2netp_saliency_mask_finds_object():
    from copybench.datasets.masks import saliency_mask

    img = np.full((200, 200, 3), 235, np.uint8)
    img[60:140, 70:130] = (200, 30, 30)
    mask = saliency_mask(img, find_u2netp())
    assert mask.shape == (200, 200) and set(np.unique(mask)) <= {0, 1}
    assert mask[100, 100] == 1 and mask[5, 5] == 0


def test_segmix_without_masks_fails_clearly(photo_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("copybench.datasets.sources.find_u2netp", lambda: None)
    with pytest.raises(MaskError, match="cutouts:DIR"):
        build_dataset("segmix-xs", tmp_path / "s", sources=str(photo_dir), n_queries=3, progress=False)
    ds = build_dataset("default-xs", tmp_path / "d", sources=str(photo_dir), n_queries=14, progress=False)
    assert "segmix_hard" not in set(ds.queries["family"])  # boxes pasted instead, never fake masks


def test_too_few_images(tmp_path):
    d = tmp_path / "few"
    d.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / "a.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / "b.png")
    (d / "c.jpg").write_bytes(b"")
    with pytest.raises(SourceError, match=r"only 2 usable image.*Skipped: c\.jpg"):
        build_dataset("crop-xs", tmp_path / "o", sources=str(d), progress=False)
