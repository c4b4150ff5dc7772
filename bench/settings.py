"""How a run compares descriptors and what it computes: :class:`RunSettings`, everything that changes a
result's numbers, validated against its protocol, which it resolves once (:attr:`RunSettings.protocol_spec`)
for every step of the run to read."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .options import default_descriptor_dir

DEFAULT_CACHE = default_descriptor_dir()  # $COPYBENCH_CACHE/descriptors, read when copybench starts
DEFAULT_TOPK = 100


@dataclass(frozen=True)
class RunSettings:
    """How descriptors are compared and what is computed; everything that changes a result's numbers."""

    similarity: str = "cosine"
    chunks: int | None = None
    topk: int | None = None  # None: the protocol's depth (native: DEFAULT_TOPK)
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 32
    whitening: bool = False
    score_norm: bool = False
    norm_set: str | None = None
    n_boot: int = 1000
    seed: int = 0
    multiscale: tuple[float, ...] | None = None
    subset: str | None = None  # a named query subset (copybench.datasets.subsets), e.g. copydays 'strong'
    decode: str = "auto"  # the Extractor's decode strategy (copybench.decode); not in the result key
    protocol: str = "native"  # a name in copybench.protocols.PROTOCOLS (docs/PROTOCOLS.md)

    def __post_init__(self) -> None:
        if self.similarity not in ("cosine", "split", "split_cross"):
            raise ValueError(f"unknown similarity {self.similarity!r}; choose cosine, split or split_cross")
        if (self.whitening or self.score_norm) and not self.norm_set:
            raise ValueError(
                "--whitening and --score-norm need --norm-set DIR: a separate folder of training images"
            )
        if self.chunks is not None and self.chunks < 1:
            raise ValueError(f"--chunks must be a positive number of chunks, got {self.chunks}")
        if self.chunks is not None and self.similarity == "cosine":
            raise ValueError(
                f"--chunks {self.chunks} needs --similarity split or split_cross (cosine uses whole vectors)"
            )
        if self.multiscale and not all(x > 0 for x in self.multiscale):
            raise ValueError(
                f"--multiscale factors must be positive, got {','.join(f'{x:g}' for x in self.multiscale)}"
            )
        if self.n_boot < 0:
            raise ValueError(
                f"--n-boot must be >= 0 bootstrap samples (0: no confidence intervals), got {self.n_boot}"
            )
        if (self.topk is not None and self.topk < 1) or self.batch_size < 1:
            raise ValueError(
                f"--top-k and --batch-size must be positive, got {self.topk} and {self.batch_size}"
            )
        self._check_protocol()
        default = self.protocol_spec.split_chunks
        if default and self.chunks is None and self.similarity == "split":
            # what runs is what the key records: DCR's default, not native's 8
            object.__setattr__(self, "chunks", default)

    @cached_property
    def protocol_spec(self):
        """The :class:`~copybench.protocols.Protocol` named by ``protocol``, resolved once for the whole run
        (every step reads this object; the name alone is what the result key records)."""
        from .protocols import get_protocol

        return get_protocol(self.protocol)

    def _check_protocol(self) -> None:
        from .protocols import ProtocolError, check_settings

        p = self.protocol_spec
        check_settings(p, self)
        if self.topk is not None and p.topk is not None:
            depth = "the full ranking" if p.topk == 0 else f"top {p.topk}"
            raise ProtocolError(f"--protocol {p.name} fixes the prediction depth ({depth}); drop --top-k")
        if not p.native and self.decode not in ("auto", "workers"):
            raise ProtocolError(
                f"--protocol {p.name} decodes every image fully with Pillow, as the original; drop --decode"
            )
        if self.whitening and self.similarity != "cosine":
            raise ProtocolError(
                "--whitening is defined for global descriptors only (no original whitens split descriptors); "
                "use --similarity cosine, or --score-norm, which is defined on the split scale"
            )

    def depth(self, n_references: int) -> int:
        """Ranking depth kept per query: the protocol's, else --top-k (default 100), at most the references."""
        from .protocols import topk_for

        k = topk_for(self.protocol_spec, self.topk or DEFAULT_TOPK, n_references)
        return min(k, n_references) or 1

    def key_settings(self) -> dict:
        """Settings that enter the result key (and so the file name)."""
        keys = {
            "similarity": self.similarity,
            "chunks": self.chunks,
            "whitening": self.whitening,
            "score_norm": self.score_norm,
            "dtype": self.dtype,
            "protocol": self.protocol,
        }
        if self.multiscale:  # only when set, so keys of single-scale results stay as they were
            keys["multiscale"] = list(self.multiscale)
        if self.topk not in (None, DEFAULT_TOPK):  # positives below top-k count as missed: other numbers
            keys["topk"] = self.topk
        if self.subset:  # other queries, other numbers; absent for the whole dataset, so older keys stay
            keys["subset"] = self.subset
        if self.norm_set_sha256:  # another norm set, other numbers; absent when none is used
            keys["norm_set_sha256"] = self.norm_set_sha256
        return keys

    @cached_property
    def norm_set_files(self) -> dict[str, str]:
        """sha256 of every image of the norm set, by path; empty when no norm set is used (a folder given
        without --whitening or --score-norm shapes no number). Hashed once per run."""
        from .io import file_sha256, list_images

        if not self.norm_set or not (self.whitening or self.score_norm):
            return {}
        try:
            paths = list_images(self.norm_set)
            return {str(p): file_sha256(p) for p in paths}
        except OSError as exc:  # NotADirectoryError included: one line naming the folder, exit 2
            raise ValueError(f"--norm-set {self.norm_set}: cannot read it ({exc})") from exc

    @property
    def norm_set_sha256(self) -> str | None:
        """The norm set's fingerprint: sha256 over its images' sha256, sorted (content, not names or order,
        is what whitening and score normalisation learn from); None when no norm set is used."""
        import hashlib

        if not self.norm_set_files:
            return None
        return hashlib.sha256("\n".join(sorted(self.norm_set_files.values())).encode()).hexdigest()
