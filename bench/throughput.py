"""Throughput: images per second per detector (model-only and end-to-end) and retrieval queries per second.

Contract. :func:`throughput` writes one result file (kind ``throughput``, schema v1) per (detector, device name,
dtype, batch size, channels-last, compile) under ``results``; each holds one measurement with medians and
inter-quartile ranges. What is timed:

- ``model``: a preprocessed float batch already on the device -> forward (autocast) -> L2 norm.
- ``e2e``: files on disk -> decode, resize, uint8 transfer, normalise, forward, L2 norm. ``decode="workers"`` is
  the harness's own :class:`~copybench.extract.Extractor` (Pillow decode + resize in DataLoader workers);
  ``decode="device"`` reads JPEG bytes in workers and decodes and resizes them batched on the device
  (``torchvision.io.decode_jpeg``, nvjpeg on CUDA), then runs ``Extractor.forward``. ``auto`` = device on CUDA.
- ``retrieval``: the e2e descriptors searched (exact top-k, :func:`copybench.retrieval.search`) against a seeded
  synthetic set of unit vectors (``n_references`` x D).
- ``reference`` (optional): the straightforward pipeline, as paper code writes it: Pillow decode and torchvision
  ``Resize/CenterCrop/ToTensor/Normalize`` per image, a plain DataLoader with default collate (float32 batches,
  same worker count), and retrieval by a full similarity matrix and ``argsort``; same images, model, dtype and
  machine, in the same run, so the speed-ups are ratios measured together.

Timing: warm-up calls, then each call timed on its own (CUDA synchronised) until both ``repeats`` calls and
``min_time`` seconds are reached; rates are reported as median and IQR. We time calls ourselves rather than with
``torch.utils.benchmark.Timer.blocked_autorange``: one e2e pass lasts seconds, so autorange would take a single
block and report no spread (and Timer runs on one thread unless told otherwise).

Speed is comparable only between results of the same machine and device. Random weights do not change speed, so
random weights are allowed by default; the weights status is stored in every result and shown in every table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .env import check_device
from .io import IMAGE_SUFFIXES, is_image_file

log = logging.getLogger(__name__)

DECODES = ("auto", "workers", "device")
CAVEAT = "speed is comparable only between rows measured on the same machine and device"


@dataclass(frozen=True)
class ThroughputSettings:
    """How to measure; one result file per batch size."""

    device: str = "cpu"
    dtype: str = "fp32"
    batch_sizes: tuple[int, ...] = (32,)
    channels_last: bool = False
    compile: bool = False
    n_images: int = 256
    image_size: tuple[int, int] = (512, 384)  # synthetic JPEGs, width x height
    n_references: int = 100_000
    topk: int = 10
    num_workers: int | None = None  # None: all cores but one
    decode: str = "auto"
    reference: bool = False
    repeats: int = 3
    min_time: float = 1.0  # seconds of model-only calls, at least
    seed: int = 0

    def __post_init__(self) -> None:
        if self.decode not in DECODES:
            raise ValueError(f"unknown decode {self.decode!r}; choose one of {', '.join(DECODES)}")
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"unknown dtype {self.dtype!r}; choose fp32, bf16 or fp16")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be positive, got {list(self.batch_sizes)}")
        for flag, value in (
            ("--n-images", self.n_images),
            ("--n-references", self.n_references),
            ("--repeats", self.repeats),
        ):
            if value < 1:
                raise ValueError(f"{flag} must be positive, got {value}")

    @property
    def workers(self) -> int:
        """DataLoader workers: the harness caps at 8; a throughput run may use every core but one."""
        return self.num_workers if self.num_workers is not None else max(1, (os.cpu_count() or 2) - 1)

    @property
    def resolved_decode(self) -> str:
        if self.decode != "auto":
            return self.decode
        return "device" if str(self.device).startswith("cuda") else "workers"


# ----------------------------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call, each processing ``items`` items."""

    seconds: tuple[float, ...]
    items: int

    def rate(self) -> tuple[float, list[float]]:
        """(median items/s, [25th, 75th percentile items/s])."""
        import numpy as np

        q1, med, q3 = np.percentile(np.asarray(self.seconds), [25, 50, 75])
        return float(self.items / med), [float(self.items / q3), float(self.items / q1)]


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def measure(
    fn, items: int, *, device: str = "cpu", warmup: int = 1, repeats: int = 3, min_time: float = 0.0
) -> Timing:
    """Call ``fn`` ``warmup`` times, then time calls until ``repeats`` calls and ``min_time`` seconds are done."""
    import time

    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return Timing(tuple(times), items)


