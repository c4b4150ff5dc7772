"""Replication scan (copybench.scan): planted copies recovered end to end, outputs, statistics, bad input.

The fixture fabricates a training set of 30 images (real photos from scikit-image plus seeded synthetic
textures, one photo present twice as an exact duplicate) and a "generated" set of 30 in which 9 (30%) are
planted copies of training images (cropped, rescaled, colour-shifted, or pasted into another image) and 21 are
novel. A detector with real offline weights must flag exactly the planted ones.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copybench.cli import main as cli_main
from copybench.scan import pipeline as scan_mod
from copybench.scan import search

TRAIN_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "moon",
    "page",
    "clock",
    "brick",
    "grass",
    "colorwheel",
    "immunohistochemistry",
    "hubble_deep_field",
)
NOVEL_PHOTOS = ("text", "gravel", "retina", "cell", "horse", "shepp_logan_phantom", "microaneurysms", "logo")
N_SYNTH_TRAIN, N_MOSAICS = 15, 13
# planted copy -> (training image, transformation)
PLANTS = {
    "astronaut": "crop_colour",
    "coffee": "paste",
    "rocket": "crop",
    "clock": "rescale_colour",
    "immunohistochemistry": "crop",
    "colorwheel": "paste",
    "coins": "colour",
    "chelsea": "paste",
    "synth_03": "crop",
}


# ---------------------------------------------------------------------------------------------- fabricated data
def _photo(name: str) -> Image.Image:
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = getattr(skimage.data, name)()
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = (255 * (arr - arr.min()) / max(np.ptp(arr), 1e-9)).astype(np.uint8)
    img = Image.fromarray(arr)
    return (
        img.convert("RGB")
        if img.mode != "RGBA"
        else Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    )


def _texture(seed: int, side: int = 320) -> Image.Image:
    """A seeded synthetic scene: gradient background, random ellipses, boxes, polygons and lines.

    Every seed gets its own layout; plain gratings or smooth noise would all look alike to a copy detector
    (they differ mostly in colour, which detectors are trained to ignore) and make poor distinct images.
    """
    from PIL import ImageDraw

    rng = np.random.default_rng(1000 + seed)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, side)[:, None, None]
    grad = (c0 * (1 - t) + c1 * t) * np.ones((side, side, 3))
    img = Image.fromarray(
        np.swapaxes(grad, 0, 1).astype(np.uint8) if rng.random() < 0.5 else grad.astype(np.uint8)
    )
    draw = ImageDraw.Draw(img)
    colour = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))
    for _ in range(int(rng.integers(8, 16))):
        x0, y0 = (int(v) for v in rng.integers(0, side, 2))
        w, h = (int(v) for v in rng.integers(side // 10, side // 2, 2))
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour())
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour(), outline=colour(), width=3)
        elif kind == 2:
            draw.polygon(
                [tuple(int(v) for v in rng.integers(0, side, 2)) for _ in range(int(rng.integers(3, 7)))],
                fill=colour(),
            )
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour(), width=int(rng.integers(2, 9)))
    return img


def _mosaic(photos: list[Image.Image], rng: np.random.Generator, tile: int = 160) -> Image.Image:
    """A novel image: 2 x 2 tiles, each a random crop of a random novel photo (never a training image)."""
    canvas = Image.new("RGB", (2 * tile, 2 * tile))
    for k in range(4):
        src = photos[int(rng.integers(len(photos)))]
        f = rng.uniform(0.3, 0.6)
        w, h = int(src.width * f), int(src.height * f)
        x0, y0 = int(rng.integers(0, src.width - w + 1)), int(rng.integers(0, src.height - h + 1))
        canvas.paste(
            src.crop((x0, y0, x0 + w, y0 + h)).resize((tile, tile), Image.BICUBIC),
            ((k % 2) * tile, (k // 2) * tile),
        )
    return canvas


def _transform(img: Image.Image, how: str, rng: np.random.Generator, background: Image.Image) -> Image.Image:
    w, h = img.size
    if "crop" in how:
        f = rng.uniform(0.75, 0.85)
        x0, y0 = int(rng.uniform(0, 1 - f) * w), int(rng.uniform(0, 1 - f) * h)
        img = img.crop((x0, y0, x0 + int(f * w), y0 + int(f * h)))
    if "rescale" in how or "crop" in how:
        s = rng.uniform(0.6, 1.4)
        img = img.resize((max(32, int(img.width * s)), max(32, int(img.height * s))), Image.BICUBIC)
    if "colour" in how:
        gain = rng.uniform(0.8, 1.2, 3)
        img = Image.fromarray(
            np.clip(np.asarray(img, dtype=np.float32) * gain + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
        )
    if how == "paste":
        canvas = background.resize((512, 512))
        side = int(512 * rng.uniform(0.8, 0.9))
        scale = side / max(img.size)
        fg = img.resize((int(img.width * scale), int(img.height * scale)), Image.BICUBIC)
        canvas.paste(
            fg, (int(rng.integers(0, 512 - fg.width + 1)), int(rng.integers(0, 512 - fg.height + 1)))
        )
        img = canvas
    return img


def build_scan_fixture(root: Path) -> dict:
    """train/ (30 images + an exact duplicate), generated/ (9 planted copies + 21 novel, in two sub-folders)."""
    train, gen = root / "train", root / "generated"
    train.mkdir(parents=True)
    (gen / "batch_a").mkdir(parents=True)
    (gen / "batch_b").mkdir(parents=True)
    sources = {name: _photo(name) for name in TRAIN_PHOTOS}
    sources.update({f"synth_{i:02d}": _texture(i) for i in range(N_SYNTH_TRAIN)})
    for name, img in sources.items():
        img.save(train / f"{name}.png")
    sources["chelsea"].save(
        train / "chelsea_duplicate.png"
    )  # exact duplicate: the baseline must drop self by index
    rng = np.random.default_rng(0)
    novel = [_photo(n) for n in NOVEL_PHOTOS]
    novel += [_mosaic(novel[: len(NOVEL_PHOTOS)], rng) for _ in range(N_MOSAICS)]
    planted = []
    for j, (name, how) in enumerate(PLANTS.items()):
        path = gen / ("batch_a" if j % 2 else "batch_b") / f"gen_{j:02d}.jpg"
        _transform(sources[name], how, rng, novel[j % len(NOVEL_PHOTOS)]).save(path, quality=90)
        planted.append(str(path.relative_to(gen)))
    for j, img in enumerate(novel):
        img.save(gen / ("batch_a" if j % 2 else "batch_b") / f"gen_{len(PLANTS) + j:02d}.jpg", quality=90)
    return {
        "train": train,
        "generated": gen,
        "planted": planted,
        "sources": PLANTS,
        "n_generated": len(PLANTS) + len(novel),
    }


def _real_detector() -> tuple[str, float]:
    """A detector with real offline weights and a threshold it separates this fixture at (measured margins:
    SSCD planted >= 0.59 vs novel <= 0.29, the paper's 0.5 in between; EfficientNet planted >= 0.58 vs <= 0.51)."""
    from copybench.detectors import list_detectors, weights_status

    for name, threshold in (
        ("sscd_disc_mixup.onnx_int8", 0.5),
        ("sscd_distilled.onnx", 0.5),
        ("efficientnet_lite0", 0.55),
    ):
        if name in list_detectors("*") and weights_status(name) == "real":
            return name, threshold
    pytest.skip("no detector with real offline weights (sscd ONNX or efficientnet_lite0)")


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    fx = build_scan_fixture(root / "data")
    (fx["generated"] / "batch_a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    fx["cache"] = root / "cache"
    return fx


@pytest.fixture(scope="module")
def scanned(fixture_data, tmp_path_factory):
    detector, threshold = _real_detector()
    out = tmp_path_factory.mktemp("scan_out")
    summary = scan_mod.scan(
        fixture_data["generated"],
        fixture_data["train"],
        detector,
        threshold=threshold,
        top_k=5,
        out=out,
        descriptor_dir=fixture_data["cache"],
        progress=False,
        seed=0,
    )
    return summary, out, detector, threshold


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.weights
def test_scan_recovers_planted_copies(scanned, fixture_data):
    summary, _, detector, threshold = scanned
    n, planted = fixture_data["n_generated"], fixture_data["planted"]
    rate = summary["replication_rate"]
    assert rate["n"] == n == 30
    lo, hi = rate["ci95"]
    assert lo <= len(planted) / n <= hi
    assert rate["value"] == pytest.approx(len(planted) / n)
    flagged = {f["generated"]: f for f in summary["flagged"]}
    assert set(flagged) == set(planted)
    for rel, source in zip(planted, fixture_data["sources"]):  # each flagged generation points at its source
        accepted = {f"{source}.png"} | ({"chelsea_duplicate.png"} if source == "chelsea" else set())
        assert flagged[rel]["train"] in accepted, (rel, flagged[rel])
    assert summary["detector"]["name"] == detector and summary["detector"]["weights"]["status"] == "real"
    assert summary["random_weights"] is False
    assert summary["threshold"]["value"] == threshold and summary["threshold"]["source"] == "given"


@pytest.mark.weights
def test_scan_baseline_and_statistics(scanned):
    summary, *_ = scanned
    assert summary["counts"] == {
        "generated_found": 31,
        "generated_scanned": 30,
        "train_found": 30,
        "train_indexed": 30,
    }
    assert summary["baseline"] == {"n": 30, "of": 30, "sampled": False, "seed": 0}
    base = summary["similarity_stats"]["train_train"]
    # chelsea and its exact duplicate: dropping self by index leaves the twin at similarity 1
    assert base["max"] == pytest.approx(1.0, abs=1e-5)
    gen = summary["similarity_stats"]["gen_train"]
    for st in (gen, base):
        assert set(st) >= {"n", "mean", "std", "p75", "p90", "p95"}
        assert st["p75"] <= st["p90"] <= st["p95"] <= st["max"]
    assert summary["environment"]["copybench"] and "device" in summary["environment"]


@pytest.mark.weights
def test_scan_outputs_and_self_contained_html(scanned):
    summary, out, *_ = scanned
    grids = summary["outputs"]["grids"]
    assert len(grids) == 3 and summary["grids"] == {"rows_shown": 30, "of": 30, "rows_per_page": 10}
    for name in ("summary.json", "matches.csv", "histogram.png", "report.html", *grids):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert scan_mod.read_summary(out)["replication_rate"]["flagged"] == summary["replication_rate"]["flagged"]
    with open(out / "matches.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["generated", "rank", "train", "similarity"] and len(rows) == 30 * 5
    first = [r for r in rows if r["rank"] == "1"]
    assert sum(float(r["similarity"]) >= summary["threshold"]["value"] for r in first) == 9
    page = (out / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page)
    assert refs == [refs[0]] and refs[0].startswith("data:image/png;base64,")  # the histogram
    assert base64.b64decode(refs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    thumbs = re.findall(r"url\(([^)]*)\)", page)  # the grid's thumbnails: CSS classes, each image once
    assert thumbs and all(t.startswith("data:image/jpeg;base64,") for t in thumbs)
    assert base64.b64decode(thumbs[0].split(",", 1)[1])[:3] == b"\xff\xd8\xff"
    assert len(thumbs) <= 30 + 30  # one per distinct image shown (a training image matching often: once)
    assert page.count("class='th ") == 30 * 6  # every generation beside its top-5 matches
    assert "<link" not in page and "@import" not in page
    # 30 generations x 6 thumbnails: the self-contained page stays small (was 12 MB for 40 with PNG grids)
    assert (out / "report.html").stat().st_size < 600_000
    assert all(name.endswith(".jpg") for name in grids)
    assert "Replication rate" in page and "Wilson" in page and "RANDOM WEIGHTS" not in page


@pytest.mark.weights
def test_scan_lists_and_skips_corrupt_image(scanned):
    summary, out, *_ = scanned
    skipped = summary["skipped"]
    assert [Path(s["path"]).name for s in skipped] == ["corrupt.png"] and skipped[0]["role"] == "generated"
    assert "corrupt.png" in skipped[0]["error"]
    assert "corrupt.png" in (out / "report.html").read_text()
    with open(out / "matches.csv") as f:
        assert "corrupt" not in f.read()


@pytest.mark.weights
def test_written_outputs_hold_no_absolute_path(scanned, fixture_data, tmp_path_factory):
    """summary.json and report.html are published as they are: folders relative to the scan folder."""
    summary, out, *_ = scanned
    base = str(tmp_path_factory.getbasetemp())
    for name in ("summary.json", "report.html", "matches.csv"):
        assert base not in (out / name).read_text(), name
    written = scan_mod.read_summary(out)
    assert written["out"] == "."
    for role in ("generated", "train"):
        assert (out / written["inputs"][role]).resolve() == fixture_data[role].resolve()
        assert Path(summary["inputs"][role]).is_absolute()  # the returned summary still names them in full
    (skip,) = written["skipped"]
    assert (out / skip["path"]).resolve() == (fixture_data["generated"] / "batch_a" / "corrupt.png").resolve()
    assert skip["path"] in skip["error"]


@pytest.mark.weights
def test_cli_scan_end_to_end(fixture_data, tmp_path, capsys):
    detector, threshold = _real_detector()
    code = cli_main(
        [
            "-q",
            "scan",
            "--generated",
            str(fixture_data["generated"]),
            "--train",
            str(fixture_data["train"]),
            "--detector",
            detector,
            "--threshold",
            str(threshold),
            "--top-k",
            "3",
            "--out",
            str(tmp_path / "o"),
            "--baseline-sample",
            "10",
            "--descriptor-dir",
            str(fixture_data["cache"]),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["baseline"] == {"n": 10, "of": 30, "sampled": True, "seed": 0}
    assert summary["settings"]["top_k"] == 3 and summary["replication_rate"]["flagged"] == 9
    assert "replication rate" in printed and "30.00%" in printed and "corrupt.png" in printed


# ---------------------------------------------------------------------------------------------- bad input
def test_empty_folder_and_unknown_detector_are_clear_errors(tmp_path, capsys):
    from copybench.detectors import UnknownDetectorError

    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    (full / "sub").mkdir(parents=True)
    for i in range(2):
        _texture(i, 64).save(full / "sub" / f"{i}.png")
    with pytest.raises(ValueError, match="--generated: no images in .*empty"):
        scan_mod.scan(empty, full, "pixel_gray_16", out=tmp_path / "o", descriptor_dir=None, progress=False)
    with pytest.raises(FileNotFoundError, match="--train: no such folder"):
        scan_mod.scan(
            full,
            tmp_path / "missing",
            "pixel_gray_16",
            out=tmp_path / "o",
            descriptor_dir=None,
            progress=False,
        )
    with pytest.raises(UnknownDetectorError, match="no_such_detector"):
        scan_mod.scan(full, full, "no_such_detector", out=tmp_path / "o", descriptor_dir=None, progress=False)
    with pytest.raises(ValueError, match="--out .* inside the --generated folder"):
        scan_mod.scan(full, full, "pixel_gray_16", out=full / "scan", descriptor_dir=None, progress=False)
    (tmp_path / "a_file").write_text("x")  # was a FileExistsError traceback after the whole extraction
    with pytest.raises(ValueError, match="--out .*a_file exists and is not a folder"):
        scan_mod.scan(
            full, empty, "pixel_gray_16", out=tmp_path / "a_file", descriptor_dir=None, progress=False
        )
    with pytest.raises(ValueError, match=r"--threshold must lie in \[-1, 1\]"):  # was a silent 0% rate
        scan_mod.scan(
            full,
            full,
            "pixel_gray_16",
            threshold=1.5,
            out=tmp_path / "o",
            descriptor_dir=None,
            progress=False,
        )
    base = ["scan", "--train", str(full), "--out", str(tmp_path / "o"), "--no-cache"]
    cases = [
        (["--generated", str(empty), "--detector", "pixel_gray_16"], "no images in"),
        (["--generated", str(full), "--detector", "no_such_detector"], "no_such_detector"),
        (["--generated", str(full), "--detector", "pixel_gray_16", "--top-k", "0"], "--top-k"),
        (["--generated", str(full), "--detector", "pixel_gray_16", "--similarity", "split"], "token output"),
    ]
    for args, message in cases:
        assert cli_main(["-q", *base, *args]) == 2, args
        assert message in capsys.readouterr().err.replace("\n", " ")


def test_missing_weights_needs_allow_random(tmp_path, capsys):
    from copybench.detectors import list_detectors, weights_status

    missing = [n for n in list_detectors("*") if weights_status(n) == "missing"]
    if not missing:
        pytest.skip("every registered detector has weights here")
    (tmp_path / "g").mkdir()
    _texture(0, 64).save(tmp_path / "g" / "a.png")
    code = cli_main(
        [
            "-q",
            "scan",
            "--generated",
            str(tmp_path / "g"),
            "--train",
            str(tmp_path / "g"),
            "--detector",
            missing[0],
            "--out",
            str(tmp_path / "o"),
            "--no-cache",
        ]
    )
    assert code == 2 and "--allow-random" in capsys.readouterr().err.replace("\n", " ")


# ---------------------------------------------------------------------------------------------- calibration
def _calibration_dataset(root: Path) -> Path:
    """5 references copied (crop, colour, paste) plus 3 distractor queries; none of it in the scan fixture."""
    from copybench.datasets.dataset import compute_fingerprint, write_dataset_index

    (root / "references").mkdir(parents=True)
    (root / "queries").mkdir()
    rng = np.random.default_rng(7)
    photos = [_photo(n) for n in NOVEL_PHOTOS]
    refs = {f"r{i}": img for i, img in enumerate(photos[:5] + [_texture(200 + i) for i in range(3)])}
    for rid, img in refs.items():
        img.save(root / "references" / f"{rid}.png")
    queries = []
    for i, how in enumerate(("crop_colour", "crop", "rescale_colour", "paste", "colour")):
        _transform(refs[f"r{i}"], how, rng, photos[-1]).save(root / "queries" / f"q{i}.jpg", quality=90)
        queries.append({"query_id": f"q{i}", "path": f"queries/q{i}.jpg", "reference_id": f"r{i}"})
    for i in range(3):
        _mosaic(photos[5:], rng).save(root / "queries" / f"d{i}.jpg", quality=90)
        queries.append({"query_id": f"d{i}", "path": f"queries/d{i}.jpg", "reference_id": ""})
    import pandas as pd

    ref_df = pd.DataFrame({"reference_id": list(refs), "path": [f"references/{r}.png" for r in refs]})
    q_df = pd.DataFrame(queries)
    fp = compute_fingerprint(
        {"name": "scan-calibration-test"}, ref_df, q_df.assign(family="", tier="", params="{}"), {}
    )
    write_dataset_index(
        root, {"name": "scan-calibration-test", "fingerprint": fp, "images_root": "."}, ref_df, q_df
    )
    return root


@pytest.mark.weights
def test_calibrated_threshold_is_at_90_percent_precision(fixture_data, tmp_path):
    from copybench.datasets.dataset import load_dataset
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    detector, _ = _real_detector()
    ds_dir = _calibration_dataset(tmp_path / "calib")
    summary = scan_mod.scan(
        fixture_data["generated"],
        fixture_data["train"],
        detector,
        threshold=0.99,
        top_k=3,
        out=tmp_path / "o",
        calibrate=ds_dir,
        descriptor_dir=fixture_data["cache"],
        progress=False,
    )
    thr, cal = summary["threshold"], summary["threshold"]["calibration"]
    assert thr["source"] == "calibrated" and thr["given"] == 0.99 and thr["value"] == cal["threshold"]
    assert cal["dataset"] == "scan-calibration-test" and cal["precision"] == 0.9 and cal["queries"] == 8
    # independent reference: brute-force similarities of the same descriptors, pooled top-3 predictions
    ds = load_dataset(ds_dir)
    ext = Extractor(create_detector(detector), cache_dir=fixture_data["cache"], progress=False)
    r = np.asarray(ext.run(ds.references["path"].tolist(), fingerprint=ds.fingerprint).vectors)
    q = np.asarray(ext.run(ds.queries["path"].tolist(), fingerprint=ds.fingerprint).vectors)
    sims = q @ r.T
    top = np.argsort(-sims, axis=1)[:, :3]
    pooled = [
        (sims[i, j], ds.reference_ids[j] in ds.positives[qid])
        for i, qid in enumerate(ds.query_ids)
        for j in top[i]
    ]

    def precision_recall(t: float) -> tuple[float, float]:
        above = [hit for s, hit in pooled if s >= t - 1e-6]
        return np.mean(above), sum(above) / 5

    precision, recall = precision_recall(thr["value"])
    assert precision >= 0.9 and recall == pytest.approx(cal["recall"])
    for t, _ in pooled:  # no other threshold reaching 90% precision has a higher recall
        p, rec = precision_recall(t)
        assert p < 0.9 or rec <= recall + 1e-9
    flagged = sum(m["similarity"] >= thr["value"] for m in summary["flagged"])
    assert flagged == summary["replication_rate"]["flagged"]


# ---------------------------------------------------------------------------------------------- random weights, split
TOKEN_SPEC_NAME = "test_scan_tiny_tokens"


@pytest.fixture
def tiny_token_detector():
    """A random-by-design detector with token output: patch embedding of 8 x 8 patches plus a mean token."""
    import torch

    from copybench.detectors import DetectorSpec, register_detector
    from copybench.detectors.registry import unregister_detector

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.patch = torch.nn.Conv2d(3, 8, 8, stride=8)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
            return torch.cat([t.mean(1, keepdim=True), t], 1)

    spec = DetectorSpec(
        name=TOKEN_SPEC_NAME, dims=8, input_size=32, weights="random", output="tokens", family="test"
    )
    register_detector(spec)(lambda path: Tiny())
    yield TOKEN_SPEC_NAME
    unregister_detector(TOKEN_SPEC_NAME)


def _small_sets(root: Path) -> tuple[Path, Path]:
    train, gen = root / "train", root / "gen"
    train.mkdir(parents=True)
    gen.mkdir()
    for i in range(6):
        _texture(300 + i, 96).save(train / f"t{i}.png")
    for i in range(4):
        _texture(400 + i, 96).save(gen / f"g{i}.png")
    return train, gen


def test_random_weights_are_stated_everywhere(tiny_token_detector, tmp_path, capsys):
    train, gen = _small_sets(tmp_path)
    code = cli_main(
        [
            "-q",
            "scan",
            "--generated",
            str(gen),
            "--train",
            str(train),
            "--detector",
            tiny_token_detector,
            "--out",
            str(tmp_path / "o"),
            "--no-cache",
            "--top-k",
            "2",
            "--threshold",
            "0.5",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "RANDOM WEIGHTS" in printed
    summary = scan_mod.read_summary(tmp_path / "o")
    assert summary["random_weights"] is True and summary["detector"]["weights"]["status"] == "random"
    page = (tmp_path / "o" / "report.html").read_text()
    assert "class='random'" in page and "RANDOM WEIGHTS" in page


def test_split_similarity_matches_brute_force(tiny_token_detector, tmp_path):
    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    train, gen = _small_sets(tmp_path)
    summary = scan_mod.scan(
        gen,
        train,
        tiny_token_detector,
        similarity="split",
        threshold=0.05,  # split scores are not on the cosine scale: a threshold is always given for them
        top_k=3,
        out=tmp_path / "o",
        descriptor_dir=None,
        progress=False,
    )
    ext = Extractor(create_detector(tiny_token_detector), cache_dir=None, progress=False)
    tok = {}
    for name, folder in (("g", gen), ("t", train)):
        t = np.asarray(ext.run(search.find_images(folder, name), tokens=True).tokens, dtype=np.float64)
        tok[name] = t / np.linalg.norm(t.reshape(len(t), -1), axis=1)[:, None, None]
    sims = np.einsum("qcd,rcd->qrc", tok["g"], tok["t"]).max(axis=2)  # split product: max over aligned tokens
    with open(tmp_path / "o" / "matches.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = np.array([float(r["similarity"]) for r in rows]).reshape(4, 3)
    np.testing.assert_allclose(got, -np.sort(-sims, axis=1)[:, :3], atol=1e-4)
    assert summary["settings"]["similarity"] == "split"
    train_train = np.einsum("qcd,rcd->qrc", tok["t"], tok["t"]).max(axis=2)
    np.fill_diagonal(train_train, -np.inf)  # nearest OTHER training image
    assert summary["similarity_stats"]["train_train"]["mean"] == pytest.approx(
        train_train.max(axis=1).mean(), abs=1e-4
    )


# ---------------------------------------------------------------------------------------------- units
def test_wilson_interval_known_values():
    assert search.wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    lo, hi = search.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.841459 / 13.841459, abs=1e-6)  # z^2 / (n + z^2)
    lo, hi = search.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / 13.841459, abs=1e-6)
    assert all(np.isnan(search.wilson_interval(0, 0)))
    lo, hi = search.wilson_interval(188, 10000)  # the paper's 1.88%: a tight interval around it
    assert lo < 0.0188 < hi and hi - lo < 0.006


def _unit(rng, n, d=16):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_blockwise_top_k_equals_brute_force(monkeypatch):
    rng = np.random.default_rng(1)
    q, r = _unit(rng, 23), _unit(rng, 41)
    r[7] = r[3]  # a tie: the lower row must come first, as in one unblocked search
    monkeypatch.setattr(
        search, "BLOCK_BYTES", 4 * 16 * 5
    )  # 5 rows per block: many query and reference blocks
    q_rows, r_rows = np.arange(2, 23), np.flatnonzero(np.arange(41) % 4 != 1)
    s, i = search.search_top_k(q, q_rows, r, r_rows, 6)
    sims = q[q_rows] @ r[r_rows].T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :6]
    np.testing.assert_array_equal(i, r_rows[order])
    np.testing.assert_allclose(s, np.take_along_axis(sims, order, 1), atol=1e-6)
    s, i = search.search_top_k(q, q_rows, r, np.array([5, 9]), 4)  # fewer references than k: padded
    assert (i[:, 2:] == -1).all() and np.isneginf(s[:, 2:]).all() and set(i[:, :2].ravel()) <= {5, 9}


def test_nearest_other_drops_self_by_index_with_duplicates(monkeypatch):
    rng = np.random.default_rng(2)
    v = _unit(rng, 12)
    v[4] = v[5] = v[6] = v[0]  # four identical images
    monkeypatch.setattr(search, "BLOCK_BYTES", 4 * 16 * 3)
    rows = np.arange(12)
    got = search.nearest_other(v, rows, rows)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(got, sims.max(axis=1), atol=1e-6)
    assert np.allclose(got[[0, 4, 5, 6]], 1.0, atol=1e-6)


def test_baseline_sample_is_seeded_and_bounded():
    ok = np.flatnonzero(np.arange(50_000) % 7 != 0)
    a, b = search.baseline_rows(ok, 1000, seed=3), search.baseline_rows(ok, 1000, seed=3)
    assert len(a) == 1000 and np.array_equal(a, b) and np.all(np.diff(a) > 0) and np.isin(a, ok).all()
    assert not np.array_equal(a, search.baseline_rows(ok, 1000, seed=4))
    assert np.array_equal(search.baseline_rows(ok, None, 0), ok)
    assert np.array_equal(search.baseline_rows(ok[:10], 1000, 0), ok[:10])


def test_distribution_stats():
    v = np.linspace(0, 1, 101)
    st = search.distribution_stats(v)
    assert st["n"] == 101 and st["mean"] == pytest.approx(0.5) and st["std"] == pytest.approx(v.std())
    assert (st["p75"], st["p90"], st["p95"]) == pytest.approx((0.75, 0.90, 0.95))


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, copybench.scan; print(sorted(m for m in ('torch', 'faiss', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_calibrating_on_a_references_only_dataset_says_it_has_no_positive_pairs(tmp_path):
    from copybench.datasets import import_dataset

    (tmp_path / "f").mkdir()
    for i, name in enumerate(TRAIN_PHOTOS[:3]):
        _photo(name).save(tmp_path / "f" / f"{i}.png")
    import_dataset("folder", tmp_path / "f", tmp_path / "refs_only", progress=False)

    class NeverRun:  # the refusal comes before any descriptor is computed
        def run(self, *args, **kwargs):
            raise AssertionError("extracted descriptors for a dataset that cannot calibrate")

    with pytest.raises(
        ValueError, match=r"refs_only has no positive pairs \(3 references, 0 of 0 queries with a match\)"
    ):
        scan_mod.calibrate_threshold(
            tmp_path / "refs_only", NeverRun(), similarity="cosine", k=3, device="cpu"
        )
