"""Decode strategies of the :class:`~copybench.extract.Extractor`: how image files become resized uint8 batches.

Every command that extracts descriptors (``run``, ``scan``, ``throughput``, the Python API) goes through the
Extractor, and the Extractor through one of these, so what ``copybench throughput`` measures is what ``run`` does.

- ``workers`` (CPU): DataLoader worker processes decode with Pillow and resize; a large JPEG is decoded at 1/2, 1/4
  or 1/8 scale by libjpeg's DCT scaling when the model needs far fewer pixels (never below
  :attr:`Preprocess.min_decode_side`). Workers group same-shape images into stacked batches; on CUDA the batches
  arrive in pinned memory and are copied asynchronously.
- ``device`` (GPU): threads in this process read the file bytes and route each file by its JPEG markers
  (:mod:`copybench.feed`); JPEGs are decoded batched on the device with nvjpeg (``torchvision.io.decode_jpeg``) and
  resized there, one batch ahead of the model on a side CUDA stream (``ahead`` batches, each on its own stream),
  with no host synchronisation per batch. A file nvjpeg cannot decode (PNG, CMYK, an EXIF-rotated or corrupt JPEG)
  goes through the CPU decoder alone, so a bad file costs only itself. On a CPU device the same code decodes with
  torchvision's libjpeg (how the tests check this path without a GPU).
- ``nvimgcodec`` (GPU): like ``device`` with NVIDIA nvImageCodec and the backends it picks; ``nvimgcodec-hw``
  restricts it to the GPU's hardware JPEG decoders (A100, H100, H200), which leave the SMs to the model. From the
  optional ``gpu`` extra.
- ``auto``: ``device`` on CUDA when nvjpeg decodes there, else ``workers``.

Decoders differ in the last bit of some pixels (IDCT and chroma upsampling), so the strategy enters the
descriptor cache key: descriptors of one strategy are never served for another.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and Pillow load when a decoder runs: the CLI imports this module for DECODES
    import torch

    from .preprocess import Preprocess

log = logging.getLogger(__name__)
DECODES = ("auto", "workers", "device", "nvimgcodec", "nvimgcodec-hw")
# batches decoding on side streams while the model runs: one hides the decode behind the model when both fit on the
# device; more streams compete with the model for the SMs (nvjpeg runs on them)
DECODE_AHEAD = 1


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
    if decode.startswith("nvimgcodec"):
        if device.type != "cuda":
            raise ValueError(f"decode {decode!r} needs a CUDA device")
        try:
            from nvidia import nvimgcodec  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                f"decode {decode!r} needs nvImageCodec: pip install 'copybench[gpu]' (the gpu extra)"
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
    strategy: str,
    preprocess: Preprocess,
    *,
    device,
    batch_size: int,
    num_workers: int,
    draft=True,
    ahead: int = DECODE_AHEAD,
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
        preprocess,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        backend=strategy,
        ahead=ahead,
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
def handoff(fed, stream=None) -> list[torch.Tensor]:
    """The device decoder's input of a routed batch without decoding it: its JPEGs as uint8 tensor views."""
    return [_as_tensor(d) for _, d in fed.device]


