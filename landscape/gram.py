"""One float64 Gram of a layer's distinct rows, computed once by torch and read by every measure.

Every geometric measure of a layer is a function of the pairwise inner products of its centred
rows: squared distances are ``G_ii + G_jj - 2 G_ij``, a neighbourhood's local Gram (local PCA,
TLE) is a gather from ``G``, CKA reads ``G`` centred. So the layer's arithmetic is one Gram
(2 N^2 d flops, half of it with the symmetric blocks used here) and selections from its rows.

Why float64 and why torch: a float32 GEMM's error on ``|x|^2 + |y|^2 - 2 x.y`` is ~1e-7 of the
norms, which is more than the distance between near neighbours of states with a large shared
norm, so a float32 graph had to recompute its neighbours' distances from coordinate differences
(N x k x d gathers: most of the analysis's time at d = 8,192). In float64 that error is ~1e-16 of
the norms, below any distance the data hold but exact duplicates (removed first). Why torch: the
same code runs on a GPU (never TF32: float64 throughout), and its MKL knows current x86 CPUs
(numpy 1.26's OpenBLAS ran generic kernels on these machines, ~3x slower; numpy 2.4's does not).

Memory: the Gram is M x M float64 (0.67 GB at M = 9,181) and is kept only when it fits
``GRAM_BYTES``; larger layers get their distances in blocks of rows, each from a float64 GEMM of
those rows against all (``nearest_neighbours`` takes either).

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(6, 3))
    >>> g = layer_gram(X)
    >>> d2 = squared_distances(g, np.arange(6))
    >>> bool(np.allclose(d2.numpy(), ((X[:, None] - X[None]) ** 2).sum(-1)))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from landscape.devices import pick_device

GRAM_BYTES = 2 << 30  # the largest Gram kept whole (M = 16,384); larger layers go by blocks of rows
_SYMMETRIC_BLOCK = 1024  # rows a product of the upper triangle (CPU): wide enough for an efficient GEMM
_ROW_BLOCK_BYTES = 1 << 28  # a block of squared distances during selection (256 MB)


@dataclass(frozen=True)
class LayerGram:
    """The centred rows of a layer (distinct rows only) and, when it fits, their Gram.

    points: (M, d) float64 on ``device``, the distinct rows less their mean.
    gram:   (M, M) float64, ``points @ points.T``, or None (too large: rows are multiplied as needed).
    sq_norms: (M,) float64, the Gram's diagonal.
    keep:    (M,) int64, row of each distinct point in the layer's (N, d) array (``knn.distinct_rows``).
    inverse: (N,) int64, distinct point of each of the layer's rows.
    """

    points: torch.Tensor
    gram: torch.Tensor | None
    sq_norms: torch.Tensor
    keep: np.ndarray
    inverse: np.ndarray

    @property
    def n_points(self) -> int:
        return self.points.shape[0]

    @property
    def device(self) -> torch.device:
        return self.points.device

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(len(rows), M) the Gram's rows: read, or computed from the points."""
        return self.gram[rows] if self.gram is not None else self.points[rows] @ self.points.T


def layer_gram(
    distinct: np.ndarray,
    *,
    keep: np.ndarray | None = None,
    inverse: np.ndarray | None = None,
    device: str | torch.device | None = None,
    max_bytes: int = GRAM_BYTES,
) -> LayerGram:
    """The float64 Gram of ``distinct`` (M, d) rows less their mean (any shared offset leaves
    distances unchanged; without it the Gram's entries, and their rounding, are far larger).
    ``keep`` and ``inverse`` (default: every row distinct) say where the rows came from.

    float16 and bfloat16 states are exact in float64; float32 states lose nothing either."""
    dev = pick_device(device)
    # a copy always (float64 input would otherwise be centred in place: the caller's array)
    points = torch.from_numpy(np.ascontiguousarray(distinct)).to(dev, torch.float64, copy=True)
    points -= points.mean(0)
    m = points.shape[0]
    keep = np.arange(m, dtype=np.int64) if keep is None else keep
    inverse = np.arange(m, dtype=np.int64) if inverse is None else inverse
    if 8 * m * m > max_bytes:
        return LayerGram(points, None, (points * points).sum(1), keep, inverse)
    gram = _symmetric_gram(points) if dev.type == "cpu" else points @ points.T
    return LayerGram(points, gram, torch.diagonal(gram).clone(), keep, inverse)


