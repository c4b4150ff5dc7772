"""Accuracy against speed, one device at a time: a board's headline metric against end-to-end images/s.

Speed is compared only between measurements of one device name (``environment.device_name``, the machine and
the accelerator the rate was measured on) on one image set (``settings.images``: 5K wallpapers decode far more
slowly than small JPEGs); no figure or table mixes two devices or two image sets. A detector's speed there is
its best end-to-end rate over the measurements given (batch sizes, dtypes), shown beside the measurement it
came from; its accuracy is its best row on the board (over settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from .boards import Board
from .inputs import Included


@dataclass(frozen=True)
class Speed:
    """The best end-to-end measurement of one detector on one device."""

    item: Included
    measurement: dict

    @property
    def e2e(self) -> float:
        return float(self.measurement["e2e_ips"])


def devices(throughput: list[Included]) -> dict[tuple[str, str], dict[str, Speed]]:
    """(device name, image set) -> detector name -> its best end-to-end measurement there (ties: the first file
    by name)."""
    out: dict[tuple[str, str], dict[str, Speed]] = {}
    for item in sorted(throughput, key=lambda i: i.label):
        r = item.result
        for m in r.measurements:
            if not isinstance(m.get("e2e_ips"), (int, float)):
                continue
            images = str(r.settings.get("images") or "unrecorded images")
            best = out.setdefault((r.environment["device_name"], images), {})
            if r.detector_name not in best or m["e2e_ips"] > best[r.detector_name].e2e:
                best[r.detector_name] = Speed(item, m)
    return dict(sorted(out.items()))


def points(board: Board, speeds: dict[str, Speed]) -> list[dict]:
    """The board's detectors measured on this device, with ``on_front`` (no other point at least as accurate
    and as fast, and better in one)."""
    from copybench.report.speed_plot import pareto_front

    best: dict[str, dict] = {}
    for row in board.rows:  # rows are ranked: the first of a detector is its best setting
        value = row.values.get(board.headline)
        if value is None or row.detector in best or row.detector not in speeds:
            continue
        speed = speeds[row.detector]
        best[row.detector] = {
            "detector": row.detector,
            "accuracy": value,
            "settings": row.settings,
            "speed": speed.e2e,
            "speed_item": speed.item,
            "measurement": speed.measurement,
            # speed does not depend on weight values, but a random-weight row on either side is said so
            "random": row.random or speed.item.result.is_random,
        }
    found = sorted(best.values(), key=lambda p: p["detector"])
    if found:
        front = pareto_front([p["speed"] for p in found], [p["accuracy"] for p in found])
        for p, on in zip(found, front):
            p["on_front"] = bool(on)
    return found
