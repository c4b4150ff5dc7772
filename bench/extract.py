"""Descriptor extraction: batched, resumable, streamed to an on-disk cache.

Images are decoded and resized (uint8) by the extractor's decode strategy (:mod:`copybench.decode`: Pillow in
CPU DataLoader workers, or nvjpeg / nvImageCodec on the GPU, chosen automatically on CUDA), normalised on the
device, run through the model under ``torch.inference_mode`` (bf16/fp16 autocast and channels_last on GPU) and
L2-normalised by the harness.
Descriptors go to the cache of ``copybench.cache`` (atomic shards, so a run killed at any point resumes with
identical descriptors; final arrays memory-mapped). An image that fails to decode is reported by path and left
out; nothing else is lost.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from .cache import Descriptors, ShardStore, cache_key
from .decode import DECODE_AHEAD, Batch, draft_refusal, make_decoder, pillow_decode_key, resolve_decode
from .preprocess import Preprocess

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_workers() -> int:
    """All cores but one for decoding (the main process feeds the model), at most 16."""
    return max(1, min(16, (os.cpu_count() or 2) - 1))


def check_dtype_applies(detector, dtype: str) -> None:
    """Refuse a reduced precision that would change the label but not the numbers: autocast only reaches
    torch operations, and a model run by another runtime (ONNX Runtime) keeps the precision of its graph."""
    if dtype == "fp32":
        return
    modules = detector.modules() if hasattr(detector, "modules") else []
    outside = [type(m).__name__ for m in modules if getattr(m, "runs_outside_torch", False)]
    if outside:
        raise ValueError(
            f"--dtype {dtype} does not apply to {detector.spec.name}: it runs in {outside[0]} (ONNX Runtime), "
            "whose graph fixes its own precision; use --dtype fp32"
        )


def descriptor_key(extractor, paths: list[str], *, tokens: bool, fingerprint: str | None, decode: str) -> str:
    """The cache key of ``paths``' descriptors from ``extractor`` (local or Ray: detector, dtype, scales and raw
    as it runs them), after refusing an output it cannot give."""
    spec = extractor.detector.spec
    if tokens and spec.output != "tokens":
        raise ValueError(f"detector {spec.name!r} outputs global descriptors, not tokens")
    if tokens and extractor.scales:
        raise ValueError("--multiscale gives global descriptors only: use it with --similarity cosine")
    return cache_key(
        extractor.detector,
        paths,
        dtype=extractor.dtype,
        tokens=tokens,
        fingerprint=fingerprint,
        scales=extractor.scales,
        raw=extractor.raw,
        decode=decode,
    )


class Extractor:
    """Runs one detector over image lists with the harness's preprocessing and normalisation.

    ``decode`` picks how files become pixels (:mod:`copybench.decode`): ``workers`` (Pillow in CPU worker
    processes), ``device`` (nvjpeg on the GPU), ``nvimgcodec``, ``nvimgcodec-hw`` (its hardware JPEG decoders only),
    or ``auto`` (``device`` on CUDA). ``draft=False`` turns off reduced-size decoding of large JPEGs in the workers
    path. ``decode_ahead``: batches the GPU decoders work ahead of the model, each on its own side stream.
    """

    def __init__(
        self,
        detector,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        batch_size: int = 32,
        num_workers: int | None = None,
        cache_dir: str | Path | None = None,
        progress: bool = True,
        scales: tuple[float, ...] | None = None,
        raw: bool = False,
        decode: str = "auto",
        draft: bool = True,
        decode_ahead: int = DECODE_AHEAD,
    ) -> None:
        if scales and any(s <= 0 for s in scales):
            raise ValueError(f"multiscale factors must be positive, got {scales}")
        self.scales = tuple(scales) if scales and tuple(scales) != (1.0,) else None
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        check_dtype_applies(detector, dtype)
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.detector, self.device, self.dtype = detector, torch.device(device), dtype
        self.batch_size, self.progress = batch_size, progress
        # raw: keep global descriptors unnormalised (DINO's whitening is learned on raw features)
        self.raw = raw
        if raw and self.scales:
            raise ValueError("multiscale descriptors are means of L2-normalised ones: they have no raw form")
        self.num_workers = default_workers() if num_workers is None else num_workers
        if decode_ahead < 1:
            raise ValueError(f"decode_ahead must be at least 1, got {decode_ahead}")
        self.decode_ahead = decode_ahead
        self._feeders: dict = {}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.preprocess = Preprocess(detector.spec)
        self.decode = resolve_decode(decode, self.device)
        if (
            decode == "auto" and self.preprocess.library_decode
        ):  # hub models decode as their libraries: Pillow
            self.decode = "workers"
        refusal = draft_refusal(detector) if draft and self.decode == "workers" else None
        if refusal:
            log.info("full-size JPEG decoding: %s", refusal)
        self.draft = draft and refusal is None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = (
                True  # fixed input sizes: let cuDNN pick its fastest kernels once
            )
            if detector.spec.family != "pixel":
                detector.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, batch_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 (B,3,H,W) -> (global (B,D) float32, L2-normalised unless raw; tokens (B,T,D) or None).

        Checks the output at once (a host sync); :meth:`run` defers that check to the copy back instead."""
        glob, toks, nonfinite = self.forward_deferred(batch_uint8)
        raise_nonfinite(self.detector.spec, int(nonfinite), batch_uint8.shape[0])
        return glob, toks

    @torch.inference_mode()
    def forward_deferred(self, batch_uint8: torch.Tensor):
        """:meth:`forward` without waiting for the device: (global, tokens or None, count of non-finite raw
        outputs as a device tensor), to be checked with :func:`raise_nonfinite` once the outputs are on the host."""
        x = self.preprocess.normalize(batch_uint8.to(self.device, non_blocking=True))
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if self.scales:
            return self._multiscale(x)
        out = check_raw_output(self.detector.spec, self._model(x), x.shape[0])
        glob = out[:, 0] if out.ndim == 3 else out
        glob = glob if self.raw else torch.nn.functional.normalize(glob, dim=-1)
        return glob, (out if out.ndim == 3 else None), nonfinite_count(out)

    def _model(self, x: torch.Tensor) -> torch.Tensor:
        use_amp = self.dtype != "fp32" and self.device.type in ("cuda", "cpu")
        with torch.autocast(self.device.type, dtype=DTYPES[self.dtype], enabled=use_amp):
            return self.detector(x).float()

    def _multiscale(self, x: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
        """Mean of the L2-normalised global descriptors at each scale of the native input, renormalised; no tokens;
        the non-finite raw outputs of every scale, counted on the device."""
        total, nonfinite = 0, 0
        for s in self.scales:
            size = [max(8, round(d * s)) for d in x.shape[-2:]]
            xs = (
                x
                if s == 1.0
                else torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
            )
            try:
                out = self._model(xs)
            except (RuntimeError, AssertionError, ValueError) as exc:
                raise ValueError(
                    f"detector {self.detector.spec.name!r} cannot run at scale {s} ({size[0]}x{size[1]}): "
                    f"{exc}; fixed-size models (most ViTs) take no --multiscale"
                ) from exc
            out = check_raw_output(self.detector.spec, out, x.shape[0])
            nonfinite = nonfinite + nonfinite_count(out)
            total = total + torch.nn.functional.normalize(out[:, 0] if out.ndim == 3 else out, dim=-1)
        return torch.nn.functional.normalize(total, dim=-1), None, nonfinite

    def run(
        self, paths: list[str], *, tokens: bool = False, fingerprint: str | None = None, label: str = "images"
    ) -> Descriptors:
        """Descriptors for ``paths``, from the cache where present."""
        key = descriptor_key(self, paths, tokens=tokens, fingerprint=fingerprint, decode=self._decode_key())
        with ShardStore(self.cache_dir / key if self.cache_dir else None, len(paths), key) as store:
            if store.complete():
                return store.load(paths)
            todo = store.missing_rows()
            start = time.perf_counter()
            self._extract_rows(paths, todo, store, tokens, label)
            result = store.finalize(paths, self.detector.spec.dims, tokens)
        result.seconds = time.perf_counter() - start
        return result

    def _decode_key(self) -> str:
        """The cache key's decode part: what decoded the pixels (full or reduced-size Pillow, or a GPU decoder)."""
        if self.decode == "workers":
            return pillow_decode_key(self.draft and bool(self.preprocess.min_decode_side))
        return self.decode

    def batches(self, paths: list[str], rows: list[int]):
        """Resized uint8 :class:`~copybench.decode.Batch` es of ``rows``, decoded by this extractor's strategy."""
        return self.feeder().batches(paths, rows)

    def feeder(self):
        """This extractor's decoder, kept across runs while its settings stand: a GPU decoder is created once and
        the device path's read buffers are used again."""
        key = (self.decode, self.batch_size, self.num_workers, self.draft, self.decode_ahead)
        if key not in self._feeders:
            self._feeders = {
                key: make_decoder(
                    self.decode,
                    self.preprocess,
                    device=self.device,
                    batch_size=self.batch_size,
                    num_workers=self.num_workers,
                    draft=self.draft,
                    ahead=self.decode_ahead,
                )
            }
        return self._feeders[key]

    def _extract_rows(self, paths, rows, store: ShardStore, tokens: bool, label: str) -> None:
        from .progress import progress_bar

        spec = self.detector.spec
        name = spec.name
        n_batches = 0
        lagged: list = []  # on CUDA one batch's outputs wait: copying them at once would stall the GPU queue
        try:
            with progress_bar(f"{name}: {label}", len(rows), self.progress and bool(rows)) as bar:
                for batch in self.batches(paths, rows):
                    for row, err in batch.failures:
                        log.warning("skipped %s", err)
                        store.add_failure(row, err)
                    outputs = self._forward_batch(batch, tokens)
                    _store_outputs(store, lagged, spec)
                    lagged = outputs if self.device.type == "cuda" else _store_outputs(store, outputs, spec)
                    bar.advance(batch.size)
                    n_batches += 1
                    if n_batches % TRIM_EVERY == 0:
                        trim_heap()
                _store_outputs(store, lagged, spec)
        except KeyboardInterrupt:
            _store_outputs(store, lagged, spec)
            store.flush()  # Ctrl-C keeps the rows already done: a rerun resumes after them
            raise
        store.flush()

    def _forward_batch(self, batch: Batch, tokens: bool) -> list:
        """[(rows, global, tokens or None, non-finite count)] device outputs of one batch's same-shape groups."""
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        if batch.event is not None:
            stream.wait_event(
                batch.event
            )  # decoded on a side stream: wait for it on the GPU, not on the host
        out = []
        for rows, x in batch.groups:
            if stream is not None and x.is_cuda:
                x.record_stream(stream)  # keep the side stream's memory alive until the model is done with it
            glob, toks, nonfinite = self.forward_deferred(x)
            out.append((list(rows), glob, toks if tokens else None, nonfinite))
        return out


TRIM_EVERY = 4  # batches between heap trims


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``). Batches arriving from worker processes
    leave the heap fragmented once glibc's dynamic mmap threshold has grown to the batch size: without a trim,
    resident memory grew by about a batch every batch (measured: +230 MB from 10k to 40k images); with it, it
    stays flat. A no-op where there is no glibc."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
            _LIBC = _LIBC if _LIBC and hasattr(_LIBC, "malloc_trim") else False
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def _store_outputs(store: ShardStore, outputs: list, spec) -> list:
    """Copy outputs to the host and into the store, after checking they were finite; returns the empty list left to
    lag. The count of non-finite values is read here, after the copy has waited for the device anyway: reading it
    at the forward (``torch.isfinite(out).all()``) drained the device queue every batch (20 ms a batch measured)."""
    for rows, glob, toks, nonfinite in outputs:
        host = glob.cpu().numpy()
        raise_nonfinite(spec, int(nonfinite), len(rows))
        store.add(rows, host, toks.cpu().half().numpy() if toks is not None else None)
    return []


def nonfinite_count(out: torch.Tensor) -> torch.Tensor:
    """How many values of ``out`` are NaN or inf, as a device tensor: counting does not wait for the device."""
    return (~torch.isfinite(out)).sum()


def raise_nonfinite(spec, count: int, batch: int) -> None:
    """ValueError naming the detector when ``count`` of its raw outputs for a batch of ``batch`` were not finite."""
    if count:
        raise ValueError(
            f"detector {spec.name!r} returned {count} non-finite values (NaN or inf) for a batch of {batch}"
        )


def check_raw_output(spec, out: torch.Tensor, batch: int) -> torch.Tensor:
    """``out`` when it has the shape and dims ``spec`` declares, else ValueError naming the detector. Shapes are
    known on the host; finiteness is counted by :func:`nonfinite_count` and checked at the copy back."""
    ndim, want = (2, "(B, D)") if spec.output == "global" else (3, "(B, T, D)")
    if out.ndim != ndim or out.shape[0] != batch or out.shape[-1] != spec.dims:
        raise ValueError(
            f"detector {spec.name!r} returned shape {tuple(out.shape)} for a batch of {batch}, but its "
            f"spec declares output={spec.output!r} {want} with dims={spec.dims}"
        )
    return out
