"""Every decode path a run can take gives each protocol's pixels (issues 22.1 and 27.7).

``isc``, ``dino`` and ``dcr`` reproduce scripts that open images with Pillow and ``convert("RGB")``: no EXIF
transpose, alpha dropped, palette transparency ignored. ``native`` decodes as a viewer shows the file: upright by
its EXIF orientation, transparency composited on white. The oracles below are Pillow itself, written out here,
compared with what the workers path (threads and DataLoader, full and reduced-size), the device path's routing
(on a CPU device: torchvision's libjpeg, with the CPU fallback) and the Ray actor's decode produce.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from copybench import protocols as P
from copybench.decode import DeviceDecode, ThreadDecode, WorkerDecode, decode_on_cpu
from copybench.detectors import get_spec
from copybench.preprocess import Preprocess, pil_to_tensor

PROTOCOLS = ("isc", "dcr", "dino")


def _smooth(rng, h: int, w: int, channels: int = 3) -> np.ndarray:
    """Smooth random content (JPEG-friendly, asymmetric so a rotation changes it)."""
    small = (rng.random((6, 9, channels)) * 255).astype(np.uint8)
    mode = "RGB" if channels == 3 else "RGBA"
    img = Image.fromarray(small, mode).resize((w, h), Image.BICUBIC)
    return np.asarray(img).copy()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    """EXIF-rotated JPEGs (small and large enough to draft), RGBA, LA and palette-with-transparency PNGs."""
    root = tmp_path_factory.mktemp("decode_modes")
    rng = np.random.default_rng(7)
    out = {}
    for name, (h, w) in {"rot8": (300, 420), "rot6_large": (1100, 1500)}.items():
        exif = Image.Exif()
        exif[0x0112] = 8 if name == "rot8" else 6
        path = root / f"{name}.jpg"
        Image.fromarray(_smooth(rng, h, w)).save(path, exif=exif.tobytes(), quality=92)
        out[name] = str(path)
    rgba = _smooth(rng, 240, 320, 4)
    rgba[..., 3] = np.linspace(0, 255, 320, dtype=np.uint8)[
        None, :
    ]  # every alpha level, fully clear to opaque
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    Image.fromarray(rgba, "RGBA").convert("LA").save(root / "la.png")
    pal = Image.fromarray(rgba[..., :3]).quantize(16)
    pal.info["transparency"] = 3  # palette entry 3 is see-through
    pal.save(root / "p_trns.png", transparency=3)
    out.update({k: str(root / f"{k}.png") for k in ("rgba", "la", "p_trns")})
    return out


def _protocol_oracle(path: str) -> Image.Image:
    """What SSCD, DINO and DCR feed their transforms: Pillow open + convert("RGB"), nothing else."""
    with Image.open(path) as img:
        return img.convert("RGB")


def _native_oracle(path: str) -> Image.Image:
    """A viewer's picture: upright by the EXIF orientation, transparency over white."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA") or "transparency" in img.info:
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
        return img.convert("RGB")


def _pre(protocol: str) -> Preprocess:
    return Preprocess(P.protocol_spec(protocol, get_spec("sscd_disc_mixup")))


def _expected(protocol: str, path: str, pre: Preprocess) -> torch.Tensor:
    oracle = _native_oracle if protocol == "native" else _protocol_oracle
    return pre.resize(pil_to_tensor(oracle(path)))


def _decoded(feeder, paths: list[str]) -> dict[int, torch.Tensor]:
    out = {}
    for batch in feeder.batches(paths, list(range(len(paths)))):
        assert not batch.failures, batch.failures
        for rows, x in batch.groups:
            out.update({r: x[i].cpu() for i, r in enumerate(rows)})
    return out


