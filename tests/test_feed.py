"""The device decoders' feeder (copybench.feed): JPEG markers read from the bytes against what Pillow reads from the
same files, the routing that follows, file reads that fail by name, and batches in order."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copybench.feed import device_decodable, exif_orientation, feed, jpeg_header, read_file

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="3"/></rdf:RDF></x:xmpmeta>'
)


def _photo(h: int = 96, w: int = 128) -> Image.Image:
    rng = np.random.default_rng(h * w)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "copybench"  # another tag first: the walk must find orientation among several entries
    return exif


@pytest.fixture
def files(tmp_path):
    """name -> path: JPEG variants Pillow writes, a PNG, a truncated JPEG, noise and an empty file."""
    img = _photo()
    out = {}

    def save(name, im, **kw):
        out[name] = tmp_path / name
        im.save(out[name], **kw)

    save("baseline.jpg", img, quality=90)
    save("gray.jpg", img.convert("L"))
    save("cmyk.jpg", img.convert("CMYK"))
    save("progressive.jpg", img, progressive=True)
    save("rotated6.jpg", img, exif=_exif(6))
    save("upright1.jpg", img, exif=_exif(1))
    save("xmp3.jpg", img, xmp=XMP)
    save("odd_size.jpg", _photo(37, 53), quality=75, subsampling=2)
    save("lossless.png", img)
    out["truncated.jpg"] = tmp_path / "truncated.jpg"
    out["truncated.jpg"].write_bytes(out["baseline.jpg"].read_bytes()[:100])  # cut inside the tables
    out["noise.jpg"] = tmp_path / "noise.jpg"
    out["noise.jpg"].write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return out


def test_header_fields_equal_what_pillow_reads(files):
    for name, path in files.items():
        head = jpeg_header(path.read_bytes())
        if not name.endswith(".jpg") or name in ("truncated.jpg", "noise.jpg"):
            assert head is None, name
            continue
        with Image.open(path) as im:
            assert (head.width, head.height) == im.size, name
            assert head.components == len(im.getbands()), name
            assert (head.frame == 0xC2) == bool(im.info.get("progressive")), name
            assert head.orientation == im.getexif().get(0x0112, 1), name  # Pillow reads XMP's too
            assert head.precision == 8


def test_routing_sends_only_upright_8bit_ycc_or_gray_jpegs_to_the_device(files, monkeypatch):
    routed = {name: device_decodable(path.read_bytes()) for name, path in files.items()}
    assert {n for n, dev in routed.items() if dev} == {
        "baseline.jpg",
        "gray.jpg",
        "progressive.jpg",
        "upright1.jpg",
        "odd_size.jpg",
    }
    # the decoded-pixel limit: over it, the file goes to the CPU path, which refuses it by name
    monkeypatch.setenv("COPYBENCH_MAX_PIXELS", str(128 * 96 - 1))
    assert not device_decodable(files["baseline.jpg"].read_bytes())
    monkeypatch.setenv("COPYBENCH_MAX_PIXELS", str(128 * 96))
    assert device_decodable(files["baseline.jpg"].read_bytes())


def test_routing_takes_bytes_arrays_and_memoryviews_alike(files):
    data = files["rotated6.jpg"].read_bytes()
    for form in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert jpeg_header(form).orientation == 6


def _tiff(order: str, entries: list[tuple[int, int, int]]) -> bytes:
    """A hand-made Exif TIFF block: header, IFD0 at offset 8 with (tag, type, value) entries."""
    e = "<" if order == "II" else ">"
    body = struct.pack(e + "H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack(e + "HH", value, 0) if kind == 3 else struct.pack(e + "I", value)
        body += struct.pack(e + "HHI", tag, kind, 1) + packed
    return order.encode() + struct.pack(e + "HI", 42, 8) + body + b"\0\0\0\0"


def test_exif_orientation_in_both_byte_orders_and_malformed_blocks():
    assert exif_orientation(_tiff("II", [(0x010F, 2, 0), (0x0112, 3, 8)])) == 8
    assert exif_orientation(_tiff("MM", [(0x0112, 3, 5)])) == 5
    assert exif_orientation(_tiff("MM", [(0x0112, 4, 7)])) == 7  # LONG, seen in the wild
    assert exif_orientation(_tiff("II", [(0x010F, 2, 0)])) is None
    assert exif_orientation(b"XX" + _tiff("II", [])[2:]) == -1  # unknown byte order
    assert exif_orientation(_tiff("II", [(0x0112, 3, 6)])[:14]) == -1  # IFD cut short


def test_a_malformed_exif_block_goes_to_the_cpu_path(files):
    data = bytearray(files["rotated6.jpg"].read_bytes())
    at = data.find(b"Exif\x00\x00") + 6
    data[at : at + 2] = b"XX"  # neither II nor MM: Pillow's getexif reads no orientation from it either
    assert not device_decodable(bytes(data))


def test_read_file_gives_the_bytes_writable_or_fails_by_name(files, tmp_path, monkeypatch):
    buf, err = read_file(str(files["baseline.jpg"]))
    assert err is None and buf.flags.writeable and buf.tobytes() == files["baseline.jpg"].read_bytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_file(str(tmp_path / "empty.jpg")) == (None, f"{tmp_path / 'empty.jpg'}: empty file (0 bytes)")
    none, err = read_file(str(tmp_path / "gone.jpg"))
    assert none is None and err.startswith(f"{tmp_path / 'gone.jpg'}: cannot read")
    # a file that grows or shrinks between the size check and the read: named, never half-read
    real = os.fstat
    for delta in (-10, 10):
        monkeypatch.setattr(
            os,
            "fstat",
            lambda fd, d=delta: os.stat_result((*real(fd)[:6], real(fd).st_size + d, *real(fd)[7:])),
        )
        none, err = read_file(str(files["baseline.jpg"]))
        assert none is None and "changed while being read" in err and "baseline.jpg" in err, delta


def test_feed_yields_batches_in_order_with_routes_and_failures(files, tmp_path):
    names = sorted(files) + ["missing.jpg"]
    paths = [str(files.get(n, tmp_path / n)) for n in names]
    rows = list(range(len(paths)))
    for threads in (1, 3):
        batches = list(feed(paths, rows, batch_size=5, threads=threads))
        assert [b.size for b in batches] == [5, 5, 2]
        seen = [
            r for b in batches for r in sorted([r for r, _ in b.device + b.cpu] + [r for r, _ in b.failures])
        ]
        assert seen == rows
        dev = {names[r] for b in batches for r, _ in b.device}
        assert dev == {n for n in names if n in files and device_decodable(files[n].read_bytes())}
        failed = {names[r] for b in batches for r, _ in b.failures}
        assert failed == {"missing.jpg"}
        for b in batches:
            for r, data in b.device + b.cpu:
                assert data.tobytes() == files[names[r]].read_bytes()


def test_slab_pool_never_hands_out_a_slab_still_viewed():
    import torch

    from copybench.feed import SlabPool

    pool = SlabPool()
    a = pool.take(100)
    a[:] = 7
    view = torch.from_numpy(a[10:20])  # a decoder's tensor over part of the first slab
    del a
    b = pool.take(80)
    b[:] = 9
    assert int(view.sum()) == 70 and len(pool._slabs) == 2  # a second slab: the first is still read
    del view, b
    c = pool.take(90)
    assert len(pool._slabs) == 2 and c.size == 90  # nothing views them now: one is used again
    d = pool.take(1000)  # larger than every free slab: the free, too small ones are let go
    assert d.size == 1000 and len(pool._slabs) == 2 and any(c.base is s for s in pool._slabs)


def test_feed_reads_into_reused_slabs_with_the_right_bytes(files):
    from copybench.feed import SlabPool

    paths = [str(p) for p in files.values()] * 3
    pool = SlabPool()
    for _ in range(3):  # later passes read into the slabs of earlier ones
        for b in feed(paths, list(range(len(paths))), batch_size=4, threads=2, slabs=pool):
            for r, data in b.device + b.cpu:
                assert data.tobytes() == Path(paths[r]).read_bytes()
    assert len(pool._slabs) <= 8
