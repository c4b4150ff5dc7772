"""Imports that cannot corrupt a benchmark: duplicates refused or reported, refusals that leave nothing behind
and never remove an earlier index, one symlink policy, and datasets that cannot lose their integrity record."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from copybench.cli import main
from copybench.datasets import SourceError, import_dataset
from copybench.datasets.duplicates import NEAR_DUPLICATE_BITS, phash64

PHOTOS = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee, "chelsea": skimage.data.chelsea,
          "rocket": skimage.data.rocket, "camera": skimage.data.camera}  # fmt: skip


def _photo(path, name: str, side: int = 160) -> Image.Image:
    img = Image.fromarray(PHOTOS[name]()).convert("RGB")
    img.thumbnail((side, side))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return img


@pytest.fixture
def mine(tmp_path):
    """A csv-manifest benchmark of three references and two queries (flipped copies), plus a manifest."""
    root = tmp_path / "mine"
    for name in ("astronaut", "coffee", "chelsea"):
        _photo(root / "refs" / f"{name}.png", name)
    _mkdir(root / "q")
    for name in ("astronaut", "coffee"):
        flipped = Image.open(root / "refs" / f"{name}.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.save(root / "q" / f"{name}.png")
    rows = [("q/astronaut.png", "refs/astronaut.png"), ("q/coffee.png", "refs/coffee.png"),
            ("", "refs/chelsea.png")]  # fmt: skip
    pd.DataFrame(rows, columns=["query", "reference"]).to_csv(root / "ok.csv", index=False)
    return root


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_distractor_identical_to_a_reference_is_refused_naming_both(mine, tmp_path, capsys):
    dx = _mkdir(tmp_path / "DX")
    shutil.copy(mine / "refs" / "astronaut.png", dx / "dupref.png")
    _photo(dx / "other.png", "rocket")
    code = main(["data", "import", "csv", str(mine / "ok.csv"), "--distractors", str(dx), "--out",
                 str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "dupref.png" in err and "astronaut.png" in err and "byte-identical" in err
    assert not (tmp_path / "out").exists()


def test_two_identical_references_are_refused_naming_both(tmp_path):
    src = tmp_path / "f"
    _photo(src / "a.png", "coffee")
    _mkdir(src / "sub")
    shutil.copy(src / "a.png", src / "sub" / "copy_of_a.png")
    with pytest.raises(SourceError, match=r"copy_of_a\.png.*byte-identical to .*a\.png"):
        import_dataset("folder", src, tmp_path / "out", progress=False)


def test_a_query_identical_to_a_reference_it_is_not_paired_with_is_refused(mine, tmp_path):
    shutil.copy(mine / "refs" / "chelsea.png", mine / "q" / "astronaut.png")  # the query is chelsea's bytes
    with pytest.raises(
        SourceError, match=r"q/astronaut\.png.*byte-identical to .*chelsea\.png.*does not pair"
    ):
        import_dataset("csv", mine / "ok.csv", tmp_path / "out", progress=False)


def test_a_query_identical_to_its_own_reference_is_a_copy_and_accepted(mine, tmp_path):
    shutil.copy(
        mine / "refs" / "coffee.png", mine / "q" / "coffee.png"
    )  # Copydays' jpegqual/100 is like this
    ds = import_dataset("csv", mine / "ok.csv", tmp_path / "out", progress=False)
    assert ds.counts()["queries"] == 2


def test_near_duplicate_distractors_are_reported_and_listed(mine, tmp_path, caplog):
    dx = _mkdir(tmp_path / "DX")
    ref = Image.open(mine / "refs" / "coffee.png")
    ref.resize((ref.width // 2, ref.height // 2), Image.Resampling.BILINEAR).save(
        dx / "small.jpg", quality=40
    )
    _photo(dx / "unrelated.png", "camera")
    with caplog.at_level(logging.WARNING):
        ds = import_dataset("csv", mine / "ok.csv", tmp_path / "out", progress=False, distractors=[dx])
    pairs = ds.meta["near_duplicates"]
    assert [(p["distractor"], p["reference"]) for p in pairs] == [("small", "refs__coffee")]
    assert 0 <= pairs[0]["bits"] <= NEAR_DUPLICATE_BITS
    assert ds.meta["near_duplicate_check"] == {"hash": "phash64", "max_bits": NEAR_DUPLICATE_BITS}
    assert "near-duplicate" in caplog.text and "small.jpg" in caplog.text and "coffee.png" in caplog.text
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["near_duplicates"] == pairs


def test_data_import_reports_near_duplicates_and_links_in_its_summary(mine, tmp_path, capsys, caplog):
    dx = _mkdir(tmp_path / "DX")
    Image.open(mine / "refs" / "astronaut.png").save(dx / "same_pixels.jpg", quality=60)  # re-encoded copy
    (mine / "refs" / "chelsea_link.png").symlink_to(mine / "refs" / "chelsea.png")
    rows = [("q/astronaut.png", "refs/astronaut.png"), ("", "refs/chelsea_link.png")]
    pd.DataFrame(rows, columns=["query", "reference"]).to_csv(mine / "l.csv", index=False)
    argv = [
        "-q",
        "data",
        "import",
        "csv",
        str(mine / "l.csv"),
        "--distractors",
        str(dx),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "1 near-duplicate distractor(s)" in err and "1 symbolic link(s) followed" in err
    assert "same_pixels.jpg" in caplog.text and "astronaut.png" in caplog.text  # the warning names both files


def test_phash_threshold_separates_copies_from_other_photos(tmp_path):
    """The measurement behind NEAR_DUPLICATE_BITS, on five of the embedded photos: downscaled and re-encoded
    copies stay within it of their photo, different photos stay far outside it."""
    hashes = {}
    for name in PHOTOS:
        img = _photo(tmp_path / f"{name}.png", name, side=512)
        hashes[name] = phash64(tmp_path / f"{name}.png")
        for f, q in ((2, 90), (4, 50), (4, 20)):
            img.resize((img.width // f, img.height // f), Image.Resampling.BILINEAR).save(
                tmp_path / "c.jpg", quality=q
            )
            assert (phash64(tmp_path / "c.jpg") ^ hashes[name]).bit_count() <= NEAR_DUPLICATE_BITS // 2
    names = sorted(hashes)
    apart = [(hashes[a] ^ hashes[b]).bit_count() for i, a in enumerate(names) for b in names[i + 1 :]]
    assert min(apart) >= 2 * NEAR_DUPLICATE_BITS
    assert phash64(tmp_path / "missing.png") is None
    np.testing.assert_equal(phash64(tmp_path / "coffee.png"), hashes["coffee"])  # deterministic


@pytest.mark.parametrize("cell", ["../secret.png", "ABSOLUTE"])
def test_a_manifest_pointing_outside_its_folder_is_refused_before_anything_is_read(
    mine, tmp_path, monkeypatch, cell
):
    secret = _photo(tmp_path / "secret.png", "camera") and tmp_path / "secret.png"
    cell = str(secret) if cell == "ABSOLUTE" else cell
    rows = [("q/astronaut.png", "refs/astronaut.png"), ("", cell)]
    pd.DataFrame(rows, columns=["query", "reference"]).to_csv(mine / "out.csv", index=False)
    read = []
    monkeypatch.setattr("copybench.datasets.importers.file_sha256", lambda p: read.append(p) or "0" * 64)
    with pytest.raises(SourceError, match=r"out\.csv.*secret\.png.*outside the manifest's folder"):
        import_dataset("csv", mine / "out.csv", tmp_path / "idx", progress=False)
    assert read == [] and not (tmp_path / "idx").exists()


def test_a_refused_import_keeps_the_earlier_index_and_leaves_nothing_it_created(mine, tmp_path, monkeypatch):
    good = import_dataset("csv", mine / "ok.csv", tmp_path / "idx", progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}
    pd.DataFrame([("", "../x.png")], columns=["query", "reference"]).to_csv(mine / "bad.csv", index=False)
    _photo(tmp_path / "x.png", "rocket")
    with pytest.raises(SourceError):
        import_dataset("csv", mine / "bad.csv", tmp_path / "idx", progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()} == before
    from copybench.datasets import load_dataset

    assert load_dataset(tmp_path / "idx").fingerprint == good.fingerprint

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("copybench.datasets.importers.write_dataset_index", fail)
    with pytest.raises(OSError, match="disk full"):
        import_dataset("csv", mine / "ok.csv", tmp_path / "new" / "deeper" / "idx", progress=False)
    assert not (tmp_path / "new").exists()  # the folders it made for --out are gone, the ones before it kept
    with pytest.raises(OSError, match="disk full"):
        import_dataset("csv", mine / "ok.csv", tmp_path / "idx", progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_distractor_paths_are_relative_so_the_whole_tree_can_move(mine, tmp_path):
    dx = _mkdir(tmp_path / "DX")
    _photo(dx / "sub" / "rocket.png", "rocket")
    ds = import_dataset("csv", mine / "ok.csv", tmp_path / "idx", progress=False, distractors=[dx])
    refs = pd.read_csv(tmp_path / "idx" / "references.csv", dtype=str)
    assert not any(p.startswith("/") for p in refs["path"])
    assert ds.meta["distractor_sets"] == [{"path": "../DX", "count": 1}]
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("mine", "DX", "idx"):
        shutil.move(tmp_path / name, moved / name)
    meta = json.loads((moved / "idx" / "dataset.json").read_text())
    (moved / "idx" / "dataset.json").write_text(json.dumps({**meta, "images_root": str(moved / "mine")}))
    from copybench.datasets import load_dataset

    again = load_dataset(moved / "idx")
    assert again.fingerprint == ds.fingerprint
    assert again.references.set_index("reference_id").loc["sub__rocket", "path"] == str(
        moved / "DX/sub/rocket.png"
    )


def test_the_same_distractor_folder_twice_is_named_as_given_twice(mine, tmp_path):
    dx = _mkdir(tmp_path / "DX")
    _photo(dx / "rocket.png", "rocket")
    with pytest.raises(SourceError, match=r"--distractors .*DX given twice"):
        import_dataset("csv", mine / "ok.csv", tmp_path / "i", progress=False, distractors=[dx, f"{dx}/"])
    _photo(dx / "inner" / "camera.png", "camera")
    with pytest.raises(SourceError, match=r"DX/inner is inside .*DX, also given"):
        import_dataset("csv", mine / "ok.csv", tmp_path / "i", progress=False, distractors=[dx, dx / "inner"])


def _copydays(root, store):
    """A Copydays layout whose original/ is a symbolic link to a folder kept elsewhere (``store``)."""
    for b, name in enumerate(("astronaut", "coffee")):
        orig = _photo(store / f"{2000 + b:04d}00.jpg", name)
        _mkdir(root / "strong")
        orig.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "strong" / f"{2000 + b:04d}01.jpg")
    (root / "original").symlink_to(store, target_is_directory=True)


def test_copydays_with_a_linked_original_folder_follows_the_link_by_permission_and_records_it(tmp_path):
    _copydays(tmp_path / "copydays", tmp_path / "elsewhere" / "original")
    with pytest.raises(
        SourceError,
        match=r"original/200000\.jpg: it lies behind the symbolic link .*copydays/original -> .*elsewhere/original, "
        r"outside the folders named .*copydays\): refused; pass --allow-outside-links",
    ):  # was: the linked folder ignored, then "no Copydays originals"
        import_dataset("copydays", tmp_path / "copydays", tmp_path / "idx", progress=False)
    ds = import_dataset(
        "copydays", tmp_path / "copydays", tmp_path / "idx", progress=False, allow_outside_links=True
    )
    assert ds.counts() == {"references": 2, "queries": 2, "distractors": 0}
    links = pd.read_csv(tmp_path / "idx" / "links.csv", dtype=str)
    assert links.to_dict("records") == [
        {"path": "original", "target": str(tmp_path / "elsewhere" / "original")}
    ]
    assert ds.meta["links"] == {"count": 1, "outside_allowed": True}
    (tmp_path / "idx" / "links.csv").write_text("path,target\n")  # the record is under the integrity check
    with pytest.raises(ValueError, match="links.csv: changed after the dataset was written"):
        from copybench.datasets import load_dataset

        load_dataset(tmp_path / "idx")


def test_links_into_named_folders_are_followed_and_link_cycles_end(tmp_path):
    src = tmp_path / "f"
    _photo(src / "real" / "a.png", "coffee")
    (src / "real" / "loop").symlink_to(src / "real")  # a link cycle must not loop forever
    _photo(tmp_path / "dx" / "d.png", "rocket")
    (src / "b.png").symlink_to(tmp_path / "dx" / "d.png")  # into a distractor folder the user named
    with pytest.raises(SourceError, match=r"dx/d\.png .*byte-identical to .*f/b\.png"):  # followed: same file
        import_dataset("folder", src, tmp_path / "idx", progress=False, distractors=[tmp_path / "dx"])
    with pytest.raises(SourceError, match=r"f/b\.png: it lies behind the symbolic link"):  # dx not named now
        import_dataset("folder", src, tmp_path / "idx", progress=False)
    (src / "b.png").unlink()
    ds = import_dataset("folder", src, tmp_path / "idx", progress=False)
    assert ds.reference_ids == ["real__a"] and "links" not in ds.meta
    assert not (tmp_path / "idx" / "links.csv").exists()


def test_a_manifest_linking_out_of_its_folder_is_refused_before_hashing(mine, tmp_path, monkeypatch, capsys):
    _photo(tmp_path / "secret.png", "camera")
    (mine / "refs" / "link.png").symlink_to(tmp_path / "secret.png")
    rows = [("q/astronaut.png", "refs/astronaut.png"), ("", "refs/link.png")]
    pd.DataFrame(rows, columns=["query", "reference"]).to_csv(mine / "l.csv", index=False)
    read = []
    monkeypatch.setattr("copybench.datasets.importers.file_sha256", lambda p: read.append(p) or "0" * 64)
    with pytest.raises(SourceError, match=r"refs/link\.png: it lies behind the symbolic link"):
        import_dataset("csv", mine / "l.csv", tmp_path / "idx", progress=False)
    assert read == []
    monkeypatch.undo()
    argv = ["data", "import", "csv", str(mine / "l.csv"), "--out", str(tmp_path / "idx")]
    assert main(argv) == 2 and "--allow-outside-links" in capsys.readouterr().err
    assert main([*argv, "--allow-outside-links"]) == 0
    assert "secret.png" in (tmp_path / "idx" / "links.csv").read_text()


def test_disc21_with_a_linked_reference_folder_follows_the_same_policy(tmp_path):
    src, store = tmp_path / "disc", tmp_path / "store" / "references"
    for i, name in enumerate(("astronaut", "coffee")):
        ref = _photo(store / f"R{i:06d}.jpg", name)
        _mkdir(src / "queries")
        ref.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "queries" / f"Q{i:05d}.jpg")
    (src / "references").symlink_to(store, target_is_directory=True)
    (src / "gt.csv").write_text("query_id,reference_id\nQ00000,R000000\nQ00001,R000001\n")
    with pytest.raises(SourceError, match=r"references/R000000\.jpg: it lies behind the symbolic link"):
        import_dataset("disc21", src, tmp_path / "idx", progress=False)
    ds = import_dataset("disc21", src, tmp_path / "idx", progress=False, allow_outside_links=True)
    assert ds.counts()["references"] == 2 and ds.meta["links"] == {"count": 1, "outside_allowed": True}
