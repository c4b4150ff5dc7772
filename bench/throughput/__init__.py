"""Throughput: images per second per detector (model-only and end-to-end) and retrieval queries per second.

Contract. :func:`throughput` writes one result file (kind ``throughput``, schema v1) per (detector, device name,
dtype, batch size, channels-last, compile) under ``results``; each holds one measurement. What is timed:

- ``model``: a preprocessed float batch already on the device -> forward (autocast) -> L2 norm, as many batches
  as one end-to-end pass has images.
- ``e2e``: :meth:`copybench.extract.Extractor.run` on files on disk, exactly what ``copybench run`` does: decode
  (the Extractor's decode strategy, :mod:`copybench.decode`), resize, normalise, forward, L2 norm.
- ``reference`` (optional): the straightforward pipeline a paper's script writes (:mod:`.reference`).
- ``retrieval``: the e2e descriptors searched (exact top-k) against a seeded synthetic set of unit vectors.

Passes are interleaved (model, e2e, reference, model, e2e, reference, ...) so a busy machine slows every pass
of a round alike; ratios are computed per round and reported as median and range (:mod:`.timing`).

Modules, one job each: :mod:`.settings` (what to measure), :mod:`.timing` (timing and memory), :mod:`.images`
(synthetic images and reference vectors), :mod:`.reference` (the reference pipeline), :mod:`.measure` (the
measurements), :mod:`.records` (result files), :mod:`.cli` (the command).

Speed is comparable only between results of the same machine and device. Random weights do not change speed, so
random weights are allowed by default; the weights status is stored in every result and shown in every table.
"""

from __future__ import annotations

from .cli import register_cli
from .images import list_images, synthetic_references, write_synthetic_jpegs
from .measure import measure_detector, throughput
from .settings import ThroughputSettings
from .timing import Timing, interleaved, measure

__all__ = [
    "ThroughputSettings",
    "Timing",
    "interleaved",
    "list_images",
    "measure",
    "measure_detector",
    "register_cli",
    "synthetic_references",
    "throughput",
    "write_synthetic_jpegs",
]
