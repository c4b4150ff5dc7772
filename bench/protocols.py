"""Evaluation protocols: the named settings that make a copybench number comparable with a published one.

A protocol fixes everything between the images and the reported numbers: the preprocessing of every detector
(derived from its spec with :func:`dataclasses.replace`, so the descriptor cache key changes by itself), the
similarities it defines, the whitening and score-normalisation variants, the prediction depth, which metric
definitions it reports and the replication-scan threshold and rule. Each one is checked against the original
code; docs/PROTOCOLS.md gives the formulas, the transforms and the published figures to compare with.

- ``native`` (default): each detector's own published preprocessing; every similarity and option.
- ``dcr``: the replication study's code (Somepalli et al., CVPR 2023): Resize(256), CenterCrop(224),
  Normalize(0.5, 0.5) for every model; cosine or split product; full ranking; revisitop mAP, recall@k as the
  fraction of positives in the top k, MRR over all queries; scan flags top-1 similarity > 0.5.
- ``isc``: SSCD's DISC21 evaluation: short side 288 with the aspect ratio kept, ImageNet mean/std; cosine;
  10 predictions per query; score normalisation beta 1.0 over neighbours 0..2; ISC micro-AP and recall@P90.
- ``sscd-copydays``: SSCD's Copydays script (copydays_eval.py): isc's preprocessing, 100 predictions per query,
  every original also querying itself, strong-subset mAP and SSCD's overall µAP (:mod:`copybench.copydays`).
- ``dino``: DINO's copy-detection evaluation: square 320 bicubic, ImageNet mean/std, CLS ++ GeM(p=4) patch
  tokens, DINO's whitening (centred by the whitening set's mean, uncentred covariance, power 0.5); top 20; mAP.

A combination a protocol cannot compute faithfully raises :class:`ProtocolError` (a ValueError: exit code 2),
never an approximation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "Preprocessing",
    "Protocol",
    "ProtocolError",
    "ScoreNorm",
    "check_detector",
    "get_protocol",
    "protocol_spec",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
DEFAULT_PROTOCOL = "native"


class ProtocolError(ValueError):
    """A setting or detector the chosen protocol cannot compute faithfully (message says why)."""


@dataclass(frozen=True)
class Preprocessing:
    """What a protocol feeds every model; mean/std None keeps the detector's own normalisation."""

    resize: str  # square | short | short_crop (the DetectorSpec policies)
    size: int
    interpolation: str
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    crop_pct: float = 1.0  # short_crop: the short side goes to size / crop_pct first (256 for 224 at 0.875)
    backend: str = "pil"  # resize on PIL images, exactly as the original scripts do
    # Pillow's convert("RGB") of the stored pixels (no EXIF rotation, alpha dropped), as the scripts decode
    rgb_conversion: str = "convert"

    def describe(self) -> str:
        geometry = {
            "square": f"square {self.size}",
            "short": f"short side {self.size}, aspect kept",
            "short_crop": f"short side {round(self.size / self.crop_pct)}, centre crop {self.size}",
        }[self.resize]
        norm = "model's own" if self.mean is None else f"mean {self.mean} std {self.std}"
        return f"{geometry}, {self.interpolation} ({self.backend}), {norm}"


@dataclass(frozen=True)
class ScoreNorm:
    """SSCD score normalisation: subtract beta x mean similarity to neighbours first..last of a norm set."""

    beta: float = 1.0
    first: int = 0
    last: int = 2

    def describe(self) -> str:
        return f"{self.beta:.2f}[{self.first},{self.last}]"  # SSCD's own notation


@dataclass(frozen=True)
class Protocol:
    """One named evaluation protocol (see docs/PROTOCOLS.md)."""

    name: str
    summary: str
    source: str
    preprocessing: Preprocessing | None  # None: each detector's own spec
    similarities: tuple[str, ...]
    whitening: str | None  # "pcaw" (SSCD: faiss PCAW, centred), "dino", None: not defined by the protocol
    score_norm: ScoreNorm | None  # None: not defined by the protocol
    topk: int | None  # fixed prediction depth; 0 = full ranking; None = free (--top-k)
    metrics: tuple[str, ...]  # the metric keys this protocol reports, in order
    scan_threshold: float | None  # None: the scan needs --threshold or --calibrate
    scan_rule: str = ">="  # how top-1 similarity is compared with the threshold
    multiscale: bool = False  # whether --multiscale is defined under this protocol
    descriptor: str | None = None  # a required descriptor kind ("cls_gem" for dino)
    raw_features: bool = False  # whitening learned on raw (not L2-normalised) descriptors
    # SSCD's Copydays script: the originals are queries too (each finds itself), and Copydays layout is required
    query_originals: bool = False
    # chunks a global descriptor is cut into under --similarity split when --chunks is not given (None: native's 8)
    split_chunks: int | None = None

    @property
    def native(self) -> bool:
        return self.preprocessing is None


