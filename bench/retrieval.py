"""Exact top-k retrieval: faiss inner product over reference blocks (CPU, or GPU when available).

Never materialises a full query x reference matrix: references are searched in blocks and per-block top-k
lists merged, so memory is bounded by ``block x dim`` whatever the gallery size.

Similarities (docs/PROTOCOLS.md, "Similarity and post-processing"):
- ``cosine``: inner product of L2-normalised global descriptors.
- ``split``: L2-normalise the whole descriptor (all tokens, or the global vector cut into ``chunks``), split it
  into chunks, score = max_i <q_i, r_i>. Exact top-k via the union of per-chunk top-k lists: a reference in the
  true top-k wins on some chunk i, and on that chunk at most k-1 references can beat it.
- ``split_cross``: max over all chunk pairs (i, j); per query chunk, the k*T nearest reference chunks are enough
  to hold k distinct references, so the same union argument makes it exact.
Score normalisation (SSCD) and whitening (SSCD's PCAW codec, or DINO's variant) are learned on a separate
descriptor set. Score normalisation is defined for split similarities too (offsets measured with the same
split product); whitening is defined for global descriptors only.
"""

from __future__ import annotations

import numpy as np

SIMILARITIES = ("cosine", "split", "split_cross")


def _faiss_gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def merge_topk(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, i: np.ndarray, k: int):
    """Merge two (Q, *) candidate lists into the top k by score (stable: earlier lists win ties)."""
    s_all, i_all = np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i], axis=1)
    order = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s_all, order, 1), np.take_along_axis(i_all, order, 1)


def _search_block_faiss(q: np.ndarray, r: np.ndarray, k: int, gpu: bool):
    import faiss

    index = faiss.IndexFlatIP(r.shape[1])
    if gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(r)
    return index.search(q, min(k, r.shape[0]))


TORCH_SCORES_BYTES = 1 << 30  # a (query chunk x reference block) score matrix stays under this on the device


def _search_block_torch(q: np.ndarray, r: np.ndarray, k: int, device: str):
    """Exact top-k on a torch device, queries in chunks: device memory is bounded by the block, not by Q x N."""
    import torch

    rt = torch.from_numpy(r).to(device)
    step = max(1, TORCH_SCORES_BYTES // (4 * r.shape[0]))
    scores, index = [], []
    for start in range(0, q.shape[0], step):
        qt = torch.from_numpy(q[start : start + step]).to(device, non_blocking=True)
        s, i = torch.topk(qt @ rt.T, min(k, r.shape[0]), dim=1)
        scores.append(s)
        index.append(i)
    return torch.cat(scores).cpu().numpy(), torch.cat(index).cpu().numpy()


def search(queries: np.ndarray, references: np.ndarray, k: int, *, device: str = "cpu", block: int = 262_144):
    """Exact top-k inner product: (scores (Q, k) float32, indices (Q, k) int64), -inf / -1 padding."""
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"descriptor shapes do not match: queries {queries.shape}, references {references.shape}"
        )
    nq = queries.shape[0]
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    if nq == 0 or references.shape[0] == 0:
        return best_s, best_i
    q = np.ascontiguousarray(queries, dtype=np.float32)
    use_gpu = str(device).startswith("cuda")
    faiss_gpu = use_gpu and _faiss_gpu_available()
    for start in range(0, references.shape[0], block):
        r = np.ascontiguousarray(references[start : start + block], dtype=np.float32)
        if use_gpu and not faiss_gpu:
            s, i = _search_block_torch(q, r, k, device)
        else:
            s, i = _search_block_faiss(q, r, k, faiss_gpu)
        i = np.where(i >= 0, i + start, -1)
        if start == 0 and s.shape[1] == k:  # first block: nothing to merge with yet
            best_s, best_i = s, i
        else:
            best_s, best_i = merge_topk(best_s, best_i, s, i, k)
    return best_s, best_i