def _symmetric_gram(points: torch.Tensor) -> torch.Tensor:
    """``points @ points.T`` from the blocks on and above the diagonal (about half the flops;
    each lower block is its mirror's transpose, so the result is exactly symmetric)."""
    m = points.shape[0]
    gram = torch.empty((m, m), dtype=points.dtype, device=points.device)
    for a in range(0, m, _SYMMETRIC_BLOCK):
        b = min(m, a + _SYMMETRIC_BLOCK)
        block = points[a:b] @ points[a:].T
        gram[a:b, a:] = block
        gram[a:, a:b] = block.T
        square = torch.triu(block[:, : b - a])  # the diagonal block, its upper half mirrored
        gram[a:b, a:b] = square + torch.triu(square, 1).T
    return gram


def squared_distances(gram: LayerGram, rows: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(len(rows), M) float64 squared distances of ``rows`` to every point: G_ii + G_jj - 2 G_ij,
    clamped at 0 (rounding can make a tiny one negative)."""
    rows = torch.as_tensor(rows, device=gram.device)
    d2 = gram.sq_norms[rows, None] + gram.sq_norms[None, :] - 2 * gram.rows(rows)
    return d2.clamp_min_(0)


def nearest_neighbours(gram: LayerGram, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """((M, k) squared distances, (M, k) indices) of each point's k nearest other points,
    ascending, exact ties ordered by index: so the first k of a longer list are the k-list, as
    ``knn.truncate`` assumes.

    >>> X = np.array([[0.0], [1.0], [-1.0], [3.0]])
    >>> d2, idx = nearest_neighbours(layer_gram(X), 2)
    >>> idx.tolist(), d2[0].tolist()
    ([[1, 2], [0, 2], [0, 1], [1, 0]], [1.0, 1.0])
    """
    m = gram.n_points
    if not 1 <= k < m:
        raise ValueError(f"{k} neighbours of {m} points: need 1 <= k < M")
    sq = torch.empty((m, k), dtype=torch.float64, device=gram.device)
    idx = torch.empty((m, k), dtype=torch.long, device=gram.device)
    height = max(1, min(m, _ROW_BLOCK_BYTES // (8 * m)))
    for a in range(0, m, height):
        rows = torch.arange(a, min(m, a + height), device=gram.device)
        d2 = squared_distances(gram, rows)
        d2[torch.arange(len(rows), device=gram.device), rows] = float("inf")  # not its own neighbour
        sq[rows], idx[rows] = smallest_by_index(d2, k)
    return sq, idx


def smallest_by_index(d2: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k smallest values and their columns, ascending, ties in column order.

    ``topk`` picks among values tied at the k-th arbitrarily: one more is drawn, and the rows
    where the (k+1)-th equals the k-th (a tie across the cut) are sorted whole and stably."""
    width = d2.shape[1]
    extra = min(k + 1, width)
    values, columns = torch.topk(d2, extra, dim=1, largest=False, sorted=True)
    cut = torch.nonzero(values[:, k - 1] == values[:, k]).flatten() if extra > k else values[:0, 0].long()
    values, columns = values[:, :k].clone(), columns[:, :k].clone()
    if len(cut):
        full_values, full_columns = torch.sort(d2[cut], dim=1, stable=True)
        values[cut], columns[cut] = full_values[:, :k], full_columns[:, :k]
    by_column, order = torch.sort(columns, dim=1)  # then a stable sort by value keeps ties in column order
    values = torch.gather(values, 1, order)
    ascending = torch.sort(values, dim=1, stable=True).indices
    return torch.gather(values, 1, ascending), torch.gather(by_column, 1, ascending)


def neighbourhood_grams(gram: LayerGram, neighbourhoods: np.ndarray) -> np.ndarray:
    """(M, s, s) Gram matrices of each neighbourhood (``neighbourhoods`` (M, s): a point, then its
    neighbours), centred on that point: (x_a - x_p).(x_b - x_p) = G_ab - G_ap - G_pb + G_pp,
    gathered from the layer's Gram (or from the points' products, block by block, without one)."""
    hoods = torch.as_tensor(np.asarray(neighbourhoods), device=gram.device)
    m, s = hoods.shape
    out = torch.empty((m, s, s), dtype=torch.float64, device=gram.device)
    step = max(1, _ROW_BLOCK_BYTES // (8 * s * max(s, 1 if gram.gram is not None else gram.points.shape[1])))
    for a in range(0, m, step):
        block = hoods[a : a + step]
        if gram.gram is not None:
            local = gram.gram[block[:, :, None], block[:, None, :]]
        else:
            vectors = gram.points[block]
            local = vectors @ vectors.transpose(1, 2)
        out[a : a + step] = local - local[:, :1, :] - local[:, :, :1] + local[:, :1, :1]
    return out.cpu().numpy()