_NATIVE_METRICS = (
    "micro_ap",
    "map",
    "recall_at_p90",
    "recall@1",
    "recall@10",
    "mrr",
)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="native",
            summary="each detector's own published preprocessing; every similarity and option",
            source="each model's release (its DetectorSpec)",
            preprocessing=None,
            similarities=("cosine", "split", "split_cross"),
            whitening="pcaw",
            score_norm=ScoreNorm(),
            topk=None,
            metrics=_NATIVE_METRICS,
            scan_threshold=None,
            multiscale=True,
        ),
        Protocol(
            name="dcr",
            summary="the replication study's code: 256 -> 224 centre crop, mean=std=0.5 for every model",
            source="github.com/somepago/DCR diff_retrieval.py, utils_ret.py (compute_map)",
            preprocessing=Preprocessing(
                "short_crop", 224, "bilinear", (0.5,) * 3, (0.5,) * 3, crop_pct=0.875
            ),
            similarities=("cosine", "split"),
            whitening=None,
            score_norm=None,
            topk=0,
            metrics=("map", "recall_frac@1", "recall_frac@5", "recall_frac@10", "mrr_all", "precision_rv@10"),
            scan_threshold=0.5,
            scan_rule=">",
            split_chunks=1,  # diff_retrieval.py: --num_loss_chunks 1 (patches only for token features)
        ),
        Protocol(
            name="isc",
            summary="SSCD's DISC21 evaluation: short side 288 (aspect kept), 10 predictions per query",
            source="github.com/facebookresearch/sscd-copy-detection disc_eval.py; isc2021 isc/metrics.py",
            preprocessing=Preprocessing("short", 288, "bilinear", IMAGENET_MEAN, IMAGENET_STD),
            similarities=("cosine",),
            whitening="pcaw",
            score_norm=ScoreNorm(1.0, 0, 2),
            topk=10,
            metrics=("micro_ap", "recall_at_p90", "isc_recall@1", "isc_recall@10"),
            scan_threshold=None,
        ),
        Protocol(
            name="sscd-copydays",
            summary="SSCD's Copydays script: isc's preprocessing, 100 predictions, originals queried too",
            source="github.com/facebookresearch/sscd-copy-detection copydays_eval.py, datasets/copydays.py",
            preprocessing=Preprocessing("short", 288, "bilinear", IMAGENET_MEAN, IMAGENET_STD),
            similarities=("cosine",),
            whitening="pcaw",
            score_norm=None,
            topk=100,
            metrics=("strong_map", "overall_uap", "map"),
            scan_threshold=None,
            query_originals=True,
        ),
        Protocol(
            name="dino",
            summary="DINO's copy-detection eval: square 320 bicubic, CLS ++ GeM(p=4), DINO whitening, top 20",
            source="github.com/facebookresearch/dino eval_copy_detection.py, utils.PCA",
            preprocessing=Preprocessing("square", 320, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
            similarities=("cosine",),
            whitening="dino",
            score_norm=None,
            topk=20,
            metrics=("map", "micro_ap"),
            scan_threshold=None,
            descriptor="cls_gem",
            raw_features=True,
        ),
    )
}


def get_protocol(name: str | Protocol | None) -> Protocol:
    """The protocol of that name (None: the default); ProtocolError naming the known ones otherwise."""
    if isinstance(name, Protocol):
        return name
    name = DEFAULT_PROTOCOL if name is None else name
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _takes_unit_input(spec) -> bool:
    return (tuple(spec.mean), tuple(spec.std)) == UNIT


def _check_input_range(protocol: Protocol, spec) -> None:
    """Detectors taking [0, 1] input normalise inside (ONNX uint8 exports) or are pixel functions."""
    if not _takes_unit_input(spec):
        return
    what = (
        "is a parameter-free pixel baseline defined on [0, 1] pixels"
        if spec.family == "pixel" or spec.parameter_free
        else "takes [0, 1] (uint8) input and normalises inside the model"
    )
    if spec.family == "pixel" or spec.parameter_free:
        raise ProtocolError(
            f"--protocol {protocol.name}: detector {spec.name!r} {what}; the original evaluation has no such "
            "model, so there is nothing to reproduce (run it under --protocol native)"
        )
    wanted = protocol.preprocessing.mean
    # SSCD's ONNX exports normalise inside with ImageNet mean/std, which is what isc and dino prescribe
    if wanted != IMAGENET_MEAN or spec.family != "sscd":
        raise ProtocolError(
            f"--protocol {protocol.name}: detector {spec.name!r} {what}, so it cannot be fed the protocol's "
            f"normalisation (mean {wanted}); use the TorchScript/PyTorch model instead"
        )


def protocol_spec(protocol: str | Protocol, spec):
    """The detector spec with the protocol's preprocessing (a new frozen spec; its cache key differs)."""
    protocol = get_protocol(protocol)
    pre = protocol.preprocessing
    if pre is None:
        return spec
    _check_input_range(protocol, spec)
    keep = _takes_unit_input(spec) or pre.mean is None
    return dataclasses.replace(
        spec,
        resize=pre.resize,
        input_size=pre.size,
        interpolation=pre.interpolation,
        crop_pct=pre.crop_pct,
        mean=tuple(spec.mean) if keep else pre.mean,
        std=tuple(spec.std) if keep else pre.std,
        resize_backend=pre.backend,
        rgb_conversion=pre.rgb_conversion,
    )


