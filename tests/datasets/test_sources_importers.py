"""Mask sources (cut-outs, VOC, COCO) and importers of real datasets (DISC21, Copydays, folder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from copybench.datasets import MaskError, SourceError, build_dataset, import_dataset, load_dataset
from copybench.datasets.masks import decode_rle


def _img(rng, h=48, w=64) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _circle_mask(h, w, label=1) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 3) ** 2).astype(np.uint8) * label


def test_cutouts_alpha_as_mask(tmp_path):
    d = tmp_path / "cut"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        rgba = np.dstack([np.asarray(_img(rng)), _circle_mask(48, 64, 255)])
        Image.fromarray(rgba, "RGBA").save(d / f"obj{i}.png")
    ds = build_dataset("segmix_hard-xs", tmp_path / "o", sources=f"cutouts:{d}", n_queries=5, progress=False)
    assert ds.meta["masks"] == "alpha"
    p = json.loads(ds.queries["params"][0])
    assert p["bg"].startswith("skimage.") or p["bg"].startswith(("sklearn.", "matplotlib."))


def _voc(root, rng, n=6, bad=None):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    for i in range(n):
        _img(rng).save(root / "JPEGImages" / f"2007_{i:06d}.jpg")
        h, w = (30, 30) if i == bad else (48, 64)
        mask = Image.fromarray(_circle_mask(h, w, label=1 + i % 3), "L").convert("P")
        mask.save(root / "SegmentationClass" / f"2007_{i:06d}.png")


def test_voc_masks_and_size_mismatch(tmp_path):
    rng = np.random.default_rng(1)
    _voc(tmp_path / "voc", rng)
    ds = build_dataset(
        "segmix-xs", tmp_path / "o", sources=f"voc:{tmp_path / 'voc'}", n_queries=5, progress=False
    )
    assert ds.meta["masks"] == "voc" and all(r.startswith("voc.") for r in ds.reference_ids)
    _voc(tmp_path / "bad", rng, bad=2)
    with pytest.raises(MaskError, match=r"2007_000002.*mask size 30x30 does not match its image 64x48"):
        build_dataset("segmix-xs", tmp_path / "o2", sources=f"voc:{tmp_path / 'bad'}", progress=False)


def _rle_compress(runs: list[int]) -> str:
    """COCO's string encoding of RLE counts (the inverse of the decoder under test)."""
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_rle_decoding():
    mask = np.zeros((5, 4), np.uint8)
    mask[1:4, 1:3] = 1
    flat = mask.T.ravel()  # column-major, zeros first
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    assert np.array_equal(decode_rle(runs, [5, 4]), mask)
    assert np.array_equal(decode_rle(_rle_compress(runs), [5, 4]), mask)
    with pytest.raises(MaskError, match="sum"):
        decode_rle([1, 2], [5, 4])


def test_coco_polygons_and_rle(tmp_path):
    rng = np.random.default_rng(2)
    imgs = tmp_path / "images"
    imgs.mkdir()
    images, anns = [], []
    for i in range(6):
        _img(rng).save(imgs / f"{i:012d}.jpg")
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "height": 48, "width": 64})
        if i % 2:
            seg = [[10, 10, 50, 10, 50, 40, 10, 40]]
        else:
            m = _circle_mask(48, 64)
            flat, runs, cur, n = m.T.ravel(), [], 0, 0
            for v in flat:
                if v != cur:
                    runs.append(n)
                    cur, n = v, 0
                n += 1
            runs.append(n)
            seg = {"counts": runs, "size": [48, 64]}
        anns.append({"id": 100 + i, "image_id": i, "category_id": 1, "segmentation": seg, "iscrowd": 0})
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns}))
    ds = build_dataset(
        "segmix_resized-xs", tmp_path / "o", sources=f"coco:{ann_file}:{imgs}", n_queries=5, progress=False
    )
    assert ds.meta["masks"] == "coco" and len(ds.reference_ids) >= 3


