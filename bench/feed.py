"""The feeder of the device decoders: file bytes read by threads in this process, routed by their JPEG markers.

Contract. :func:`feed` yields one :class:`Fed` batch per ``batch_size`` rows, in order, reading ahead while the
caller works. Each file is read once into a writable numpy buffer (no copy after the read; the device decoders
take it as a tensor view) and routed:

- ``device``: a JPEG the device decoders give Pillow's pixels for, as its markers say (:func:`device_decodable`):
  8-bit baseline, extended or progressive Huffman frame of 1 or 3 components (not CMYK/YCCK, not Adobe RGB), upright
  (no EXIF or XMP orientation other than 1) and within the decoded-pixel limit.
- ``cpu``: everything else (PNG, CMYK, a rotated phone photo, a malformed header): Pillow decodes it from the same
  bytes and rotates, converts or refuses it by name, alone.
- ``failures``: a file that cannot be read, is empty, or changed size while being read, named.

Why threads and markers: DataLoader worker processes pickled every file's bytes back to the main process (a
measured 5,100 img/s ceiling from 15 workers on an H200 machine, plus 0.25 s of forks per run), and Pillow opened
every file to route it. File reads release the GIL; the marker walk touches a few hundred header bytes.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SOI = b"\xff\xd8"
FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn (C4 DHT, C8 JPG, CC DAC are not)
DEVICE_FRAMES = frozenset((0xC0, 0xC1, 0xC2))  # baseline, extended and progressive Huffman
STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM and RSTn carry no length
XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')  # what Pillow's getexif reads from XMP
READ_AHEAD = 2  # batches read while the caller decodes one


@dataclass(frozen=True)
class JpegHeader:
    """What the markers before the scan say: frame type and size, components, precision, orientation."""

    frame: int  # the SOFn marker byte (0xC0 baseline, 0xC2 progressive, ...)
    width: int
    height: int
    components: int
    precision: int
    orientation: int  # EXIF orientation (XMP's when EXIF has none), 1 when absent
    adobe_transform: int | None  # APP14 Adobe colour transform: 0 means 3 components stored as RGB


def jpeg_header(data) -> JpegHeader | None:
    """The header of a JPEG's bytes (bytes, bytearray, memoryview or uint8 array); None when ``data`` is not a
    JPEG or its markers are malformed before the first scan."""
    mv = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if bytes(mv[:2]) != SOI:
        return None
    found: dict = {"orientation": None, "xmp": None, "adobe": None, "frame": None}
    i, n = 2, len(mv)
    while i + 4 <= n:
        if mv[i] != 0xFF:
            return None  # a marker must follow the previous segment
        marker = mv[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in STANDALONE:
            i += 2
            continue
        length = (mv[i + 2] << 8) | mv[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        if marker == 0xDA:  # start of scan: every header segment has been seen
            break
        _segment(found, marker, mv[i + 4 : i + 2 + length])
        i += 2 + length
    return _header(found)


def _segment(found: dict, marker: int, seg) -> None:
    if marker == 0xE1 and bytes(seg[:6]) == b"Exif\x00\x00" and found["orientation"] is None:
        found["orientation"] = exif_orientation(bytes(seg[6:]))  # Pillow reads the first Exif segment
    elif marker == 0xE1 and bytes(seg[:29]) == b"http://ns.adobe.com/xap/1.0/\x00":
        match = XMP_ORIENTATION.search(bytes(seg[29:]))
        found["xmp"] = int(match[2]) if match else found["xmp"]
    elif marker == 0xEE and bytes(seg[:5]) == b"Adobe" and len(seg) >= 12:
        found["adobe"] = seg[11]
    elif marker in FRAME_MARKERS and found["frame"] is None and len(seg) >= 6:
        found["frame"] = (marker, seg[0], (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4], seg[5])


def _header(found: dict) -> JpegHeader | None:
    if found["frame"] is None or found["orientation"] == -1:
        return None  # no frame before the scan, or an Exif block Pillow could not read either
    marker, precision, height, width, components = found["frame"]
    orientation = found["orientation"] if found["orientation"] is not None else found["xmp"]
    return JpegHeader(marker, width, height, components, precision, orientation or 1, found["adobe"])


def exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag (0x0112) of IFD0 of an Exif TIFF block; None when absent, -1 when malformed."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return -1

    def num(at: int, size: int) -> int:
        return int.from_bytes(tiff[at : at + size], order)

    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return -1
    for k in range(num(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            return -1
        if num(entry, 2) == 0x0112:
            kind = num(entry + 2, 2)  # SHORT (3) as the standard says; LONG (4) seen in the wild
            return num(entry + 8, 2 if kind == 3 else 4)
    return None


def device_decodable(data) -> bool:
    """Whether the device decoders give the same pixels as Pillow for ``data``: see the module contract."""
    from .preprocess import ImageReadError, check_pixels

    head = jpeg_header(data)
    if head is None or head.frame not in DEVICE_FRAMES or head.precision != 8 or head.height == 0:
        return False
    if head.components not in (1, 3) or (head.components == 3 and head.adobe_transform == 0):
        return False
    try:
        check_pixels("", (head.width, head.height))
    except ImageReadError:
        return False  # the CPU path refuses it by name
    return head.orientation in (0, 1)


def read_file(path: str, buffer: np.ndarray | None = None) -> tuple[np.ndarray | None, str | None]:
    """(the file's bytes as a writable uint8 array, None), or (None, error naming the file). ``buffer``: where to
    read them when they fit (a slice of a :class:`SlabPool` slab), else a new array."""
    import numpy as np

    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            buf = buffer[:size] if buffer is not None and buffer.size >= size else np.empty(size, np.uint8)
            got, view = 0, memoryview(buf)
            while got < size:
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            grew = bool(f.read(1))
    except OSError as exc:
        return None, f"{path}: cannot read ({exc})"
    if size == 0 and not grew:
        return None, f"{path}: empty file (0 bytes)"
    if got != size or grew:
        return (
            None,
            f"{path}: changed while being read ({size} bytes when opened, {'more' if grew else got} read)",
        )
    return buf, None


def _ref_counts(items: list) -> list[int]:
    """Reference counts of ``items`` as held by one list (the count of an item nothing else holds is the same for
    every item, measured on a probe the same way)."""
    return [sys.getrefcount(x) for x in items]


class SlabPool:
    """Read buffers used again once nothing views them. Fresh memory costs a page fault per 4 KB on first touch:
    measured on the project's 2-core VM, a 93 KB file read into a new buffer took 142 us, into a used one 46 us.
    A slab goes out as views (numpy slices, tensors over them hold it); it is handed out again only when its
    reference count says no view of it is alive, so a buffer the decoders still read is never overwritten."""

    def __init__(self) -> None:
        self._slabs: list = []
        self._lock = threading.Lock()
        self._unviewed = _ref_counts([object()])[0]  # the count of a slab held by nothing but this pool

    def take(self, size: int) -> np.ndarray:
        """A writable uint8 array of ``size`` bytes viewing a slab nobody else views."""
        import numpy as np

        with self._lock:
            free = [x for x, n in zip(self._slabs, _ref_counts(self._slabs)) if n == self._unviewed]
            fits = [x for x in free if x.size >= size]
            if fits:
                return min(fits, key=len)[:size]  # the slice is taken under the lock: nobody else gets it
            gone = {id(x) for x in free}  # too small for today's files: let them go (by identity: arrays
            self._slabs = [x for x in self._slabs if id(x) not in gone]  # compare by value otherwise)
            slab = np.empty(size + size // 4, np.uint8)
            self._slabs.append(slab)
            return slab[:size]


@dataclass(frozen=True)
class Fed:
    """One batch of rows read and routed: (row, bytes) for the device decoder and for Pillow, failures named."""

    device: tuple[tuple[int, np.ndarray], ...]
    cpu: tuple[tuple[int, np.ndarray], ...]
    failures: tuple[tuple[int, str], ...]
    size: int


def read_and_route(
    paths: list[str], rows: list[int], slabs: SlabPool | None = None
) -> list[tuple[int, object, str | None, bool]]:
    """(row, bytes, error, device-decodable) for each row, in order; the bytes in one slab of ``slabs`` when given
    (sized by the files' sizes now; a file that grew since reads into its own buffer)."""
    sizes = []
    for row in rows:
        try:
            sizes.append(os.stat(paths[row]).st_size)
        except OSError:
            sizes.append(0)  # read_file names the error
    slab, at, out = (slabs.take(sum(sizes)) if slabs is not None else None), 0, []
    for row, size in zip(rows, sizes):
        data, err = read_file(paths[row], slab[at : at + size] if slab is not None else None)
        at += size if err is None and slab is not None and data.base is slab.base else 0
        out.append((row, data, err, err is None and device_decodable(data)))
    return out


def _collate(parts: list[list]) -> Fed:
    items = [item for part in parts for item in part]
    return Fed(
        tuple((row, data) for row, data, err, dev in items if err is None and dev),
        tuple((row, data) for row, data, err, dev in items if err is None and not dev),
        tuple((row, err) for row, _, err, _ in items if err is not None),
        len(items),
    )


def feed(
    paths: list[str], rows: list[int], *, batch_size: int, threads: int, slabs: SlabPool | None = None
) -> Iterator[Fed]:
    """Batches of ``rows`` read and routed by ``threads`` threads, ``READ_AHEAD`` batches ahead of the caller;
    into slabs of ``slabs`` when given (a pool kept across runs saves the first-touch page faults)."""
    threads = max(1, threads)
    batches = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    with ThreadPoolExecutor(threads, thread_name_prefix="copybench-read") as pool:

        def submit(chunk: list[int]) -> list:
            step = -(-len(chunk) // threads)  # one task per thread: a task per file costs more than a read
            return [
                pool.submit(read_and_route, paths, chunk[a : a + step], slabs)
                for a in range(0, len(chunk), step)
            ]

        pending: deque = deque(submit(b) for b in batches[:READ_AHEAD])
        for nxt in batches[READ_AHEAD:] + [None] * min(READ_AHEAD, len(batches)):
            parts = pending.popleft()
            if nxt is not None:
                pending.append(submit(nxt))
            yield _collate([f.result() for f in parts])
