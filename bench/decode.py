"""Decode strategies of the :class:`~copybench.extract.Extractor`: how image files become resized uint8 batches.

Every command that extracts descriptors (``run``, ``scan``, ``throughput``, the Python API) goes through the
Extractor, and the Extractor through one of these, so what ``copybench throughput`` measures is what ``run`` does.

- ``workers`` (CPU): DataLoader worker processes decode with Pillow and resize; a large JPEG is decoded at 1/2, 1/4
  or 1/8 scale by libjpeg's DCT scaling when the model needs far fewer pixels (never below
  :attr:`Preprocess.min_decode_side`). Workers group same-shape images into stacked batches; on CUDA the batches
  arrive in pinned memory and are copied asynchronously.
- ``device`` (GPU): workers only read file bytes; JPEGs are decoded batched on the device with nvjpeg
  (``torchvision.io.decode_jpeg``) and resized there. ``ahead`` batches decode in background threads, each on its
  own CUDA stream, while the model runs the oldest one. A file nvjpeg cannot decode (PNG, CMYK, a corrupt JPEG)
  goes through the CPU decoder alone, so a bad file costs only itself. On a CPU device the same code decodes with
  torchvision's libjpeg (how the tests check this path without a GPU).
- ``nvimgcodec`` (GPU): like ``device`` with NVIDIA nvImageCodec, which uses the GPU's hardware JPEG decoder where it
  has one (A100, H100, H200); from the optional ``gpu`` extra.
- ``auto``: ``device`` on CUDA when nvjpeg decodes there, else ``workers``.

Decoders differ in the last bit of some pixels (IDCT and chroma upsampling), so the strategy enters the
descriptor cache key: descriptors of one strategy are never served for another.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and Pillow load when a decoder runs: the CLI imports this module for DECODES
    import torch

    from .preprocess import Preprocess

log = logging.getLogger(__name__)
DECODES = ("auto", "workers", "device", "nvimgcodec")
DECODE_AHEAD = 3  # batches decoding on the device while the model runs: enough to hide decode behind compute


@dataclass(frozen=True)
class Batch:
    """One loader batch: same-shape groups of resized uint8 images, and the rows that failed with their error."""

    groups: tuple[tuple[tuple[int, ...], torch.Tensor], ...]  # (rows, (B, 3, H, W) uint8)
    failures: tuple[tuple[int, str], ...]
    size: int  # rows in the batch, decoded or not
    event: object = None  # CUDA event the groups' tensors are ready at (device decode on a side stream)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pin-memory thread: page-locked tensors copy to the GPU asynchronously."""
        groups = tuple((rows, x.pin_memory()) for rows, x in self.groups)
        return Batch(groups, self.failures, self.size, self.event)


def stack_groups(items: list[tuple[int, torch.Tensor]]) -> tuple[tuple[tuple[int, ...], torch.Tensor], ...]:
    """(row, image) pairs -> one stacked tensor per image shape ('short' resizing yields mixed shapes)."""
    import torch

    groups: dict[tuple, list] = {}
    for row, img in items:
        groups.setdefault(tuple(img.shape), []).append((row, img))
    return tuple((tuple(r for r, _ in g), torch.stack([x for _, x in g])) for g in groups.values())


def resolve_decode(decode: str, device: torch.device) -> str:
    """The strategy ``decode`` means on ``device``; ValueError for an unknown name or a GPU decoder without CUDA."""
    if decode not in DECODES:
        raise ValueError(f"unknown decode {decode!r}; choose one of {', '.join(DECODES)}")
    if decode == "auto":
        if device.type != "cuda":
            return "workers"
        reason = nvjpeg_unavailable(device)
        if reason:
            log.warning("GPU JPEG decoding unavailable (%s): decoding on CPU workers", reason)
            return "workers"
        return "device"
    if decode == "nvimgcodec":
        if device.type != "cuda":
            raise ValueError("decode 'nvimgcodec' needs a CUDA device")
        try:
            from nvidia import nvimgcodec  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                "decode 'nvimgcodec' needs nvImageCodec: pip install 'copybench[gpu]' (the gpu extra)"
            ) from exc
    return decode