def as_chunks(vectors: np.ndarray, chunks: int | None) -> np.ndarray:
    """(N, T, D) tokens or (N, D) cut into ``chunks`` -> (N, C, d), L2-normalised over the whole descriptor."""
    if vectors.ndim == 2:
        if not chunks or vectors.shape[1] % chunks:
            raise ValueError(f"--chunks must divide the descriptor size {vectors.shape[1]}, got {chunks}")
        vectors = vectors.reshape(vectors.shape[0], chunks, -1)
    flat = np.asarray(vectors, dtype=np.float32).reshape(vectors.shape[0], -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return (flat / np.maximum(norms, 1e-12)).reshape(vectors.shape)


def _rescore(q: np.ndarray, r: np.ndarray, cand: np.ndarray, cross: bool) -> np.ndarray:
    """Exact split-product scores of each query (Q, C, d) against its candidate references (Q, M)."""
    out = np.full(cand.shape, -np.inf, dtype=np.float32)
    for row in range(cand.shape[0]):
        valid = cand[row] >= 0
        rc = r[cand[row][valid]]  # (M, C, d)
        if cross:
            sims = np.einsum("id,mjd->mij", q[row], rc).reshape(rc.shape[0], -1)
        else:
            sims = np.einsum("cd,mcd->mc", q[row], rc)
        out[row, valid] = sims.max(axis=1)
    return out


def search_split(
    queries: np.ndarray,
    references: np.ndarray,
    k: int,
    *,
    cross: bool = False,
    chunks: int | None = None,
    device: str = "cpu",
    query_block: int = 1024,
):
    """Exact top-k under the split product (or its cross variant)."""
    r = as_chunks(references, chunks)
    n_ref, n_chunks, _ = r.shape
    all_s, all_i = [], []
    for start in range(0, queries.shape[0], query_block):
        q = as_chunks(queries[start : start + query_block], chunks)
        cands = []
        flat_r = r.reshape(n_ref * n_chunks, -1) if cross else None
        for c in range(n_chunks):
            if cross:
                _, idx = search(np.ascontiguousarray(q[:, c]), flat_r, k * n_chunks, device=device)
                cands.append(np.where(idx >= 0, idx // n_chunks, -1))
            else:
                _, idx = search(
                    np.ascontiguousarray(q[:, c]), np.ascontiguousarray(r[:, c]), k, device=device
                )
                cands.append(idx)
        cand = _unique_rows(np.concatenate(cands, axis=1))
        s = _rescore(q, r, cand, cross)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        all_s.append(np.take_along_axis(s, order, 1))
        all_i.append(np.take_along_axis(cand, order, 1))
    return _pad(np.concatenate(all_s), np.concatenate(all_i), k)


def _unique_rows(cand: np.ndarray) -> np.ndarray:
    """Per row, unique candidate ids (padded with -1)."""
    rows = [np.unique(c[c >= 0]) for c in cand]
    width = max((len(u) for u in rows), default=0)
    out = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
    for i, u in enumerate(rows):
        out[i, : len(u)] = u
    return out


def _pad(s: np.ndarray, i: np.ndarray, k: int):
    if s.shape[1] >= k:
        return s[:, :k], i[:, :k]
    pad = k - s.shape[1]
    return (
        np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf),
        np.pad(i, ((0, 0), (0, pad)), constant_values=-1),
    )


def fit_whitening(train: np.ndarray, *, full_rank: bool = False):
    """PCA-whitening learned on a separate set (faiss PCAMatrix, eigen power -1/2, centred), then L2 norm.

    This is SSCD's ``PCAW<d>,L2norm`` codec. ``full_rank`` keeps all d output dimensions as SSCD does (and
    refuses a set too small for them); otherwise the output stops at the n - 1 directions n samples span.
    """
    import faiss

    d = train.shape[1]
    if full_rank and train.shape[0] <= d:
        raise ValueError(
            f"whitening {d}-d descriptors as SSCD does (PCAW{d}) needs more than {d} norm-set images, "
            f"got {train.shape[0]}: the remaining directions have zero variance"
        )
    # n samples span at most n - 1 directions: whitening beyond them would divide by zero variance
    d_out = d if full_rank else min(d, train.shape[0] - 1)
    pca = faiss.PCAMatrix(d, d_out, -0.5)
    pca.train(np.ascontiguousarray(train, dtype=np.float32))

    def apply(x: np.ndarray) -> np.ndarray:
        y = pca.apply(np.ascontiguousarray(x, dtype=np.float32))
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    return apply


def fit_whitening_dino(train: np.ndarray):
    """DINO's copy-detection whitening (eval_copy_detection.py with utils.PCA, power 0.5), then L2 norm.

    Learned on RAW descriptors: the mean of the set is subtracted from queries and database, but the
    covariance is the set's uncentred second moment F^T F / n; eigenvalues below 1e-5 x the largest are
    raised to it; all dimensions are kept.
    """
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(train.T @ train / train.shape[0])
    eigval = np.maximum(eigval, eigval.max() * 1e-5)
    order = np.argsort(eigval)[::-1]
    project = eigvec[:, order].T / np.sqrt(eigval[order])[:, None]  # diag(d^-1/2) V^T

    def apply(x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, dtype=np.float64) - mean) @ project.T
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32)

    return apply


def score_norm_offsets(
    queries: np.ndarray,
    train: np.ndarray,
    *,
    beta: float = 1.0,
    first: int = 0,
    last: int = 2,
    device: str = "cpu",
    split: dict | None = None,
) -> np.ndarray:
    """SSCD score normalisation: beta x mean similarity of each query to its training neighbours first..last.

    ``split`` (``{"cross": bool, "chunks": int | None}``) measures the neighbours with the split product, so
    the offsets live on the same scale as split scores.
    """
    if train.shape[0] <= last:
        raise ValueError(
            f"score normalisation uses neighbours {first}..{last}: needs more than {last} norm-set images"
        )
    if split is None:
        s, _ = search(queries, train, last + 1, device=device)
    else:
        s, _ = search_split(queries, train, last + 1, device=device, **split)
    return beta * s[:, first : last + 1].astype(np.float64).mean(axis=1)
