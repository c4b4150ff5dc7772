"""``--stages``: each stage of the end-to-end pipeline timed alone, to show which one bounds it.

Stages, in pipeline order; each runs on the previous stage's output prepared in memory beforehand, on the device and
with the threads the Extractor uses, over the same images as the end-to-end pass:

- ``read``: file bytes read by the feeder's thread pool (:func:`copybench.feed.read_file`).
- ``route``: the JPEG marker walk that sends a file to the device decoder or to Pillow
  (:func:`copybench.feed.device_decodable`), one thread (it holds the GIL).
- ``handoff``: buffers viewed as tensors and handed, batch by batch, to the decoding thread.
- ``feed``: the three above as the pipeline overlaps them (:meth:`copybench.decode.DeviceDecode.pipeline`,
  decoding nothing).
- ``decode``: the Extractor's decoder on in-memory bytes: batched nvjpeg / nvImageCodec for the GPU strategies
  (device-decodable files only), Pillow in threads for ``workers`` (the CPU decode path, reduced-size where the
  Extractor drafts), torchvision's libjpeg for ``device`` on a CPU.
- ``resize``: the harness's resize of the decoded images, grouped by shape, on the device.
- ``model``: normalise + forward (autocast) + L2 norm of resized batches already on the device.
- ``copy_back``: the (B, D) float32 descriptors copied to the host.

The end-to-end rate beside them is the ``e2e`` pass of the same measurement. Rates are images per second (median
and interquartile range over interleaved rounds).
"""

from __future__ import annotations

import math

STAGES = ("read", "route", "handoff", "feed", "decode", "resize", "model", "copy_back")


def _batched(items: list, size: int) -> list[list]:
    return [items[s : s + size] for s in range(0, len(items), size)]


def _inputs(extractor, paths: list[str]) -> dict:
    """Each stage's input, computed once: bytes, decodable flags, decoded and resized images, descriptors."""
    from ..feed import device_decodable, read_file

    datas = [read_file(p) for p in paths]
    bad = [err for _, err in datas if err is not None]
    if bad:
        raise ValueError(f"--stages needs readable files: {bad[0]}")
    datas = [d for d, _ in datas]
    routes = [device_decodable(d) for d in datas]
    decoded = _decode_fn(extractor, paths, datas, routes)[0]()
    return {"datas": datas, "routes": routes, "decoded": decoded}


def _decode_fn(extractor, paths, datas, routes):
    """(a callable decoding every image the stage covers into [(row, uint8 (3, H, W))], that count)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..decode import DeviceDecode, decode_on_cpu

    if extractor.decode == "workers":
        pre, min_side = (
            extractor.preprocess,
            extractor.preprocess.min_decode_side if extractor.draft else None,
        )
        threads = max(1, extractor.num_workers)

        def pillow():
            def one(i):
                return i, decode_on_cpu(paths[i], pre, min_side, datas[i])[0]

            with ThreadPoolExecutor(
                threads
            ) as pool:  # the CPU path's decode includes its resize (in the workers)
                return [(i, img) for i, img in pool.map(one, range(len(paths))) if img is not None]

        return pillow, len(paths)
    dev = DeviceDecode(
        extractor.preprocess,
        batch_size=extractor.batch_size,
        num_workers=extractor.num_workers,
        device=extractor.device,
        backend=extractor.decode,
    )
    dev.paths = paths
    rows = [i for i, ok in enumerate(routes) if ok]

    def device():
        out = []
        for chunk in _batched(rows, extractor.batch_size):
            out += list(zip(chunk, dev._decode_jpegs([datas[i] for i in chunk])))
        return out

    return device, len(rows)


def stage_passes(extractor, paths: list[str], model_pass, n_model: int) -> dict:
    """{stage: (callable, images)} for :func:`copybench.throughput.timing.interleaved`."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from ..decode import DeviceDecode, _as_tensor, handoff, stack_groups
    from ..feed import device_decodable, read_file

    x = _inputs(extractor, paths)
    batch, threads = extractor.batch_size, max(2, extractor.num_workers)
    feeder = DeviceDecode(
        extractor.preprocess, batch_size=batch, num_workers=extractor.num_workers, device="cpu"
    )

    def read():
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(read_file, paths, chunksize=max(1, len(paths) // threads)))

    def hand_off():
        with ThreadPoolExecutor(1) as decoder:
            for chunk in _batched(x["datas"], batch):
                decoder.submit(lambda c: [_as_tensor(d) for d in c], chunk).result()

    def feed():
        for _ in feeder.pipeline(paths, list(range(len(paths))), handoff):
            pass

    decode, n_decode = _decode_fn(extractor, paths, x["datas"], x["routes"])
    groups = [stack_groups(c) for c in _batched(x["decoded"], batch)] if extractor.decode != "workers" else []

    def resize():
        with torch.inference_mode():
            for g in groups:
                for _, imgs in g:
                    extractor.preprocess.resize(imgs.to(extractor.device))

    out = torch.zeros((batch, extractor.detector.spec.dims), device=extractor.device)
    steps = math.ceil(len(paths) / batch)

    def copy_back():
        for _ in range(steps):
            (out + 0).cpu()  # a fresh device tensor each time: the copy is not of a cached host tensor

    passes = {
        "read": (read, len(paths)),
        "route": (lambda: [device_decodable(d) for d in x["datas"]], len(paths)),
        "handoff": (hand_off, len(paths)),
        "feed": (feed, len(paths)),
        "decode": (decode, n_decode),
        "resize": (resize, sum(len(r) for g in groups for r, _ in g)),
        "model": (model_pass, n_model),
        "copy_back": (copy_back, steps * batch),
    }
    return {name: p for name, p in passes.items() if p[1] > 0}


def time_stages(extractor, paths: list[str], settings, model_pass, n_model: int) -> dict:
    """{stage: {"ips", "ips_iqr", "items"}} over interleaved rounds; ``resize`` is part of ``decode`` on the
    CPU workers path (Pillow workers resize what they decode), so it has no row there."""
    from .timing import interleaved

    passes = stage_passes(extractor, paths, model_pass, n_model)
    t = interleaved(passes, device=settings.device, rounds=settings.repeats, min_time=settings.min_time)
    out = {}
    for name in STAGES:
        if name in t:
            ips, iqr = t[name].rate()
            out[name] = {"ips": ips, "ips_iqr": iqr, "items": t[name].items}
    return out