def nvjpeg_unavailable(device: torch.device) -> str | None:
    """None when torchvision decodes a JPEG on ``device``; else why not (old torchvision, no nvjpeg)."""
    import torch
    from torchvision.io import decode_jpeg, encode_jpeg

    try:
        probe = encode_jpeg(torch.zeros((3, 16, 16), dtype=torch.uint8))
        decode_jpeg([probe], device=device)
    except Exception as exc:  # noqa: BLE001 - any failure means: not here, use the CPU workers
        return f"{type(exc).__name__}: {exc}"
    return None


# op types of an int8-quantised ONNX graph (QDQ format, or quantised operators): their names appear in the file
QUANTISED_OPS = (b"QuantizeLinear", b"QLinearConv", b"ConvInteger", b"MatMulInteger")


def draft_refusal(detector) -> str | None:
    """Why reduced-size (draft) decoding would move ``detector``'s descriptors by more than 1e-3 cosine, or None.

    An int8-quantised graph turns 1-level pixel changes into whole quantisation steps: the int8 SSCD ONNX model
    moved by 7.5e-3 cosine on a smooth wallpaper decoded at 1/2 scale, by 1.1e-2 even at 9x its input size and by
    6e-3 for an exact 2x2 box average rounded to 8 bits, so no margin makes its draft faithful; it decodes in full.
    """
    modules = detector.modules() if hasattr(detector, "modules") else []
    for m in modules:
        path = getattr(m, "path", None)  # a graph run by ONNX Runtime (copybench.detectors.sscd.OnnxUint8)
        if getattr(m, "runs_outside_torch", False) and str(path).endswith(".onnx") and _int8_graph(path):
            return f"{detector.spec.name} runs an int8-quantised graph, which a reduced-size decode moves"
    return None


def _int8_graph(path: str) -> bool:
    """Whether the ONNX file holds quantised operators (op type names are stored as plain strings)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return any(data.find(op) >= 0 for op in QUANTISED_OPS)
    except (OSError, ValueError):
        return False  # an unreadable graph fails where the model loads; nothing to decide here


def pillow_decode_key(draft: bool) -> str:
    """The cache key's decode part for the workers path: the draft margin is in it, since it changes the pixels."""
    from .preprocess import Preprocess

    return f"pillow-draft{Preprocess.DRAFT_MARGIN}" if draft else "pillow"


def make_decoder(
    strategy: str, preprocess: Preprocess, *, device, batch_size: int, num_workers: int, draft=True
):
    """The feeder for a resolved strategy name: on a CPU device the workers path decodes in threads (see
    :class:`ThreadDecode`), on a GPU in worker processes."""
    import torch

    if strategy == "workers" and torch.device(device).type == "cpu":
        threads = max(1, num_workers, torch.get_num_threads())
        return ThreadDecode(preprocess, batch_size=batch_size, threads=threads, draft=draft)
    if strategy == "workers":
        return WorkerDecode(
            preprocess, batch_size=batch_size, num_workers=num_workers, device=device, draft=draft
        )
    return DeviceDecode(
        preprocess, batch_size=batch_size, num_workers=num_workers, device=device, backend=strategy
    )


# ----------------------------------------------------------------------------------------------- CPU workers
class _Images:
    """Decode + resize in workers; a bad file yields its error message instead of pixels."""

    def __init__(
        self, paths: list[str], rows: list[int], preprocess: Preprocess, min_side: int | None
    ) -> None:
        self.paths, self.rows, self.preprocess, self.min_side = paths, rows, preprocess, min_side

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        return row, *decode_on_cpu(self.paths[row], self.preprocess, self.min_side)


def decode_on_cpu(
    path: str, preprocess: Preprocess, min_side: int | None, data: bytes | None = None
) -> tuple[torch.Tensor | None, str | None]:
    """(resized uint8 image, None), or (None, error message naming the file); ``data``: its bytes, if read."""
    from .preprocess import ImageReadError, pil_to_tensor, read_image

    try:
        img = read_image(path, min_side=min_side, data=data, rgb=preprocess.rgb_conversion)
        return preprocess.resize(pil_to_tensor(img)), None
    except ImageReadError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any decoder crash on one odd file must not kill the run
        return None, f"{path}: {type(exc).__name__}: {exc}"


