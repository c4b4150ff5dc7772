"""The Ray engine's constants and the records it reports: worker statistics, extraction reports, batch events.

The lowest module of :mod:`copybench.scaling`: the engine, the extractor and the actors all read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from copybench.options import RAY_SHARD_ROWS

log = logging.getLogger(__name__)


# A cluster this process starts itself binds to loopback: its traffic never leaves the machine.
LOCAL_NODE_IP = "127.0.0.1"
MAX_RETRIES = 3  # restarts of a dead detector actor, and retries of a task lost with its worker
SHARD_ROWS = RAY_SHARD_ROWS  # descriptors per cache shard written by the driver
SEARCH_SHARD_ROWS = 262_144  # references per search task (the local search's block)
READ_CPUS = 0.25  # CPU share of one byte-reading task: I/O bound, so several run beside each actor


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class WorkerStats:
    """One detector actor's share of an extraction: images done and seconds spent decoding and running."""

    worker: str  # node address and process id of the actor
    images: int
    busy_s: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.busy_s if self.busy_s > 0 else float("nan")


@dataclass(frozen=True)
class ExtractionReport:
    """Images/s per worker and in total for one extraction (one image list, one detector)."""

    detector: str
    label: str
    images: int  # computed in this call
    cached: int  # found in the cache (finished shards of an earlier run)
    wall_s: float
    workers: tuple[WorkerStats, ...] = ()

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else float("nan")


@dataclass(frozen=True)
class BatchEvent:
    """Passed to ``on_batch`` after each batch the driver stores (progress hooks, fault-injection tests)."""

    label: str
    done: int
    total: int
    worker: str
    pid: int