def _peak_host_mb() -> dict:
    """Peak resident memory so far (Linux reports KiB): this process, and its largest finished child (workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process": own, "largest_worker": children}


def _reset_device_peak(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def _device_peak_mb(device: str) -> float | None:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return None


# ----------------------------------------------------------------------------------------------- images
def _synthetic_image(i: int, size: tuple[int, int], seed: int):
    """Smooth colour gradients plus noise and a rectangle: compresses like a photo, not like flat colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng([seed, i])  # per-item seed: any image can be regenerated alone
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(-1, 1, size=(2, 3)).astype(np.float32)
    base = 128 + 60 * (a * xx[..., None] / w + b * yy[..., None] / h) + rng.normal(0, 18, (h, w, 3))
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    base[y0 : y0 + h // 3, x0 : x0 + w // 3] += rng.uniform(-80, 80, size=3)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def _write_range(folder: str, start: int, stop: int, size: tuple[int, int], seed: int) -> None:
    for i in range(start, stop):
        _synthetic_image(i, size, seed).save(Path(folder) / f"synthetic_{i:06d}.jpg", quality=90)


def write_synthetic_jpegs(
    folder: str | Path, n: int, *, size: tuple[int, int] = (512, 384), seed: int = 0
) -> list[str]:
    """Write ``n`` seeded synthetic JPEGs into ``folder`` (in parallel processes when many); returns their paths."""
    from concurrent.futures import ProcessPoolExecutor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    procs = min(os.cpu_count() or 1, max(1, n // 128))
    if procs == 1:
        _write_range(str(folder), 0, n, size, seed)
    else:
        bounds = [(n * k // procs, n * (k + 1) // procs) for k in range(procs)]
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(_write_range, *zip(*[(str(folder), a, b, size, seed) for a, b in bounds])))
    return [str(folder / f"synthetic_{i:06d}.jpg") for i in range(n)]


def list_images(folder: str | Path, n: int | None = None) -> list[str]:
    """Sorted image files under ``folder`` (recursively), the first ``n`` when given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"--images: no such folder: {folder}")
    paths = sorted(str(p) for p in folder.rglob("*") if is_image_file(p))
    if not paths:
        raise FileNotFoundError(f"--images: no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return paths[:n] if n else paths


@contextlib.contextmanager
def _image_paths(images: str | Path | None, settings: ThroughputSettings):
    if images is not None:
        yield list_images(images, settings.n_images)
        return
    with tempfile.TemporaryDirectory(prefix="copybench-throughput-") as tmp:
        yield write_synthetic_jpegs(tmp, settings.n_images, size=settings.image_size, seed=settings.seed)


def synthetic_references(n: int, dims: int, seed: int = 0):
    """(n, dims) float32 unit vectors, seeded."""
    import numpy as np

    x = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# ----------------------------------------------------------------------------------------------- device decode
class _FileBytes:
    """Dataset of raw file bytes: workers only read, the device decodes."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> bytes:
        # plain bytes, not tensors: many small shared-memory tensors per batch exhaust or lose file descriptors
        return Path(self.paths[i]).read_bytes()


def _collate_list(items):
    return items


def _decode(datas: list, device) -> list:
    """Decode a batch of file bytes to uint8 (3, H, W) on ``device``: JPEGs batched, anything else one by one."""
    import torch
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    datas = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    is_jpeg = [bool(d.numel() > 2 and d[0] == 0xFF and d[1] == 0xD8) for d in datas]
    jpegs = [d for d, j in zip(datas, is_jpeg) if j]
    decoded = iter(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device) if jpegs else [])
    return [
        next(decoded) if j else decode_image(d, mode=ImageReadMode.RGB).to(device)
        for d, j in zip(datas, is_jpeg)
    ]


def _decode_resize(extractor, datas: list, stream) -> list:
    """Decoded and resized uint8 batches grouped by shape: [(row offsets, (B, 3, S, S) tensor)], on a side stream."""
    import torch

    with (
        torch.inference_mode(),
        torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext(),
    ):
        images = _decode(datas, extractor.device)
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape), []).append(i)
        out = [
            (rows, extractor.preprocess.resize(torch.stack([images[i] for i in rows])))
            for rows in groups.values()
        ]
        event = None
        if stream is not None:
            event = torch.cuda.Event()
            event.record(stream)
    return [(rows, x, event) for rows, x in out]


DECODE_AHEAD = 2


def device_decode_extract(extractor, paths: list[str], num_workers: int):
    """Descriptors of ``paths`` with decode and resize on the extractor's device; the next batch is decoded in a
    background thread (its own CUDA stream) while the current one runs through the model."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch

    loader = torch.utils.data.DataLoader(
        _FileBytes(paths),
        batch_size=extractor.batch_size,
        num_workers=num_workers,
        collate_fn=_collate_list,
        prefetch_factor=4 if num_workers else None,
    )
    cuda = extractor.device.type == "cuda"
    # DECODE_AHEAD batches decode concurrently, each thread on its own stream, while the model runs the oldest
    streams = [torch.cuda.Stream(extractor.device) if cuda else None for _ in range(DECODE_AHEAD)]
    chunks, offset, pending = [], 0, []
    with ThreadPoolExecutor(DECODE_AHEAD) as pool:
        for n, datas in enumerate(loader):
            pending.append((pool.submit(_decode_resize, extractor, datas, streams[n % DECODE_AHEAD]), offset))
            offset += len(datas)
            if len(pending) > DECODE_AHEAD:
                chunks += _forward_groups(extractor, *pending.pop(0))
        for item in pending:
            chunks += _forward_groups(extractor, *item)
    # one device-to-host copy at the end: a copy per batch would stall the GPU queue every batch
    vectors = np.zeros((len(paths), chunks[0][1].shape[1]), np.float32)
    for rows, vecs in chunks:
        vectors[rows] = vecs.cpu().numpy()
    return vectors


def _forward_groups(extractor, future, offset: int) -> list:
    import torch

    out = []
    for rows, x, event in future.result():
        if event is not None:
            torch.cuda.current_stream(extractor.device).wait_event(event)
            x.record_stream(torch.cuda.current_stream(extractor.device))
        glob, _ = extractor.forward(x)
        out.append(([offset + r for r in rows], glob))
    return out


# ----------------------------------------------------------------------------------------------- reference pipeline
def reference_transform(spec):
    """The per-image torchvision transform a paper's script would write for this detector's spec."""
    from torchvision import transforms as T

    interp = T.InterpolationMode(spec.interpolation)
    size = spec.input_size
    if spec.resize == "square":
        steps = [T.Resize((size, size), interpolation=interp)]
    else:
        steps = [T.Resize(spec.resize_size, interpolation=interp)]
        steps += [T.CenterCrop(size)] if spec.resize == "short_crop" else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(spec.mean, spec.std)])


class _ReferenceImages:
    def __init__(self, paths: list[str], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.open(self.paths[i]).convert("RGB"))


def reference_extract(
    detector,
    paths: list[str],
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch_size: int = 32,
    num_workers: int = 0,
):
    """Descriptors the straightforward way: per-image transforms, default collate, float32 batches to the device."""
    import torch

    from .extract import DTYPES

    loader = torch.utils.data.DataLoader(
        _ReferenceImages(paths, reference_transform(detector.spec)),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    device_type = torch.device(device).type
    out = []
    with torch.no_grad():
        for x in loader:
            with torch.autocast(device_type, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
                f = detector(x.to(device)).float()
            f = f[:, 0] if f.ndim == 3 else f
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu())
    return torch.cat(out).numpy()


def reference_search(queries, references, k: int, *, device: str = "cpu"):
    """Top-k by a full (Q, N) similarity matrix and a full argsort per row."""
    import torch

    q, r = torch.from_numpy(queries).to(device), torch.from_numpy(references).to(device)
    sims = q @ r.T
    order = torch.argsort(sims, dim=1, descending=True)[:, :k]
    return sims.gather(1, order).cpu().numpy(), order.cpu().numpy()


# ----------------------------------------------------------------------------------------------- measurements
def _model_input(detector, settings: ThroughputSettings, batch_size: int):
    import torch

    from .preprocess import Preprocess

    size = detector.spec.input_size
    gen = torch.Generator().manual_seed(settings.seed)
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=gen)
    x = Preprocess(detector.spec).normalize(x.to(settings.device))
    if _channels_last(detector, settings):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _channels_last(detector, settings: ThroughputSettings) -> bool:
    """Effective memory format: the Extractor always uses channels-last on CUDA for non-pixel detectors."""
    if detector.spec.family == "pixel":
        return False
    return settings.channels_last or str(settings.device).startswith("cuda")


def time_model(detector, settings: ThroughputSettings, batch_size: int) -> Timing:
    """Model-only: forward (autocast) + L2 norm of a preprocessed batch already on the device."""
    import torch

    from .extract import DTYPES

    x = _model_input(detector, settings, batch_size)
    device_type = torch.device(settings.device).type

    @torch.inference_mode()
    def step():
        with torch.autocast(device_type, dtype=DTYPES[settings.dtype], enabled=settings.dtype != "fp32"):
            out = detector(x).float()
        return torch.nn.functional.normalize(out[:, 0] if out.ndim == 3 else out, dim=-1)

    return measure(
        step,
        batch_size,
        device=settings.device,
        warmup=2,
        repeats=max(5, settings.repeats),
        min_time=settings.min_time,
    )


def _timed_pass(fn, n: int, settings: ThroughputSettings):
    """Time full passes over the images; returns (Timing, output of the last pass)."""
    last = {}

    def run():
        last["out"] = fn()

    timing = measure(run, n, device=settings.device, warmup=1, repeats=settings.repeats)
    return timing, last["out"]


def time_e2e(extractor, paths: list[str], settings: ThroughputSettings) -> dict:
    """End-to-end rates: the Extractor path always, plus device decode when asked; descriptors of the last pass."""
    import numpy as np

    out: dict = {}
    timing, desc = _timed_pass(lambda: extractor.run(paths, label="throughput"), len(paths), settings)
    out["e2e_workers_ips"], out["e2e_workers_ips_iqr"] = timing.rate()
    out["queries"] = np.asarray(desc.vectors, dtype=np.float32)
    out["e2e_decode"] = settings.resolved_decode
    if settings.resolved_decode == "device":
        try:
            timing, vecs = _timed_pass(
                lambda: device_decode_extract(extractor, paths, min(settings.workers, 8)),
                len(paths),
                settings,
            )
            out["e2e_device_ips"], out["e2e_device_ips_iqr"] = timing.rate()
            out["queries"] = vecs
        except Exception as exc:  # noqa: BLE001 - a decoder that cannot run here must not lose the other numbers
            log.warning("device decode failed, reporting the workers path: %s", exc)
            out["e2e_decode"], out["e2e_device_error"] = "workers", f"{type(exc).__name__}: {exc}"
    key = "e2e_device" if out["e2e_decode"] == "device" else "e2e_workers"
    out["e2e_ips"], out["e2e_ips_iqr"] = out[f"{key}_ips"], out[f"{key}_ips_iqr"]
    return out


def time_retrieval(queries, references, settings: ThroughputSettings, *, reference: bool = False) -> Timing:
    """Queries per second of exact top-k search (harness faiss/torch blocks, or the full-matrix reference)."""
    from .retrieval import search

    fn = reference_search if reference else search

    def run():
        return fn(queries, references, settings.topk, device=settings.device)

    return measure(run, len(queries), device=settings.device, warmup=1, repeats=settings.repeats)


def _time_reference(
    detector, paths: list[str], references, settings: ThroughputSettings, batch_size: int
) -> dict:
    import numpy as np

    def extract():
        return reference_extract(
            detector,
            paths,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=batch_size,
            num_workers=settings.workers,
        )

    timing, vecs = _timed_pass(extract, len(paths), settings)
    out: dict = {}
    out["reference_e2e_ips"], out["reference_e2e_ips_iqr"] = timing.rate()
    out["reference_retrieval_qps"], out["reference_retrieval_qps_iqr"] = time_retrieval(
        vecs, references, settings, reference=True
    ).rate()
    out["reference_vectors"] = np.asarray(vecs, dtype=np.float32)
    return out


def _ratios(m: dict) -> dict:
    def div(a: str, b: str) -> float | None:
        return m[a] / m[b] if m.get(a) and m.get(b) else None

    return {
        "e2e_over_model": div("e2e_ips", "model_ips"),
        "e2e_speedup_vs_reference": div("e2e_ips", "reference_e2e_ips"),
        "retrieval_speedup_vs_reference": div("retrieval_qps", "reference_retrieval_qps"),
    }


def measure_detector(
    detector, paths: list[str], references, settings: ThroughputSettings, batch_size: int
) -> dict:
    """One measurement (model-only, e2e, retrieval, optional reference) of a built detector at one batch size."""
    from .extract import Extractor

    extractor = Extractor(
        detector,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=batch_size,
        num_workers=settings.workers,
        cache_dir=None,
        progress=False,
    )
    m: dict = {"dtype": settings.dtype, "batch_size": batch_size, "peak_device_mb": {}}
    _reset_device_peak(settings.device)
    m["model_ips"], m["model_ips_iqr"] = time_model(detector, settings, batch_size).rate()
    m["peak_device_mb"]["model"] = _device_peak_mb(settings.device)
    _reset_device_peak(settings.device)
    m.update(time_e2e(extractor, paths, settings))
    m["peak_device_mb"]["e2e"] = _device_peak_mb(settings.device)
    queries = m.pop("queries")
    _reset_device_peak(settings.device)
    m["retrieval_qps"], m["retrieval_qps_iqr"] = time_retrieval(queries, references, settings).rate()
    m["peak_device_mb"]["retrieval"] = _device_peak_mb(settings.device)
    if settings.reference:
        m.update(_time_reference(detector, paths, references, settings, batch_size))
        ref = m.pop("reference_vectors")
        # both pipelines compute the same thing: mean cosine of each image's two descriptors
        m["reference_agreement"] = float((ref * queries).sum(axis=1).mean())
    m.update(_ratios(m))
    m["peak_host_mb"] = _peak_host_mb()
    return m


# ----------------------------------------------------------------------------------------------- results
def throughput_path(
    results: str | Path,
    detector: str,
    device_name: str,
    dtype: str,
    batch_size: int,
    *,
    channels_last: bool = False,
    compile: bool = False,
) -> Path:
    """results/<device name>/<detector>__<dtype>__b<batch>[__cl][__compile].json"""
    from .results import safe_name

    suffix = "__cl" * channels_last + "__compile" * compile
    return (
        Path(results) / safe_name(device_name) / f"{safe_name(detector)}__{dtype}__b{batch_size}{suffix}.json"
    )


def _environment(settings: ThroughputSettings) -> dict:
    import torch

    from .env import environment

    env = environment(settings.device, settings.dtype)
    env.update(
        {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        }
    )
    return env


def _settings_record(settings: ThroughputSettings, detector, images, n_images: int, batch_size: int) -> dict:
    record = asdict(settings)
    record.pop("batch_sizes")
    record.update(
        {
            "batch_size": batch_size,
            "num_workers": settings.workers,
            "decode": settings.resolved_decode,
            "channels_last_effective": _channels_last(detector, settings),
            "n_images": n_images,
            "images": str(images) if images is not None else "synthetic JPEGs",
        }
    )
    if images is not None:
        record.pop("image_size")
    return record


def _result(detector, measurement: dict, settings: ThroughputSettings, env: dict, record: dict):
    from .results import Result, weights_record

    return Result(
        kind="throughput",
        key={
            "detector": detector.spec.name,
            "device_name": env["device_name"],
            "dtype": settings.dtype,
            "batch_size": measurement["batch_size"],
            "channels_last": settings.channels_last,
            "compile": settings.compile,
        },
        detector={
            "name": detector.spec.name,
            "spec": detector.spec.to_dict(),
            "weights": weights_record(detector.weights),
        },
        environment=env,
        settings=record,
        measurements=[measurement],
        note=CAVEAT,
    )


def _prepare_detector(name: str, settings: ThroughputSettings, allow_random: bool):
    import torch

    from .detectors import create_detector

    detector = create_detector(name, allow_random=allow_random, device=settings.device)
    if _channels_last(detector, settings):
        detector.to(memory_format=torch.channels_last)
    if settings.compile:
        detector.model = torch.compile(detector.model)
    return detector


def throughput(
    detectors: list[str],
    *,
    settings: ThroughputSettings = ThroughputSettings(),
    images: str | Path | None = None,
    results: str | Path = "runs/throughput",
    allow_random: bool = True,
) -> list:
    """Measure each detector at each batch size; write and return one Result per (detector, batch size)."""
    from .results import write_result

    check_device(settings.device)
    env = _environment(settings)
    out, references = [], {}
    with _image_paths(images, settings) as paths:
        for name in detectors:
            detector = _prepare_detector(name, settings, allow_random)
            for batch_size in settings.batch_sizes:
                log.info("throughput %s batch %d on %s", name, batch_size, env["device_name"])
                dims = detector.spec.dims
                if dims not in references:
                    references[dims] = synthetic_references(settings.n_references, dims, settings.seed)
                m = measure_detector(detector, paths, references[dims], settings, batch_size)
                record = _settings_record(settings, detector, images, len(paths), batch_size)
                result = _result(detector, m, settings, env, record)
                path = throughput_path(
                    results,
                    name,
                    env["device_name"],
                    settings.dtype,
                    batch_size,
                    channels_last=settings.channels_last,
                    compile=settings.compile,
                )
                out.append(write_result(path, result))
            del detector
    return out


# ----------------------------------------------------------------------------------------------- CLI
def _fmt(value, iqr=None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.1f}"
    return text + (f" ({iqr[0]:,.0f}-{iqr[1]:,.0f})" if iqr else "")


def _ratio(m: dict, key: str) -> str:
    return "-" if m.get(key) is None else f"{m[key]:.2f}"


def _print_results(results: list) -> None:
    from rich.console import Console
    from rich.table import Table

    devices = sorted({r.environment["device_name"] for r in results})
    table = Table(title="throughput: median (IQR)", caption=f"{CAVEAT}: {'; '.join(devices)}")
    for col in (
        "detector",
        "weights",
        "dtype",
        "batch",
        "model img/s",
        "e2e img/s",
        "decode",
        "e2e/model",
        "retrieval q/s",
        "ref e2e img/s",
        "e2e x ref",
        "retrieval x ref",
    ):
        table.add_column(col)
    for r in results:
        m = r.measurements[0]
        table.add_row(
            r.detector_name + (" (random weights)" if r.is_random else ""),
            r.weights_status,
            m["dtype"],
            str(m["batch_size"]),
            _fmt(m["model_ips"], m["model_ips_iqr"]),
            _fmt(m["e2e_ips"], m["e2e_ips_iqr"]),
            m["e2e_decode"],
            _ratio(m, "e2e_over_model"),
            _fmt(m["retrieval_qps"]),
            _fmt(m.get("reference_e2e_ips")),
            _ratio(m, "e2e_speedup_vs_reference"),
            _ratio(m, "retrieval_speedup_vs_reference"),
            style="red" if r.is_random else None,
        )
    console = Console()
    if not console.is_terminal:  # logs and captured output: keep the whole table readable
        console.width = 200
    console.print(table)
    err = Console(stderr=True)
    for r in results:
        err.print(f"wrote {r.source}", highlight=False)


def cmd_throughput(args) -> int:
    """``copybench throughput``: a thin wrapper over :func:`throughput`."""
    from .cli import _expand_detectors

    settings = ThroughputSettings(
        device=args.device,
        dtype=args.dtype,
        batch_sizes=tuple(args.batch_size),
        channels_last=args.channels_last,
        compile=args.compile,
        n_images=args.n_images,
        n_references=args.n_references,
        topk=args.topk,
        num_workers=args.workers,
        decode=args.decode,
        reference=args.reference,
        repeats=args.repeats,
        min_time=args.min_time,
        seed=args.seed,
    )
    results = throughput(
        _expand_detectors(args.detectors),
        settings=settings,
        images=args.images,
        results=args.results,
        allow_random=args.allow_random,
    )
    _print_results(results)
    return 0


def register_cli(subparsers) -> None:
    """Add the ``throughput`` subcommand."""
    d = ThroughputSettings()
    p = subparsers.add_parser(
        "throughput", help="images/s per detector (model-only, end-to-end) and retrieval queries/s"
    )
    p.add_argument("--detectors", required=True, help="comma list of names or patterns")
    p.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default=d.dtype, choices=("fp32", "bf16", "fp16"))
    p.add_argument(
        "--batch-size", type=int, nargs="+", default=list(d.batch_sizes), help="one or more batch sizes"
    )
    p.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format (always on for CUDA)"
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model (compile time is in the warm-up)"
    )
    p.add_argument("--images", default=None, help="image folder (default: temporary synthetic 512x384 JPEGs)")
    p.add_argument(
        "--n-images", type=int, default=d.n_images, help=f"images per end-to-end pass (default {d.n_images})"
    )
    p.add_argument("--results", default="runs/throughput", help="results folder (default: runs/throughput)")
    p.add_argument(
        "--allow-random",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random weights when none are found (default on: speed does not depend on weights)",
    )
    p.add_argument(
        "--reference", action="store_true", help="also time the straightforward reference pipeline"
    )
    p.add_argument("--n-references", type=int, default=d.n_references, help="synthetic reference set size")
    p.add_argument("--topk", type=int, default=d.topk)
    p.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default: all cores but one)"
    )
    p.add_argument("--decode", default=d.decode, choices=DECODES, help="e2e decode: auto = device on CUDA")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed passes after warm-up")
    p.add_argument(
        "--min-time", type=float, default=d.min_time, help="seconds of model-only timing, at least"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(func=cmd_throughput)
