"""Decoder accuracy on real photos: the GPU JPEG decoders against Pillow, in pixels, descriptors and micro-AP.

    python tests/benchmarks/gpu_decoder_accuracy.py PHOTOS OUT.json [--device cuda] [--work DIR] [--queries N]

PHOTOS: real photographs (gpu_wheels.sh puts Debian wallpapers in WHEELS/photos). For each decoder that runs on
the device (``device`` = nvjpeg, ``nvimgcodec``, ``nvimgcodec-hw``; on a CPU only ``device``, torchvision's
libjpeg), against Pillow's full decode (``workers`` without draft):

- pixels: largest and mean absolute difference of the decoded images (device-decodable photos);
- descriptors: cosine of each photo's descriptor to Pillow's, for efficientnet_lite0 (real weights when installed,
  else random: the file says which), worst photo named;
- micro-AP: a ``mixed`` copy dataset built from the photos (``data build --sources PHOTOS``), run with each decoder.

tests/test_decode.py's GPU_DECODER_MIN_COSINE is to be set from ``descriptor_cosine_min`` here. Exit 0 when every
measurement ran, 1 when one failed (the others are still written).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DETECTOR = "efficientnet_lite0"


def _decoders(device: str) -> dict[str, str | None]:
    """decoder -> None when it runs on ``device``, else why not."""
    import torch

    from copybench.decode import resolve_decode

    out = {}
    for name in ("device", "nvimgcodec", "nvimgcodec-hw") if device != "cpu" else ("device",):
        try:
            resolve_decode(name, torch.device(device))
            out[name] = None
        except ValueError as exc:
            out[name] = str(exc)
    return out


def pixel_gap(photos: list[str], decoder: str, device: str) -> dict:
    """Largest and mean |device - Pillow| over the photos the router sends to the device decoder."""
    import torch

    from copybench.decode import DeviceDecode
    from copybench.detectors import create_detector
    from copybench.feed import device_decodable, read_file
    from copybench.preprocess import Preprocess, pil_to_tensor, read_image

    dec = DeviceDecode(Preprocess(create_detector("pixel_gray_16").spec), batch_size=1, num_workers=1,
                       device=device, backend=decoder)  # fmt: skip
    worst, total, n, name = 0, 0.0, 0, None
    for path in photos:
        data = read_file(path)[0]
        if data is None or not device_decodable(data):
            continue
        got = dec._decode_jpegs([data])[0].cpu().int()
        want = pil_to_tensor(read_image(path)).int()
        diff = (got - want).abs()
        total, n = total + float(diff.float().mean()), n + 1
        if int(diff.max()) > worst:
            worst, name = int(diff.max()), Path(path).name
    torch.cuda.empty_cache() if device.startswith("cuda") else None
    return {
        "photos": n,
        "pixel_max_abs": worst,
        "pixel_mean_abs": total / max(n, 1),
        "pixel_worst_photo": name,
    }


def descriptor_gap(photos: list[str], decoder: str, device: str) -> dict:
    """Cosine of each photo's descriptor with ``decoder`` to Pillow's full decode: min, median, mean, worst."""
    import numpy as np

    from copybench.detectors import create_detector
    from copybench.extract import Extractor

    det = create_detector(DETECTOR, allow_random=True, device=device)
    run = {"batch_size": 8, "num_workers": 2, "progress": False, "device": device}
    ref = Extractor(det, decode="workers", draft=False, **run).run(photos)
    got = Extractor(det, decode=decoder, **run).run(photos)
    ok = np.asarray(ref.ok) & np.asarray(got.ok)
    cos = (np.asarray(ref.vectors)[ok] * np.asarray(got.vectors)[ok]).sum(1)
    names = [Path(p).name for p, k in zip(photos, ok) if k]
    return {
        "detector": DETECTOR,
        "weights": det.weights.status,
        "photos": int(ok.sum()),
        "descriptor_cosine_min": float(cos.min()),
        "descriptor_cosine_median": float(np.median(cos)),
        "descriptor_cosine_mean": float(cos.mean()),
        "descriptor_worst_photo": names[int(cos.argmin())],
    }


def micro_ap(photos_dir: str, decoders: list[str], device: str, work: Path, queries: int) -> dict:
    """micro-AP of DETECTOR on a ``mixed`` copy dataset of the photos, with Pillow and with each decoder."""
    from copybench.results import read_results

    cli = [sys.executable, "-m", "copybench.cli"]
    ds = work / "dataset"
    subprocess.run([*cli, "data", "build", "mixed-s", "--sources", photos_dir, "--out", str(ds), "-q",
                    "--n-queries", str(queries), "--device", device], check=True)  # fmt: skip
    out = {}
    for decoder in ["workers", *decoders]:
        res = work / f"results-{decoder}"
        subprocess.run([*cli, "run", "--dataset", str(ds), "--detectors", DETECTOR, "--device", device,
                        "--decode", decoder, "--results", str(res), "--allow-random", "-q",
                        "--descriptor-dir", str(work / "cache")], check=True)  # fmt: skip
        (r,), _ = read_results(res)
        out[decoder] = r.metrics["micro_ap"]
    return {"dataset": f"mixed-s, {queries} queries from {photos_dir}", "micro_ap": out}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("photos")
    p.add_argument("out")
    p.add_argument("--device", default="cuda")
    p.add_argument("--work", default=None)
    p.add_argument("--queries", type=int, default=150)
    args = p.parse_args()
    from copybench.throughput import list_images

    photos = [x for x in list_images(args.photos) if x.lower().endswith((".jpg", ".jpeg"))]
    report: dict = {"photos": len(photos), "device": args.device, "decoders": {}}
    failed = False
    decoders = _decoders(args.device)
    for name, why in decoders.items():
        entry = report["decoders"].setdefault(name, {"unavailable": why} if why else {})
        for step in (pixel_gap, descriptor_gap) if not why else ():
            t = time.perf_counter()
            try:
                entry.update(step(photos, name, args.device))
            except Exception as exc:  # noqa: BLE001 - one decoder's failure must not lose the others'
                entry[f"{step.__name__}_error"], failed = f"{type(exc).__name__}: {exc}", True
            print(f"{name} {step.__name__}: {time.perf_counter() - t:.1f} s {entry}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            usable = [n for n, why in decoders.items() if not why]
            report["micro_ap"] = micro_ap(
                args.photos, usable, args.device, Path(args.work or tmp), args.queries
            )
        except Exception as exc:  # noqa: BLE001
            report["micro_ap_error"], failed = f"{type(exc).__name__}: {exc}", True
    Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True))
    print(json.dumps(report, indent=2, sort_keys=True))
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
