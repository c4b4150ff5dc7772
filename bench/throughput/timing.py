"""Timing a busy machine cannot fool: passes interleaved in rounds, ratios per round, median and spread.

Every call is timed on its own (CUDA synchronised). We time calls ourselves rather than with
``torch.utils.benchmark.Timer.blocked_autorange``: one end-to-end pass lasts seconds, so autorange would take a
single block and report no spread. Two rates measured minutes apart on a shared machine can differ by more than
the effect measured; two rates from the same round cannot drift apart, so their ratio is the robust figure.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call, each processing ``items`` items."""

    seconds: tuple[float, ...]
    items: int

    def rates(self) -> list[float]:
        return [self.items / s for s in self.seconds]

    def rate(self) -> tuple[float, list[float]]:
        """(median items/s, [25th, 75th percentile items/s])."""
        import numpy as np

        q1, med, q3 = np.percentile(np.asarray(self.seconds), [25, 50, 75])
        return float(self.items / med), [float(self.items / q3), float(self.items / q1)]


def sync(device: str) -> None:
    """Wait for queued device work, so a timer measures it."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))


def measure(
    fn, items: int, *, device: str = "cpu", warmup: int = 1, repeats: int = 3, min_time: float = 0.0
) -> Timing:
    """Call ``fn`` ``warmup`` times, then time calls until ``repeats`` calls and ``min_time`` seconds are done."""
    return interleaved({"fn": (fn, items)}, device=device, warmup=warmup, rounds=repeats, min_time=min_time)[
        "fn"
    ]


def interleaved(
    passes: dict[str, tuple[Callable[[], object], int]],
    *,
    device: str = "cpu",
    warmup: int = 1,
    rounds: int = 3,
    min_time: float = 0.0,
) -> dict[str, Timing]:
    """Time each pass once per round, in order (A, B, C, A, B, C, ...), until ``rounds`` rounds and ``min_time``
    seconds are done; ``warmup`` untimed rounds first. Returns one Timing per pass, aligned by round."""
    for _ in range(warmup):
        for fn, _ in passes.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in passes}
    done, spent = 0, 0.0
    while done < rounds or spent < min_time:
        for name, (fn, _) in passes.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
        spent += sum(t[-1] for t in times.values())
        done += 1
    return {name: Timing(tuple(times[name]), passes[name][1]) for name in passes}


def paired_ratio(a: Timing, b: Timing) -> dict:
    """Rate of ``a`` over rate of ``b`` in each round: median, [min, max] and every round's value."""
    import numpy as np

    ratios = [ra / rb for ra, rb in zip(a.rates(), b.rates())]
    return {"median": float(np.median(ratios)), "range": [min(ratios), max(ratios)], "rounds": ratios}


def peak_host_mb() -> dict:
    """Peak resident memory so far (Linux reports KiB): this process, and its largest finished child (workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process": own, "largest_worker": children}


def reset_device_peak(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(device))


def device_peak_mb(device: str) -> float | None:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return None
