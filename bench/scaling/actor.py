"""The detector actor of the Ray engine: reads image bytes, rebuilds the detector on its worker and runs the
local Extractor's own ``forward`` on each batch.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)


def detector_load_args(detector) -> dict:
    """How an actor builds the same detector: its name, weights file and (random weights) the driver's state."""
    import ray

    from copybench.detectors.registry import get_entry

    spec = detector.spec
    factory = get_entry(spec.name).factory if _registered(spec.name) else None
    module = getattr(factory, "__module__", "") if factory is not None else ""
    name = spec.name if module.startswith("copybench") or factory is None else f"{module}:{factory.__name__}"
    w = detector.weights
    state = None
    if w.status == "random":  # random init differs per process: every actor gets the driver's weights
        state = ray.put({k: v.cpu() for k, v in detector.state_dict().items()})
    return {
        "name": name,
        "weights_file": w.source if w.status == "real" else None,
        "allow_random": w.status == "random",
        "sha256": w.sha256,
        "state": state,
        "spec": spec,  # a protocol's preprocessing lives in the spec (copybench.protocols.apply_protocol)
    }


def _registered(name: str) -> bool:
    from copybench.detectors.registry import UnknownDetectorError, get_entry

    try:
        get_entry(name)
    except UnknownDetectorError:
        return False
    return True


def _read_bytes(batch: dict) -> dict:
    """A read task: each file's bytes, or an error naming it (pyarrow filesystems for URIs)."""
    data, errors = [], []
    for path in batch["path"]:
        try:
            data.append(_read_file(str(path)))
            errors.append("")
        except OSError as exc:
            data.append(b"")
            errors.append(f"{path}: cannot read ({exc})")  # as copybench.decode's byte readers say
    return {
        "job": batch["job"],
        "row": batch["row"],
        "path": batch["path"],
        "data": np.array(data, dtype=object),
        "read_error": np.array(errors, dtype=object),
    }


def _read_file(path: str) -> bytes:
    if "://" in path:
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_input_file(inner) as f:
            return f.readall()
    with open(path, "rb") as f:
        return f.read()


class _DetectorActor:
    """One detector on one GPU or CPU slice: decodes a batch of file bytes with the local Extractor's decode
    strategy (Pillow with reduced-size JPEG decoding, or nvjpeg on the GPU) and returns its descriptors."""

    def __init__(self, load: dict, options: dict) -> None:
        import socket

        import torch

        from copybench.decode import make_decoder
        from copybench.extract import Extractor

        torch.set_num_threads(options["threads"])
        det = _build_detector(load, options["device"])
        opts = {k: options[k] for k in ("device", "dtype", "batch_size", "scales", "decode", "draft", "raw")}
        self.ext = Extractor(det, num_workers=0, progress=False, **opts)
        if self.ext._decode_key() != options["decode_key"]:
            raise RuntimeError(
                f"decode strategy {self.ext._decode_key()!r} on {socket.gethostname()} differs from the "
                f"{options['decode_key']!r} the driver keyed the cache with; pass --decode explicitly"
            )
        self.feeder = make_decoder(
            self.ext.decode,
            self.ext.preprocess,
            device=self.ext.device,
            batch_size=self.ext.batch_size,
            num_workers=0,
            draft=self.ext.draft,
        )
        self.tokens = options["tokens"]
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        t0 = time.perf_counter()
        n = len(batch["row"])
        decoded = self._decode(batch)
        errors = np.array([""] * n, dtype=object)
        for j, err in decoded.failures:
            errors[j] = err
        vectors, tokens = self._forward(decoded, n)
        out = {
            "job": batch["job"],
            "row": batch["row"],
            "vector": vectors,
            "error": errors,
            "worker": np.array([self.worker] * n, dtype=object),
            "pid": np.full(n, os.getpid(), dtype=np.int64),
            "busy_s": np.full(n, (time.perf_counter() - t0) / max(n, 1)),
        }
        if self.tokens:
            out["tokens"] = tokens
        return out

    def _decode(self, batch: dict):
        """A :class:`copybench.decode.Batch` indexed by position in ``batch``, decoded as the local run does."""
        from copybench.decode import Batch, decode_on_cpu, stack_groups

        paths = [str(p) for p in batch["path"]]
        # a file the read task could not read is decoded from its path here, so its error reads as locally
        datas = [d if not e else None for d, e in zip(batch["data"], batch["read_error"])]
        if self.ext.decode == "workers":
            done = [
                decode_on_cpu(p, self.ext.preprocess, self.feeder.min_side, d) for p, d in zip(paths, datas)
            ]
            ok = [(j, img) for j, (img, err) in enumerate(done) if err is None]
            bad = tuple((j, err) for j, (_, err) in enumerate(done) if err is not None)
            return Batch(stack_groups(ok), bad, len(paths))
        self.feeder.paths = paths  # its CPU fallback (PNG, CMYK, corrupt JPEG) decodes from the path
        items = [
            (j, d, None) if d else (j, None, e or f"{p}: empty file (0 bytes)")
            for j, (p, d, e) in enumerate(zip(paths, batch["data"], batch["read_error"]))
        ]
        return self.feeder._decode_batch(items, None)

    def _forward(self, decoded, n: int):
        """Descriptors (n, D) and tokens (n, T, D) of the decoded groups; rows that failed stay zero."""
        vectors = np.zeros((n, self.ext.detector.spec.dims), dtype=np.float32)
        tokens = None
        for idx, x in decoded.groups:
            glob, toks = self.ext.forward(x)
            vectors[list(idx)] = glob.cpu().numpy()
            if self.tokens:
                t = toks.cpu().half().numpy()
                if tokens is None:
                    tokens = np.zeros((n, *t.shape[1:]), dtype=np.float16)
                tokens[list(idx)] = t
        if self.tokens and tokens is None:
            tokens = np.zeros((n, 1, vectors.shape[1]), dtype=np.float16)
        return vectors, tokens


def _build_detector(load: dict, device: str):
    """The driver's detector, rebuilt here: same weights file (checked by sha256) or the driver's random weights."""
    import socket

    from copybench.detectors import create_detector

    det = create_detector(
        load["name"], weights_file=load["weights_file"], allow_random=load["allow_random"], device=device
    )
    if load["state"] is not None:
        import ray

        det.load_state_dict(ray.get(load["state"]))
    if (
        det.spec.library != load["spec"].library
    ):  # a hub model: another version builds other pixels/descriptors
        raise RuntimeError(
            f"detector {load['name']!r}: {socket.gethostname()} has {det.spec.library}, the driver "
            f"{load['spec'].library}; install the driver's version on every worker"
        )
    if det.spec != load["spec"]:  # as apply_protocol does: same model and weights, the driver's spec
        import copy

        det = copy.copy(det)
        det.spec = load["spec"]
    if det.weights.sha256 != load["sha256"]:
        raise RuntimeError(
            f"detector {load['name']!r}: the weights on {socket.gethostname()} ({det.weights.source}) "
            f"differ from the driver's (sha256 {det.weights.sha256} != {load['sha256']})"
        )
    return det
