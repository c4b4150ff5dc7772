"""Ceiling of GPU JPEG decoding: nvjpeg batched decode of in-memory JPEG bytes, no model, no file reads.

Tells whether the end-to-end rate is bound by decoding. Usage: python tests/benchmarks/gpu_decode_probe.py DIR
(DIR holds JPEGs, e.g. written by copybench.throughput.write_synthetic_jpegs).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg


def main(folder: str, batch: int = 256) -> None:
    datas = [
        torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
        for p in sorted(Path(folder).glob("*.jpg"))
    ]
    for _ in range(2):  # warm-up
        decode_jpeg(datas[:batch], mode=ImageReadMode.RGB, device="cuda")
    torch.cuda.synchronize()
    for b in (batch, 64):
        t = time.perf_counter()
        for i in range(0, len(datas), b):
            decode_jpeg(datas[i : i + b], mode=ImageReadMode.RGB, device="cuda")
        torch.cuda.synchronize()
        print(
            f"nvjpeg batched decode, batch {b}: {len(datas) / (time.perf_counter() - t):,.0f} img/s "
            f"over {len(datas)} images"
        )


if __name__ == "__main__":
    main(sys.argv[1])
