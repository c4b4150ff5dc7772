"""The measurements: model-only, end-to-end (the Extractor, as ``run``), reference and retrieval, interleaved."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from ..env import check_device
from .images import image_paths, synthetic_references
from .records import environment_record, settings_record, throughput_path, throughput_result
from .reference import reference_extract, reference_search
from .settings import ThroughputSettings
from .timing import device_peak_mb, interleaved, paired_ratio, peak_host_mb, reset_device_peak

log = logging.getLogger(__name__)


def channels_last(detector, settings: ThroughputSettings) -> bool:
    """Effective memory format: the Extractor always uses channels-last on CUDA for non-pixel detectors."""
    if detector.spec.family == "pixel":
        return False
    return settings.channels_last or settings.cuda


def model_input(detector, settings: ThroughputSettings, batch_size: int):
    """A seeded preprocessed float batch on the device, in the memory format the Extractor uses."""
    import torch

    from ..preprocess import Preprocess

    size = detector.spec.input_size
    gen = torch.Generator().manual_seed(settings.seed)
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=gen)
    x = Preprocess(detector.spec).normalize(x.to(settings.device))
    if channels_last(detector, settings):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def model_pass(detector, settings: ThroughputSettings, batch_size: int, steps: int):
    """A callable running ``steps`` forward (autocast) + L2 norm calls on a batch already on the device."""
    import torch

    from ..extract import DTYPES

    x = model_input(detector, settings, batch_size)
    device_type = torch.device(settings.device).type

    @torch.inference_mode()
    def run():
        for _ in range(steps):
            with torch.autocast(device_type, dtype=DTYPES[settings.dtype], enabled=settings.dtype != "fp32"):
                out = detector(x).float()
            torch.nn.functional.normalize(out[:, 0] if out.ndim == 3 else out, dim=-1)

    return run


class _Peaks:
    """Wraps passes to keep each one's peak device memory (reset before every call)."""

    def __init__(self, device: str) -> None:
        self.device, self.mb = device, {}

    def wrap(self, name: str, fn):
        def run():
            reset_device_peak(self.device)
            out = fn()
            peak = device_peak_mb(self.device)
            if peak is not None:
                self.mb[name] = max(self.mb.get(name, 0.0), peak)
            return out

        return run


def _rate_fields(m: dict, name: str, timing) -> None:
    m[f"{name}"], m[f"{name}_iqr"] = timing.rate()


def _ratio_fields(m: dict, name: str, a, b) -> None:
    r = paired_ratio(a, b)
    m[name], m[f"{name}_range"], m[f"{name}_rounds"] = r["median"], r["range"], r["rounds"]


def _extraction_passes(detector, extractor, paths, settings, batch_size, peaks, last) -> dict:
    steps = math.ceil(len(paths) / batch_size)
    passes = {
        "model": (peaks.wrap("model", model_pass(detector, settings, batch_size, steps)), steps * batch_size),
        "e2e": (
            peaks.wrap("e2e", lambda: last.update(e2e=extractor.run(paths, label="throughput"))),
            len(paths),
        ),
    }
    if settings.reference:

        def reference():
            last["reference"] = reference_extract(
                detector,
                paths,
                device=settings.device,
                dtype=settings.dtype,
                batch_size=batch_size,
                num_workers=settings.workers,
            )

        passes["reference"] = (peaks.wrap("reference", reference), len(paths))
    return passes


def time_extraction(detector, extractor, paths, settings: ThroughputSettings, batch_size: int) -> dict:
    """Model-only, end-to-end and (optionally) reference passes, interleaved; rates, per-round ratios, outputs."""
    import numpy as np

    peaks, last, m = _Peaks(settings.device), {}, {}
    passes = _extraction_passes(detector, extractor, paths, settings, batch_size, peaks, last)
    t = interleaved(passes, device=settings.device, rounds=settings.repeats, min_time=settings.min_time)
    # images that never decoded are not images per second: count only those that gave a descriptor
    decoded = len(paths) - len(last["e2e"].failed)
    if decoded == 0:
        raise ValueError(
            f"none of the {len(paths)} images decoded: nothing to time (see the skipped warnings)"
        )
    t["e2e"] = dataclasses.replace(t["e2e"], items=decoded)
    _rate_fields(m, "model_ips", t["model"])
    _rate_fields(m, "e2e_ips", t["e2e"])
    _ratio_fields(m, "e2e_over_model", t["e2e"], t["model"])
    m["rounds"] = len(t["e2e"].seconds)
    m["queries"] = np.asarray(last["e2e"].vectors, dtype=np.float32)
    m["skipped"] = len(last["e2e"].failed)
    if settings.reference:
        _rate_fields(m, "reference_e2e_ips", t["reference"])
        _ratio_fields(m, "e2e_speedup_vs_reference", t["e2e"], t["reference"])
        ref = np.asarray(last["reference"], dtype=np.float32)
        # both pipelines compute the same thing: mean cosine of each image's two descriptors
        m["reference_agreement"] = float((ref * m["queries"]).sum(axis=1).mean())
    m["peak_device_mb"] = dict(peaks.mb) or None
    return m