def _collate_images(items) -> Batch:
    ok = [(row, img) for row, img, err in items if err is None]
    return Batch(stack_groups(ok), tuple((row, err) for row, _, err in items if err is not None), len(items))


class WorkerDecode:
    """Pillow decode (reduced-size for large JPEGs) + resize in DataLoader worker processes."""

    name = "workers"

    def __init__(
        self, preprocess: Preprocess, *, batch_size: int, num_workers: int, device, draft: bool = True
    ):
        import torch

        self.preprocess, self.batch_size, self.num_workers = preprocess, batch_size, num_workers
        self.device = torch.device(device)
        self.min_side = preprocess.min_decode_side if draft else None

    def batches(self, paths: list[str], rows: list[int]) -> Iterator[Batch]:
        import torch

        loader = torch.utils.data.DataLoader(
            _Images(paths, rows, self.preprocess, self.min_side),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate_images,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.num_workers else None,
        )
        yield from loader


class ThreadDecode:
    """CPU device: each batch is decoded by a pool of threads in this process, then the model runs on it.

    On a CPU the model and the decoders share the cores. Worker processes decoding while the model runs preempt
    its OpenMP threads, and one preempted thread stalls the whole parallel region: measured on 2 cores,
    efficientnet_lite0's first batch ran 1.7 s slower while a worker decoded 0.4 CPU-seconds of JPEGs. Decoding
    between batches with every core (Pillow and torchvision release the GIL) costs only the decode's own time,
    and a pixel baseline, whose model takes no time, decodes on every core instead of one worker's.
    """

    name = "workers"

    def __init__(self, preprocess: Preprocess, *, batch_size: int, threads: int, draft: bool = True) -> None:
        self.preprocess, self.batch_size, self.threads = preprocess, batch_size, max(1, threads)
        self.min_side = preprocess.min_decode_side if draft else None

    def batches(self, paths: list[str], rows: list[int]) -> Iterator[Batch]:
        from concurrent.futures import ThreadPoolExecutor

        def one(row: int):
            return row, *decode_on_cpu(paths[row], self.preprocess, self.min_side)

        with ThreadPoolExecutor(self.threads, thread_name_prefix="copybench-decode") as pool:
            for start in range(0, len(rows), self.batch_size):
                yield _collate_images(list(pool.map(one, rows[start : start + self.batch_size])))


# ----------------------------------------------------------------------------------------------- device decode
class _FileBytes:
    """Workers only read: (row, bytes or None, error or None)."""

    def __init__(self, paths: list[str], rows: list[int]) -> None:
        self.paths, self.rows = paths, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        try:
            # plain bytes, not tensors: many small shared-memory tensors per batch exhaust file descriptors
            data = Path(self.paths[row]).read_bytes()
        except OSError as exc:
            return row, None, f"{self.paths[row]}: cannot read ({exc})"
        if not data:
            return row, None, f"{self.paths[row]}: empty file (0 bytes)"
        return row, data, None


def _is_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8"


def _device_decodable(data: bytes) -> bool:
    """A JPEG the device decoders give the same pixels for as Pillow: upright (the device ignores EXIF
    orientation) and within the pixel limit; others go to the CPU path, which rotates or refuses them by name."""
    import io

    from PIL import Image

    from .preprocess import check_pixels, exif_rotated

    if not _is_jpeg(data):
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:  # header only: no pixels are decoded here
            check_pixels("", img.size)
            return not exif_rotated(img)
    except (OSError, ValueError, SyntaxError):  # ImageReadError is an OSError
        return False