def test_disc21_import(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "disc"
    (src / "dev_queries").mkdir(parents=True)
    (src / "references").mkdir()
    for i in range(4):
        _img(rng).save(src / "references" / f"R{i:06d}.jpg")
    for i in range(3):
        _img(rng).save(src / "dev_queries" / f"Q{i:05d}.jpg")
    (src / "dev_ground_truth.csv").write_text(
        "query_id,reference_id\nQ00000,R000002\nQ00001,\nQ00002,R000000\n"
    )
    ds = import_dataset("disc21", src, tmp_path / "out", progress=False)
    assert ds.counts() == {"references": 4, "queries": 3, "distractors": 1}
    assert ds.positives["Q00000"] == {"R000002"} and ds.meta["images_root"] == str(src.resolve())
    again = import_dataset("disc21", src, tmp_path / "out2", progress=False)
    assert again.fingerprint == ds.fingerprint
    _img(rng).save(src / "references" / "R000001.jpg")  # new bytes, new fingerprint
    assert import_dataset("disc21", src, tmp_path / "out3", progress=False).fingerprint != ds.fingerprint
    (src / "dev_ground_truth.csv").write_text("query_id,reference_id\nQ00000,R009999\n")
    with pytest.raises(SourceError, match="R009999"):
        import_dataset("disc21", src, tmp_path / "out4", progress=False)
    (src / "dev_ground_truth.csv").write_text("query_id,reference_id\n")  # was a KeyError traceback
    with pytest.raises(SourceError, match="no query rows"):
        import_dataset("disc21", src, tmp_path / "out4", progress=False)


def test_import_never_deletes_images(tmp_path):
    built = build_dataset("crop-xs", tmp_path / "built", n_queries=4, progress=False)
    refs = sorted(p.name for p in (built.root / "references").iterdir())
    with pytest.raises(
        SourceError, match="contains the source folder"
    ):  # was: rmtree of the images it indexed
        import_dataset("folder", built.root / "references", built.root, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    _img(np.random.default_rng(5)).save(other / "a.jpg")
    with pytest.raises(
        SourceError, match="holds a built dataset"
    ):  # was: the built images replaced by an index
        import_dataset("folder", other, tmp_path / "built", progress=False)
    assert sorted(p.name for p in (built.root / "references").iterdir()) == refs
    index = import_dataset("folder", built.root / "references", tmp_path / "index", progress=False)
    assert (
        import_dataset("folder", built.root / "references", index.root, progress=False).fingerprint
        == index.fingerprint
    )


def test_copydays_import(tmp_path):
    rng = np.random.default_rng(4)
    src = tmp_path / "copydays"
    for sub in ("original", "crops/10", "crops/50", "jpegqual/15", "strong"):
        (src / sub).mkdir(parents=True)
    for block in ("2000", "2001"):
        _img(rng).save(src / "original" / f"{block}00.jpg")
        _img(rng).save(src / "crops" / "10" / f"{block}00.jpg")
        _img(rng).save(src / "jpegqual" / "15" / f"{block}00.jpg")
    _img(rng).save(src / "crops" / "50" / "200100.jpg")
    _img(rng).save(src / "strong" / "200001.jpg")
    _img(rng).save(src / "strong" / "200002.jpg")
    ds = import_dataset("copydays", src, tmp_path / "out", progress=False)
    assert ds.counts() == {"references": 2, "queries": 7, "distractors": 0}
    assert set(ds.queries["family"]) == {"crop", "jpeg", "strong"}
    assert ds.positives["strong_200002"] == {"200000"} and ds.positives["crop_50_200100"] == {"200100"}
    assert set(ds.queries.loc[ds.queries["family"] == "crop", "tier"]) == {"10", "50"}


def test_folder_import_and_bad_format(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "f" / "sub").mkdir(parents=True)
    _img(rng).save(tmp_path / "f" / "a.jpg")
    _img(rng).save(tmp_path / "f" / "sub" / "b.png")
    ds = import_dataset("folder", tmp_path / "f", tmp_path / "out", progress=False)
    assert ds.reference_ids == ["a", "sub__b"] and ds.counts()["queries"] == 0
    assert load_dataset(tmp_path / "out").fingerprint == ds.fingerprint
    with pytest.raises(SourceError, match="'nope'"):
        import_dataset("nope", tmp_path / "f", tmp_path / "o2", progress=False)