def time_retrieval(queries, references, settings: ThroughputSettings) -> dict:
    """Queries/s of the harness's exact top-k search, interleaved with the full-matrix reference when asked."""
    from ..retrieval import search

    def harness():
        search(queries, references, settings.topk, device=settings.device)

    def reference():
        reference_search(queries, references, settings.topk, device=settings.device)

    passes = {"retrieval": (harness, len(queries))}
    if settings.reference:
        passes["reference"] = (reference, len(queries))
    t = interleaved(passes, device=settings.device, rounds=settings.repeats)
    m: dict = {}
    _rate_fields(m, "retrieval_qps", t["retrieval"])
    if settings.reference:
        _rate_fields(m, "reference_retrieval_qps", t["reference"])
        _ratio_fields(m, "retrieval_speedup_vs_reference", t["retrieval"], t["reference"])
    return m


def measure_detector(
    detector, paths: list[str], references, settings: ThroughputSettings, batch_size: int
) -> dict:
    """One measurement (model-only, e2e, optional reference, retrieval) of a built detector at one batch size."""
    from ..extract import Extractor

    extractor = Extractor(
        detector,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=batch_size,
        num_workers=settings.workers,
        cache_dir=None,
        progress=False,
        decode=settings.decode,
        decode_ahead=settings.decode_ahead,
    )
    m: dict = {"dtype": settings.dtype, "batch_size": batch_size, "e2e_decode": extractor.decode}
    m.update(time_extraction(detector, extractor, paths, settings, batch_size))
    if settings.stages:
        from .stages import time_stages

        steps = math.ceil(len(paths) / batch_size)
        model = model_pass(detector, settings, batch_size, steps)
        m["stages"] = time_stages(extractor, paths, settings, model, steps * batch_size)
    m.update(time_retrieval(m.pop("queries"), references, settings))
    m["peak_host_mb"] = peak_host_mb()
    return m


def prepare_detector(name: str, settings: ThroughputSettings, allow_random: bool):
    """Build a detector on the device in the memory format (and compiled form) the settings ask for."""
    import torch

    from ..detectors import create_detector
    from ..extract import check_dtype_applies

    detector = create_detector(name, allow_random=allow_random, device=settings.device)
    check_dtype_applies(detector, settings.dtype)  # model-only would time fp32 under a bf16/fp16 label
    if channels_last(detector, settings):
        detector.to(memory_format=torch.channels_last)
    if settings.compile:
        detector.model = torch.compile(detector.model)
    return detector


def check_dtypes(detectors: list[str], settings: ThroughputSettings, allow_random: bool) -> None:
    """ValueError naming the first detector that cannot run ``settings.dtype`` (an ONNX graph fixes its own
    precision), raised before anything is timed or written: each detector is built once more to ask it."""
    if settings.dtype == "fp32":
        return
    for name in detectors:
        prepare_detector(name, settings, allow_random)


def throughput(
    detectors: list[str],
    *,
    settings: ThroughputSettings | None = None,
    images: str | Path | None = None,
    results: str | Path = "runs/throughput",
    allow_random: bool = True,
) -> list:
    """Measure each detector at each batch size; write and return one Result per (detector, batch size)."""
    from ..results import write_result

    settings = settings or ThroughputSettings()
    check_device(settings.device)
    check_dtypes(detectors, settings, allow_random)
    env = environment_record(settings)
    out, references = [], {}
    with image_paths(images, settings) as paths:
        for name in detectors:
            detector = prepare_detector(name, settings, allow_random)
            for batch_size in settings.batch_sizes:
                log.info("throughput %s batch %d on %s", name, batch_size, env["device_name"])
                dims = detector.spec.dims
                if dims not in references:
                    references[dims] = synthetic_references(settings.n_references, dims, settings.seed)
                m = measure_detector(detector, paths, references[dims], settings, batch_size)
                record = settings_record(settings, m, images, len(paths), channels_last(detector, settings))
                result = throughput_result(detector, m, settings, env, record)
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
