"""What a throughput run measures: :class:`ThroughputSettings`, validated on construction."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..decode import DECODE_AHEAD, DECODES

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
    decode_ahead: int = DECODE_AHEAD  # batches the GPU decoders work ahead of the model, one side stream each
    stages: bool = False  # also time each pipeline stage alone (copybench.throughput.stages)
    reference: bool = False
    repeats: int = 3  # interleaved rounds after the warm-up round
    min_time: float = 1.0  # seconds of timed rounds, at least
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
            ("--decode-ahead", self.decode_ahead),
        ):
            if value < 1:
                raise ValueError(f"{flag} must be positive, got {value}")

    @property
    def workers(self) -> int:
        """DataLoader workers: the harness caps at 16; a throughput run may use every core but one."""
        return self.num_workers if self.num_workers is not None else max(1, (os.cpu_count() or 2) - 1)

    @property
    def cuda(self) -> bool:
        return str(self.device).startswith("cuda")
