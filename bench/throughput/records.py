"""Throughput result files: path, environment, settings and the result record (kind ``throughput``, schema v1)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from .settings import CAVEAT, ThroughputSettings


def throughput_path(
    results: str | Path,
    detector: str,
    device_name: str,
    dtype: str,
    batch_size: int,
    *,
    channels_last: bool = False,
    compile: bool = False,
) -> Path:
    """results/<device name>/<detector>__<dtype>__b<batch>[__cl][__compile].json"""
    from ..results import safe_name

    suffix = "__cl" * channels_last + "__compile" * compile
    return (
        Path(results) / safe_name(device_name) / f"{safe_name(detector)}__{dtype}__b{batch_size}{suffix}.json"
    )


def environment_record(settings: ThroughputSettings) -> dict:
    """The shared environment record plus what decides speed: cores, torch threads, CUDA and cuDNN versions."""
    import torch

    from ..env import environment

    env = environment(settings.device, settings.dtype)
    env.update(
        {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        }
    )
    return env


def settings_record(
    settings: ThroughputSettings, measurement: dict, images, n_images: int, channels_last: bool
) -> dict:
    """The settings as run: requested ones plus what they resolved to (workers, decode, channels-last)."""
    record = asdict(settings)
    record.pop("batch_sizes")
    record.update(
        {
            "batch_size": measurement["batch_size"],
            "num_workers": settings.workers,
            "decode": measurement["e2e_decode"],
            "channels_last_effective": channels_last,
            "n_images": n_images,
            "images": _published_folder(images) if images is not None else "synthetic JPEGs",
        }
    )
    if images is not None:
        record.pop("image_size")
    return record


def _published_folder(images) -> str:
    """The image folder as published: a relative path as given, an absolute one by its folder name only (the
    machine's layout, often a temp folder, tells nothing to anyone else; n_images says what was timed)."""
    return Path(images).name if Path(images).is_absolute() else Path(images).as_posix()


def throughput_result(detector, measurement: dict, settings: ThroughputSettings, env: dict, record: dict):
    """One result record: key, detector and weights status, environment, settings, the measurement."""
    from ..results import Result, weights_record

    return Result(
        kind="throughput",
        key={
            "detector": detector.spec.name,
            "device_name": env["device_name"],
            "dtype": settings.dtype,
            "batch_size": measurement["batch_size"],
            "channels_last": settings.channels_last,
            "compile": settings.compile,
        },
        detector={
            "name": detector.spec.name,
            "spec": detector.spec.to_dict(),
            "weights": weights_record(detector.weights),
        },
        environment=env,
        settings=record,
        measurements=[measurement],
        note=CAVEAT,
    )