def _feeders(pre: Preprocess, draft: bool):
    return {
        "threads": ThreadDecode(pre, batch_size=3, threads=2, draft=draft),
        "dataloader": WorkerDecode(pre, batch_size=3, num_workers=0, device="cpu", draft=draft),
        "device-routing": DeviceDecode(pre, batch_size=3, num_workers=0, device="cpu", ahead=1),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocols_decode_as_pillow_convert_rgb_on_every_path(images, protocol):
    pre = _pre(protocol)
    assert pre.min_decode_side is None  # the protocols decode in full, as the originals
    paths = list(images.values())
    for name, feeder in _feeders(pre, draft=True).items():
        got = _decoded(feeder, paths)
        for row, path in enumerate(paths):
            assert torch.equal(got[row], _expected(protocol, path, pre)), (protocol, name, path)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_decode_differs_from_the_viewer_decode_where_the_originals_do(images, protocol):
    """The test images are ones where the two decodes disagree, so the check above can fail."""
    pre = _pre(protocol)
    for path in images.values():
        img, err = decode_on_cpu(path, pre, None)
        assert err is None
        viewer = pre.resize(pil_to_tensor(_native_oracle(path)))
        assert img.shape != viewer.shape or not torch.equal(img, viewer), path


@pytest.mark.parametrize("draft", [False, True])
def test_native_decodes_upright_over_white_on_every_path(images, draft):
    pre = Preprocess(get_spec("pixel_rgb_16"))
    assert pre.min_decode_side * 2 <= 1100  # the large JPEG decodes at 1/2 scale when drafting
    paths = list(images.values())
    for name, feeder in _feeders(pre, draft=draft).items():
        got = _decoded(feeder, paths)
        for row, path in enumerate(paths):
            want = _expected("native", path, pre)
            if draft and name != "device-routing" and path.endswith("large.jpg"):
                # a reduced-size decode differs in the last bits, never in orientation
                assert got[row].shape == want.shape, (name, path)
                assert (got[row].float() - want.float()).abs().mean() < 2.0, (name, path)
            else:
                assert torch.equal(got[row], want), (name, draft, path)


def test_the_protocol_decode_enters_the_spec_and_so_the_cache_key():
    spec = get_spec("sscd_disc_mixup")
    assert "rgb_conversion" not in spec.to_dict()  # native specs and their cache keys are unchanged
    for protocol in PROTOCOLS:
        assert P.protocol_spec(protocol, spec).to_dict()["rgb_conversion"] == "convert"


@pytest.mark.parametrize("decode", ["workers", "device"])
def test_native_scan_matches_an_exif_rotated_copy_to_its_upright_original(tmp_path, decode):
    """Issue 27.7: the stored pixels are turned a quarter (orientation 8), so only an upright decode matches
    the copy to its original; the training JPEGs are large enough for the workers path to draft them."""
    import csv

    from copybench.cli import main

    rng = np.random.default_rng(11)
    train, gen = tmp_path / "train", tmp_path / "gen"
    train.mkdir(), gen.mkdir()
    for i in range(4):
        Image.fromarray(_smooth(rng, 1100, 1500)).save(train / f"t{i}.jpg", quality=92)
    with Image.open(train / "t2.jpg") as upright:
        stored = upright.transpose(Image.Transpose.ROTATE_270)  # a viewer turns it back by orientation 8
    exif = Image.Exif()
    exif[0x0112] = 8
    stored.save(gen / "g.jpg", exif=exif.tobytes(), quality=92)
    out = tmp_path / "out"
    args = ["scan", "--generated", str(gen), "--train", str(train), "--detector", "pixel_rgb_16"]
    assert main([*args, "--threshold", "0.9", "--out", str(out), "--decode", decode, "--no-cache", "-q"]) == 0
    with open(out / "matches.csv") as f:
        top = next(r for r in csv.DictReader(f) if r["rank"] == "1")
    assert top["train"] == "t2.jpg" and float(top["similarity"]) > 0.99


@pytest.mark.parametrize("protocol", ["native", *PROTOCOLS])
@pytest.mark.parametrize("decode", ["workers", "device"])
def test_the_ray_actor_decodes_the_read_bytes_as_the_protocol(images, protocol, decode):
    """The Ray engine's actors decode bytes read by its read tasks: same pixels as the local paths."""
    import types
    from pathlib import Path

    from copybench.scaling.actor import _DetectorActor

    pre = _pre(protocol) if protocol != "native" else Preprocess(get_spec("sscd_disc_mixup"))
    actor = object.__new__(_DetectorActor)  # its decode step alone: no Ray cluster, no model
    actor.ext = types.SimpleNamespace(decode=decode, preprocess=pre)
    actor.feeder = (
        ThreadDecode(pre, batch_size=8, threads=1, draft=True)
        if decode == "workers"
        else DeviceDecode(pre, batch_size=8, num_workers=0, device="cpu", ahead=1)
    )
    paths = list(images.values())
    batch = {"path": paths, "data": [Path(p).read_bytes() for p in paths], "read_error": [""] * len(paths)}
    got = _decoded(types.SimpleNamespace(batches=lambda *_: [actor._decode(batch)]), paths)
    for row, path in enumerate(paths):
        assert torch.equal(got[row], _expected(protocol, path, pre)), (protocol, decode, path)