def _as_tensor(data) -> torch.Tensor:
    """A uint8 tensor viewing ``data`` without a copy: the feeder's buffers are writable numpy arrays; bytes from
    elsewhere (the Ray engine's read tasks) are read-only, which the decoders never write to."""
    import warnings

    import numpy as np
    import torch

    if isinstance(data, np.ndarray) and data.flags.writeable:
        return torch.from_numpy(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable buffer": the decoders only read it
        return torch.frombuffer(data, dtype=torch.uint8)


class DeviceDecode:
    """File bytes read by threads in this process (:mod:`copybench.feed`), JPEGs decoded batched on the device
    (nvjpeg or nvImageCodec) and resized there, ``ahead`` batches ahead of the model on side streams."""

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
        self._local = (
            threading.local()
        )  # each decode thread's own nvImageCodec decoder: none shared by threads
        self.paths: list[str] = []
        from .feed import SlabPool

        self._slabs = SlabPool()  # kept with this decoder: a second run reads into memory already touched

    def fed(self, paths: list[str], rows: list[int]):
        """Read, routed batches (:class:`copybench.feed.Fed`): the feeding alone, without decoding."""
        from .feed import feed

        threads = max(2, self.num_workers)
        return feed(paths, rows, batch_size=self.batch_size, threads=threads, slabs=self._slabs)

    def batches(self, paths: list[str], rows: list[int]) -> Iterator[Batch]:
        """Decoded batches in order: batch n+1 decodes in a background thread on a side stream while the caller
        runs the model on batch n, and nothing here waits for the device."""
        self.paths = paths
        yield from self.pipeline(paths, rows, self.decode_fed)

    def pipeline(self, paths: list[str], rows: list[int], decode) -> Iterator:
        """``decode(fed, stream)`` of each read, routed batch, run in background threads ``ahead`` batches ahead
        of the caller (one side stream each on CUDA), results in order. :meth:`batches` decodes; the feeder
        benchmark hands the bytes over without decoding."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        cuda = self.device.type == "cuda"
        streams = [torch.cuda.Stream(self.device) if cuda else None for _ in range(self.ahead)]
        pending: deque = deque()
        with ThreadPoolExecutor(self.ahead, thread_name_prefix="copybench-decode") as pool:
            for n, fed in enumerate(self.fed(paths, rows)):
                pending.append(pool.submit(decode, fed, streams[n % self.ahead]))
                if len(pending) > self.ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def decode_fed(self, fed, stream) -> Batch:
        """Decode and resize one routed batch on ``stream``; record an event the model's stream waits for."""
        import torch

        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            images, bad = self._decode_routed(list(fed.device), list(fed.cpu))
            groups = tuple(
                (rows, self.preprocess.resize(x)) for rows, x in stack_groups(sorted(images.items()))
            )
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        return Batch(groups, tuple(fed.failures) + tuple(bad), fed.size, event)

    def _decode_batch(self, items, stream) -> Batch:
        """(row, bytes or None, error or None) items, routed here: the Ray engine's entry point."""
        from .feed import Fed, device_decodable

        good = [(row, data, device_decodable(data)) for row, data, err in items if err is None]
        dev = tuple((row, d) for row, d, ok in good if ok)
        cpu = tuple((row, d) for row, d, ok in good if not ok)
        failures = tuple((row, err) for row, _, err in items if err is not None)
        return self.decode_fed(Fed(dev, cpu, failures, len(items)), stream)

    def _decode_routed(self, jpegs: list, others: list) -> tuple[dict[int, torch.Tensor], list]:
        """row -> uint8 (3, H, W) on the device; files the device cannot decode go to the CPU, named if bad."""
        decoded: dict[int, torch.Tensor] = {}
        if jpegs:
            try:
                decoded = dict(zip([r for r, _ in jpegs], self._decode_jpegs([d for _, d in jpegs])))
            except Exception as exc:  # noqa: BLE001 - one bad file fails a batched call: retry one by one
                log.debug("batched device decode failed (%s); decoding one by one", exc)
                decoded = self._decode_one_by_one(jpegs)
        bad = []
        for row, data in [(r, d) for r, d in jpegs if r not in decoded] + others:
            img, err = self._cpu_fallback(row, data)
            if err is not None:
                bad.append((row, err))
            else:
                decoded[row] = img
        return decoded, bad

    def _decode_one_by_one(self, jpegs) -> dict[int, torch.Tensor]:
        out = {}
        for row, data in jpegs:
            with contextlib.suppress(Exception):
                out[row] = self._decode_jpegs([data])[0]
        return out

    def _cpu_fallback(self, row: int, data=None) -> tuple[torch.Tensor | None, str | None]:
        """Full-size Pillow decode of one file's bytes (same pixels as the device decoders, no draft)."""
        from .preprocess import ImageReadError, pil_to_tensor, read_image

        path = self.paths[row]
        try:
            img = read_image(path, data=data, rgb=self.preprocess.rgb_conversion)
            return pil_to_tensor(img).to(self.device), None
        except ImageReadError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one odd file must not kill the run
            return None, f"{path}: {type(exc).__name__}: {exc}"

    def _decode_jpegs(self, datas: list) -> list[torch.Tensor]:
        if self.backend.startswith("nvimgcodec"):
            return self._decode_nvimgcodec(datas)
        from torchvision.io import ImageReadMode, decode_jpeg

        return decode_jpeg([_as_tensor(d) for d in datas], mode=ImageReadMode.RGB, device=self.device)

    def _decode_nvimgcodec(self, datas: list) -> list[torch.Tensor]:
        """Batched decode with nvImageCodec (``nvimgcodec-hw``: its hardware JPEG backend only) to (3, H, W)."""
        import numpy as np
        import torch
        from nvidia import nvimgcodec

        cuda = self.device.type == "cuda"
        if getattr(self._local, "nvimgcodec", None) is None:
            device_id = (self.device.index or 0) if cuda else None
            self._local.nvimgcodec = nvimgcodec_decoder(self.backend, device_id)
        decoder, params = self._local.nvimgcodec
        stream = torch.cuda.current_stream(self.device).cuda_stream if cuda else 0  # this batch's side stream
        sources = [
            nvimgcodec.CodeStream(d if isinstance(d, np.ndarray) else np.frombuffer(d, np.uint8))
            for d in datas
        ]
        images = decoder.decode(sources, params=params, cuda_stream=stream)
        if any(img is None for img in images):
            raise ValueError("nvImageCodec could not decode every image of the batch")
        return [
            _chw(_image_tensor(img), img.sample_format == nvimgcodec.SampleFormat.P_RGB) for img in images
        ]


def _image_tensor(img) -> torch.Tensor:
    """An nvImageCodec image as a tensor without a copy: device memory through DLPack, host memory (its CPU
    backend) through the array interface (its DLPack export asks the CUDA runtime, absent without a GPU)."""
    import numpy as np
    import torch
    from nvidia import nvimgcodec

    if img.buffer_kind == nvimgcodec.ImageBufferKind.STRIDED_HOST:
        return torch.from_numpy(np.asarray(img))
    return torch.from_dlpack(img)


def _chw(x: torch.Tensor, planar: bool) -> torch.Tensor:
    """A decoded image as (3, H, W): planar output as it is, interleaved (H, W, C) viewed channels-first."""
    return x if planar else x[..., :3].permute(2, 0, 1)


def nvimgcodec_decoder(backend: str, device_id: int | None):
    """(Decoder, DecodeParams) for ``nvimgcodec`` (every backend nvImageCodec picks) or ``nvimgcodec-hw`` (the
    GPU's hardware JPEG decoders only: A100, H100, H200). ``device_id`` None: its CPU backend (how the tests run
    this path without a GPU)."""
    from nvidia import nvimgcodec

    if device_id is None:
        cpu = [nvimgcodec.Backend(nvimgcodec.BackendKind.CPU_ONLY)]
        return nvimgcodec.Decoder(
            device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY, backends=cpu
        ), nvimgcodec_params()
    backends = None
    if backend == "nvimgcodec-hw":
        backends = [nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)]
    return nvimgcodec.Decoder(device_id=device_id, backends=backends), nvimgcodec_params()


def nvimgcodec_params():
    """Decode parameters giving Pillow's pixels: 8-bit sRGB, no EXIF rotation, planar (3, H, W) like torchvision."""
    from nvidia import nvimgcodec

    return nvimgcodec.DecodeParams(
        apply_exif_orientation=False,
        color_spec=nvimgcodec.ColorSpec.SRGB,  # 0.9.0 has SRGB, no RGB
        sample_format=nvimgcodec.SampleFormat.P_RGB,
    )
