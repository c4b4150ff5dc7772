"""Scale: memory and time of exact top-k search and of embedding many images, each in a fresh process.

Peak resident memory (``ru_maxrss``) only grows, so every measurement runs in a new (spawned) process and
reports its peak against the peak just before the measured step: inputs and the model are the baseline, the
difference is what the step itself needed. Results are written as kind ``scale`` result files.

- :func:`search_memory`: exact top-k (:func:`copybench.retrieval.search`) of ``n_queries`` against
  ``n_references`` seeded unit vectors; the target is memory O(queries x k), compared with the full similarity
  matrix a naive search would hold. On CUDA the device peak is recorded too.
- :func:`extraction_memory`: :meth:`copybench.extract.Extractor.run` (descriptor cache on, as ``run`` does) over
  ``n_images`` small synthetic JPEGs with a pixel detector; compared across sizes it shows whether memory stays
  flat in the dataset size.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from .images import synthetic_references, write_synthetic_jpegs


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def in_fresh_process(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a new spawned interpreter, so its peak memory is its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def _search_child(n_references: int, n_queries: int, dims: int, k: int, device: str, seed: int) -> dict:
    import torch

    from ..retrieval import search
    from .timing import device_peak_mb, reset_device_peak, sync

    refs = synthetic_references(n_references, dims, seed)
    queries = synthetic_references(n_queries, dims, seed + 1)
    if device.startswith("cuda"):  # the CUDA context is not the search's memory: create it first
        torch.zeros(1, device=device)
    reset_device_peak(device)
    before = _peak_mb()
    start = time.perf_counter()
    _, idx = search(queries, refs, k, device=device)
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "qps": n_queries / seconds,
        "baseline_mb": before,
        "peak_mb": _peak_mb(),
        "search_mb": _peak_mb() - before,
        "device_peak_mb": device_peak_mb(device),
        "result_shape": list(idx.shape),
        "first_neighbour_valid": bool((idx[:, 0] >= 0).all()),
    }


def search_memory(
    n_references: int, n_queries: int, *, dims: int = 512, k: int = 10, device: str = "cpu", seed: int = 0
) -> dict:
    """Time and peak memory of one exact top-k search, measured in a fresh process."""
    m = in_fresh_process(_search_child, n_references, n_queries, dims, k, device, seed)
    m.update(
        {
            "n_references": n_references,
            "n_queries": n_queries,
            "dims": dims,
            "k": k,
            "inputs_mb": (n_references + n_queries) * dims * 4 / 2**20,
            "full_matrix_mb": n_references * n_queries * 4 / 2**20,  # what a naive search would hold
            "topk_output_mb": n_queries * k * 12 / 2**20,  # float32 scores + int64 indices
        }
    )
    m["search_over_full_matrix"] = m["search_mb"] / m["full_matrix_mb"]
    return m


def _extract_child(paths: list[str], detector: str, batch_size: int, workers: int, cache: str) -> dict:
    from ..detectors import create_detector
    from ..extract import Extractor

    det = create_detector(detector)
    ext = Extractor(det, batch_size=batch_size, num_workers=workers, cache_dir=cache, progress=False)
    before = _peak_mb()
    start = time.perf_counter()
    out = ext.run(paths, label="scale")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "ips": len(paths) / seconds,
        "model_baseline_mb": before,
        "peak_mb": _peak_mb(),
        "above_model_mb": _peak_mb() - before,
        "largest_worker_mb": _children_peak_mb(),
        "failed": len(out.failed),
        "descriptor_array_mb": out.vectors.nbytes / 2**20,
    }


def extraction_memory(
    n_images: int,
    *,
    detector: str = "pixel_gray_16",
    size: tuple[int, int] = (64, 48),
    batch_size: int = 256,
    workers: int = 1,
    seed: int = 0,
) -> dict:
    """Time and peak memory of embedding ``n_images`` synthetic JPEGs (descriptor cache on), in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="copybench-scale-") as tmp:
        start = time.perf_counter()
        paths = write_synthetic_jpegs(Path(tmp) / "images", n_images, size=size, seed=seed)
        write_s = time.perf_counter() - start
        m = in_fresh_process(_extract_child, paths, detector, batch_size, workers, str(Path(tmp) / "cache"))
    m.update(
        {
            "n_images": n_images,
            "image_size": list(size),
            "detector": detector,
            "batch_size": batch_size,
            "workers": workers,
            "write_images_s": write_s,
        }
    )
    return m


def scale_result(
    name: str, measurements: list[dict], *, device: str = "cpu", note: str = "", detector: str | None = None
):
    """A ``scale`` result record for ``measurements`` of one kind (``exact_topk``, ``extraction``, ...);
    ``detector``: the name to file it under when the measurements span several detectors."""
    from ..results import Result
    from .records import environment_record
    from .settings import ThroughputSettings

    env = environment_record(ThroughputSettings(device=device))
    return Result(
        kind="scale",
        key={"measurement": name, "device_name": env["device_name"]},
        detector={
            "name": detector or measurements[0].get("detector", "none"),
            "weights": {"status": "see measurements" if detector else "none"},
        },
        environment=env,
        settings={"device": device},
        measurements=measurements,
        note=note or None,
    )


def write_scale_result(results: str | Path, name: str, measurements: list[dict], **kwargs) -> Path:
    """Write the result to ``results/<device name>/scale__<name>.json``; returns the path."""
    from ..results import safe_name, write_result

    result = scale_result(name, measurements, **kwargs)
    path = Path(results) / safe_name(result.key["device_name"]) / f"scale__{name}.json"
    write_result(path, result)
    return path