class DeviceDecode:
    """File bytes read in workers, JPEGs decoded batched on the device (nvjpeg or nvImageCodec), resized there."""

    def __init__(
        self,
        preprocess: Preprocess,
        *,
        batch_size: int,
        num_workers: int,
        device,
        backend: str = "device",
        ahead: int = DECODE_AHEAD,
    ) -> None:
        import torch

        self.preprocess, self.batch_size, self.num_workers = preprocess, batch_size, num_workers
        self.device, self.backend, self.ahead = torch.device(device), backend, max(1, ahead)
        self.name = backend
        self._nvimgcodec = None
        self._params = None
        self.paths: list[str] = []

    def batches(self, paths: list[str], rows: list[int]) -> Iterator[Batch]:
        from concurrent.futures import ThreadPoolExecutor

        import torch

        self.paths = paths
        loader = torch.utils.data.DataLoader(
            _FileBytes(paths, rows),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=list,
            prefetch_factor=4 if self.num_workers else None,
        )
        cuda = self.device.type == "cuda"
        streams = [torch.cuda.Stream(self.device) if cuda else None for _ in range(self.ahead)]
        pending: deque = deque()
        with ThreadPoolExecutor(self.ahead) as pool:
            for n, items in enumerate(loader):
                pending.append(pool.submit(self._decode_batch, items, streams[n % self.ahead]))
                if len(pending) > self.ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _decode_batch(self, items, stream) -> Batch:
        """Decode and resize one batch on ``stream``; record an event the model's stream waits for."""
        import torch

        failures = [(row, err) for row, _, err in items if err is not None]
        good = [(row, data) for row, data, err in items if err is None]
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            images, bad = self._decode_all(good)
            groups = tuple(
                (rows, self.preprocess.resize(x)) for rows, x in stack_groups(list(images.items()))
            )
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        return Batch(groups, tuple(failures + bad), len(items), event)

    def _decode_all(self, good: list[tuple[int, bytes]]) -> tuple[dict[int, torch.Tensor], list]:
        """row -> uint8 (3, H, W) on the device, in row order; files the device cannot decode go to the CPU."""
        jpegs = [(row, data) for row, data in good if _device_decodable(data)]
        decoded: dict[int, torch.Tensor] = {}
        if jpegs:
            try:
                decoded = dict(zip([r for r, _ in jpegs], self._decode_jpegs([d for _, d in jpegs])))
            except Exception as exc:  # noqa: BLE001 - one bad file fails a batched call: retry one by one
                log.debug("batched device decode failed (%s); decoding one by one", exc)
                decoded = self._decode_one_by_one(jpegs)
        bad = []
        for row, _ in good:
            if row in decoded:
                continue
            img, err = self._cpu_fallback(row)
            if err is not None:
                bad.append((row, err))
            else:
                decoded[row] = img
        return {row: decoded[row] for row, _ in good if row in decoded}, bad

    def _decode_one_by_one(self, jpegs) -> dict[int, torch.Tensor]:
        out = {}
        for row, data in jpegs:
            with contextlib.suppress(Exception):
                out[row] = self._decode_jpegs([data])[0]
        return out

    def _cpu_fallback(self, row: int) -> tuple[torch.Tensor | None, str | None]:
        """Full-size Pillow decode of one file (same pixels as the device decoders, no reduced-size draft)."""
        from .preprocess import ImageReadError, pil_to_tensor, read_image

        path = self.paths[row]
        try:
            img = read_image(path, rgb=self.preprocess.rgb_conversion)
            return pil_to_tensor(img).to(self.device), None
        except ImageReadError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one odd file must not kill the run
            return None, f"{path}: {type(exc).__name__}: {exc}"

    def _decode_jpegs(self, datas: list[bytes]) -> list[torch.Tensor]:
        if self.backend == "nvimgcodec":
            return self._decode_nvimgcodec(datas)
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device)

    def _decode_nvimgcodec(self, datas: list[bytes]) -> list[torch.Tensor]:
        """Batched decode with nvImageCodec (hardware JPEG decoder where present) to (3, H, W) device tensors."""
        import torch
        from nvidia import nvimgcodec

        if self._nvimgcodec is None:
            self._nvimgcodec = nvimgcodec.Decoder(device_id=self.device.index or 0)
            # as Pillow's decode: pixels in file order (no EXIF rotation), 8-bit RGB
            self._params = nvimgcodec.DecodeParams(
                apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.RGB
            )
        stream = torch.cuda.current_stream(
            self.device
        ).cuda_stream  # this batch's side stream: its event covers it
        images = self._nvimgcodec.decode(datas, params=self._params, cuda_stream=stream)
        if any(img is None for img in images):
            raise ValueError("nvImageCodec could not decode every image of the batch")
        # HWC device memory shared through DLPack (no copy), viewed as CHW like torchvision's decoders
        return [torch.from_dlpack(img)[..., :3].permute(2, 0, 1) for img in images]