def check_detector(protocol: str | Protocol, spec, similarity: str) -> None:
    """ProtocolError when the protocol cannot run this detector faithfully with this similarity."""
    protocol = get_protocol(protocol)
    if protocol.native:
        return
    if protocol.descriptor == "cls_gem" and not spec.name.endswith(".cls_gem"):
        raise ProtocolError(
            f"--protocol {protocol.name}: detector {spec.name!r} is not DINO's copy-detection descriptor "
            "(CLS token ++ GeM(p=4) of the patch tokens); use a '<dino vit>.cls_gem' detector, e.g. "
            "dino_vitb8.cls_gem"
        )
    protocol_spec(protocol, spec)  # raises for input ranges the protocol cannot feed


def check_settings(protocol: str | Protocol, settings) -> None:
    """ProtocolError for run settings the protocol does not define (or fixes to another value)."""
    p = get_protocol(protocol)
    if settings.similarity not in p.similarities:
        raise ProtocolError(
            f"--protocol {p.name} defines similarity {' or '.join(p.similarities)}, not {settings.similarity!r}"
            + (
                " (the study's code has a 'cross' flag but never uses it: its split product pairs chunk i "
                "with chunk i only)"
                if p.name == "dcr" and settings.similarity == "split_cross"
                else ""
            )
        )
    if settings.whitening and p.whitening is None:
        raise ProtocolError(
            f"--protocol {p.name}: the original evaluation has no whitening (drop --whitening)"
        )
    if settings.score_norm and p.score_norm is None:
        raise ProtocolError(
            f"--protocol {p.name}: the original evaluation has no score normalisation (drop --score-norm)"
        )
    if settings.multiscale and not p.multiscale:
        raise ProtocolError(
            f"--protocol {p.name} evaluates at one scale; --multiscale is defined under --protocol native only"
        )
    if p.query_originals and getattr(settings, "subset", None):
        raise ProtocolError(
            f"--protocol {p.name} scores the whole Copydays set (its overall µAP pools every query and the "
            "originals); drop --subset (the strong figure is its strong_map)"
        )
    if settings.dtype != "fp32" and not p.native:
        raise ProtocolError(f"--protocol {p.name} runs the models in fp32, as the original; drop --dtype")


def topk_for(protocol: str | Protocol, requested: int | None, n_references: int) -> int:
    """The ranking depth: the protocol's (0 = every reference), or the requested one under native."""
    p = get_protocol(protocol)
    if p.topk is None:
        return requested
    return n_references if p.topk == 0 else p.topk


def flagged(top1, threshold: float, rule: str):
    """Boolean mask of generations flagged as replications under ``rule`` ('>' or '>=')."""
    if rule == ">":
        return top1 > threshold
    if rule == ">=":
        return top1 >= threshold
    raise ProtocolError(f"unknown threshold rule {rule!r}")


def _probe_shape(pre: Preprocessing) -> tuple[int, int]:
    # "short" keeps the aspect ratio, so probe a landscape input; the others are square
    return (pre.size, pre.size * 4 // 3) if pre.resize == "short" else (pre.size, pre.size)


def apply_protocol(detector, protocol: str | Protocol, *, similarity: str = "cosine"):
    """A shallow copy of a loaded detector running the protocol's preprocessing (the detector itself for
    native); ProtocolError when the model cannot take the protocol's input (a fixed-size ViT, say)."""
    import copy

    import torch

    protocol = get_protocol(protocol)
    if protocol.native:
        return detector
    check_detector(protocol, detector.spec, similarity)
    derived = copy.copy(detector)  # shares the model and its weights; only the spec differs
    derived.spec = protocol_spec(protocol, detector.spec)
    h, w = _probe_shape(protocol.preprocessing)
    device = next((p.device for p in detector.parameters()), torch.device("cpu"))
    try:
        with torch.inference_mode():
            detector(torch.zeros(1, 3, h, w, device=device))
    except Exception as exc:
        raise ProtocolError(
            f"--protocol {protocol.name}: detector {detector.spec.name!r} cannot take the protocol's "
            f"{h}x{w} input ({type(exc).__name__}: {exc})"
        ) from exc
    return derived


def describe_protocols() -> list[dict]:
    """One row per protocol for ``copybench list protocols``: every fixed setting in words."""
    rows = []
    for p in PROTOCOLS.values():
        depth = {None: "--top-k (default 100)", 0: "full ranking"}.get(p.topk, f"top {p.topk}")
        scan = (
            "--threshold or --calibrate"
            if p.scan_threshold is None
            else f"top-1 {p.scan_rule} {p.scan_threshold:g} (cosine)"
        )
        rows.append(
            {
                "name": p.name,
                "summary": p.summary,
                "preprocessing": p.preprocessing.describe()
                if p.preprocessing
                else "each detector's own spec",
                "similarity": ", ".join(p.similarities),
                "whitening": p.whitening or "none",
                "score_norm": p.score_norm.describe() if p.score_norm else "none",
                "depth": depth,
                "metrics": ", ".join(p.metrics),
                "scan": scan,
                "source": p.source,
            }
        )
    return rows
