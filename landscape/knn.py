"""The k-nearest-neighbour graph of one layer, computed once and reused by every analysis.

DADApy computes its own neighbours with scikit-learn, in float64, and that dominates its cost
(N^2 d). Here the graph is a selection from the layer's float64 Gram (``landscape.gram``: one
product by torch, shared with the ID estimators), each row's k smallest distances with exact ties
to the lower index. Rows whose neighbours are too close for the Gram's error bound are recomputed
from coordinate differences. ``exact=True`` keeps the reference path the tests compare with:
float32 GEMM candidates (on the CPU the blocks on and above the diagonal, streamed through per-point
reservoirs: ``landscape.selection``; on a GPU blocks of whole rows) re-ranked by distances from
coordinate differences. ``neighbours_of`` serves a sample of rows the same way.

Exact duplicate rows are removed first (DADApy's ID and density estimators break on zero
distances); ``inverse`` maps every original row to its representative, and how many were
dropped is recorded.

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5))
    >>> g = knn_graph(X, maxk=10)
    >>> g.distances.shape, g.indices[:3, 0].tolist(), g.n_duplicates
    ((200, 11), [0, 1, 2], 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

from landscape.devices import pick_device
from landscape.gram import LayerGram, layer_gram, nearest_neighbours, smallest_by_index
from landscape.selection import Reservoirs, numba_threads

# On the CPU, one product of the distance matrix is _CPU_BLOCK_ROWS points against up to
# _CPU_BLOCK_BYTES of float32 columns: few rows waste little GEMM on the lower triangle of each
# block's own square, wide products keep the GEMM efficient.
_CPU_BLOCK_ROWS = 512
_CPU_BLOCK_BYTES = 1 << 22
# Elsewhere (GPU), blocks of rows x all N float32 squared distances of at most this many bytes.
_BLOCK_BYTES = 1 << 30
# Candidates kept per row beyond maxk with exact=True, re-ranked by distances from differences.
_EXTRA_CANDIDATES = 8


class GeometryError(ValueError):
    """Data on which the geometry is not defined (non-finite, too few distinct points)."""


@dataclass(frozen=True)
class KnnGraph:
    """Neighbours of the distinct points of a layer.

    distances: (M, maxk+1) float64, ascending; column 0 is the point itself (distance 0).
    indices:   (M, maxk+1) int64 into the M distinct points.
    keep:      (M,) int64, row of each distinct point in the original (N, d) array.
    inverse:   (N,) int64, distinct point of each original row (``keep[inverse[i]]`` equals row i).
    """

    distances: np.ndarray
    indices: np.ndarray
    keep: np.ndarray
    inverse: np.ndarray

    @property
    def maxk(self) -> int:
        return self.distances.shape[1] - 1

    @property
    def n_points(self) -> int:
        return len(self.keep)

    @property
    def n_duplicates(self) -> int:
        return len(self.inverse) - len(self.keep)


def truncate(graph: KnnGraph, maxk: int) -> KnnGraph:
    """The same graph with only the ``maxk`` nearest neighbours of each point: the graph that
    ``knn_graph(X, maxk)`` builds (up to the order of exactly tied neighbours)."""
    if not 1 <= maxk <= graph.maxk:
        raise GeometryError(f"cannot truncate a graph of maxk={graph.maxk} to {maxk}")
    return KnnGraph(
        distances=graph.distances[:, : maxk + 1],
        indices=graph.indices[:, : maxk + 1],
        keep=graph.keep,
        inverse=graph.inverse,
    )


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keep, inverse): first occurrence of each distinct row (by value), in original order, and the map back.

    Rows are grouped by a hash of their bits (-0.0 counted as 0.0) and every row is then checked
    equal to its group's first: sorting N hashes instead of N rows of d values (``np.unique`` with
    ``axis=0`` took longer than the kNN graph's GEMM at d = 576). A collision of distinct rows,
    never seen, falls back to that exact sort.
    """
    X = np.asarray(X)
    _, first, inverse = np.unique(_row_hashes(X), return_index=True, return_inverse=True)
    if not _rows_equal(X, first[inverse.reshape(-1)]):
        _, first, inverse = np.unique(X + X.dtype.type(0), axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64)


_HASH_ROWS = 1024  # rows compared at a time: temporaries of 1024 x d, never N x d


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """(N,) uint64: an FNV-1a hash of each row's words (-0.0 hashed as 0.0)."""
    X = np.ascontiguousarray(X)
    words = X.view(np.dtype(f"u{X.dtype.itemsize}"))
    negative_zero = 1 << (8 * X.dtype.itemsize - 1) if X.dtype.kind == "f" else 0  # only the sign bit set
    hashes = np.empty(len(X), dtype=np.uint64)
    with numba_threads():
        _fnv_rows(words, np.uint64(negative_zero), hashes)
    return hashes


@numba.njit(parallel=True, cache=True, nogil=True)
def _fnv_rows(words, negative_zero, out):  # pragma: no cover - compiled
    for i in numba.prange(words.shape[0]):
        h = np.uint64(14695981039346656037)
        for j in range(words.shape[1]):
            word = np.uint64(words[i, j])
            if word == negative_zero:
                word = np.uint64(0)
            h = (h ^ word) * np.uint64(1099511628211)
        out[i] = h


def _rows_equal(X: np.ndarray, rows: np.ndarray) -> bool:
    """Whether every row ``i`` of ``X`` equals row ``rows[i]`` (by value)."""
    return all(
        np.array_equal(X[start : start + _HASH_ROWS], X[rows[start : start + _HASH_ROWS]])
        for start in range(0, len(X), _HASH_ROWS)
    )


def distinct_gram(X: np.ndarray, *, device: str | torch.device | None = None) -> LayerGram:
    """The layer's distinct rows and their float64 Gram (``landscape.gram``), checked: the one
    product every measure of the layer reads (``knn_graph``, ``estimators``)."""
    X = _checked(X)
    keep, inverse = distinct_rows(X)
    return layer_gram(X if len(keep) == len(X) else X[keep], keep=keep, inverse=inverse, device=device)


def knn_graph(
    X: np.ndarray,
    maxk: int = 100,
    *,
    device: str | torch.device | None = None,
    exact: bool = False,
    gram: LayerGram | None = None,
) -> KnnGraph:
    """k nearest neighbours (Euclidean) of the distinct rows of ``X`` (N, d).

    By default the distances come from the layer's float64 Gram (``gram``, that of
    ``distinct_gram(X)``, or computed here): relative error ~1e-16 of the norms, ranks as an
    exact search but where two distances differ by less than that; exact ties go to the lower
    index, so a longer graph's first maxk neighbours are this graph. Rows whose nearest
    neighbour is closer than the Gram's error bound allows (never seen but for states that
    differ in their last bits) are recomputed from coordinate differences. ``exact=True`` is
    the reference path kept for tests: a float32 GEMM's candidates, every one re-ranked by
    distances from float64 coordinate differences.
    """
    X = _checked(X)
    if exact:
        keep, inverse = distinct_rows(X)
        _enough(keep, X, maxk)
        distances, indices = _reference_neighbours(X, keep, maxk, pick_device(device))
    else:
        gram = distinct_gram(X, device=device) if gram is None else gram
        keep, inverse = gram.keep, gram.inverse
        _enough(keep, X, maxk)
        distances, indices = _gram_neighbours(gram, maxk)
    return KnnGraph(distances=distances, indices=indices, keep=keep, inverse=inverse)


def _enough(keep: np.ndarray, X: np.ndarray, maxk: int) -> None:
    if len(keep) < maxk + 1:
        raise GeometryError(f"{len(keep)} distinct points ({len(X)} rows) but maxk={maxk} needs at least {maxk + 1}")


def _checked(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise GeometryError(f"expected an (N, d) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise GeometryError(f"{int((~np.isfinite(X)).sum())} non-finite values (NaN or inf) in the data")
    return X


def _gram_neighbours(gram: LayerGram, maxk: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, maxk+1) distances and indices (the point itself first) from the Gram."""
    sq, idx = nearest_neighbours(gram, maxk)
    imprecise = torch.nonzero(_below_gram_precision(gram, sq[:, 0])).flatten()
    for row in imprecise.tolist():  # distances to every point from differences, then selected alike
        d2 = (gram.points - gram.points[row]).square().sum(1)
        d2[row] = float("inf")
        sq[row], idx[row] = (part[0] for part in smallest_by_index(d2[None], maxk))
    return _with_self(sq.clamp_min(0).sqrt(), idx)


def _below_gram_precision(gram: LayerGram, nearest_sq: torch.Tensor, tolerance: float = 1e-3) -> torch.Tensor:
    """Rows whose nearest squared distance may be off by more than ``tolerance`` (relative): the
    float64 GEMM's error on G_ii + G_jj - 2 G_ij is ~c eps64 (G_ii + G_jj), with c = 16 and the
    largest G_jj (as the float32 bound below, 2^29 times smaller)."""
    bound = 16 * torch.finfo(torch.float64).eps * (gram.sq_norms + gram.sq_norms.max())
    return nearest_sq * tolerance < bound


def _with_self(distances: torch.Tensor, indices: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Column 0: each point itself, at distance 0."""
    self_col = torch.arange(len(indices), device=indices.device)[:, None]
    return (
        torch.cat([torch.zeros_like(distances[:, :1]), distances], 1).double().cpu().numpy(),
        torch.cat([self_col, indices], 1).cpu().numpy().astype(np.int64),
    )


def _reference_neighbours(
    X: np.ndarray, keep: np.ndarray, maxk: int, dev: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """``knn_graph(exact=True)``: candidates from float32 GEMMs on centred data, each re-ranked by
    distances from float64 coordinate differences of the rows as given."""
    distinct = X if len(keep) == len(X) else X[keep]
    # Centred first: distances do not change, and the float32 GEMM loses less to cancellation
    # when the shared offset of hidden states (often larger than their spread) is gone.
    points = _centred_points(distinct, X.mean(axis=0, dtype=np.float64), dev)
    n_cand = min(len(keep) - 1, maxk + _EXTRA_CANDIDATES)
    _, cand = _candidate_neighbours(points, n_cand)
    cand = torch.sort(cand, dim=1).values  # so that exact ties go to the lower index, as in the Gram's path
    exact_points = torch.from_numpy(np.ascontiguousarray(distinct)).to(dev, torch.float64)
    sq_dist = _exact_distances(exact_points, torch.arange(len(keep), device=dev), cand).square()
    sq_dist, order = smallest_by_index(sq_dist, maxk)
    return _with_self(sq_dist.sqrt(), torch.gather(cand, 1, order))


def _centred_points(distinct: np.ndarray, mean: np.ndarray, dev: torch.device) -> torch.Tensor:
    """The distinct rows less ``mean``, float32 on ``dev`` (float32 states: subtracted in float32,
    one rounding per coordinate, without an N x d float64 copy)."""
    distinct = np.ascontiguousarray(distinct)
    centre = torch.from_numpy(mean)
    if distinct.dtype == np.float64:
        return (torch.from_numpy(distinct) - centre).float().to(dev)
    return torch.from_numpy(distinct).to(dev).float() - centre.float().to(dev)


def neighbours_of(
    X: np.ndarray, rows: np.ndarray, k: int, *, device: str | torch.device | None = None, exact: bool = False
) -> np.ndarray:
    """(len(rows), k) indices into ``X`` (N, d, distinct rows) of the k nearest other rows of each
    of ``rows``, nearest first: each of those rows against every row by the float32 GEMM, and, as
    in ``knn_graph``, the rows whose neighbours are too close for its error bound (every row with
    ``exact``) ranked by distances from coordinate differences among their k + 8 nearest. Cost:
    len(rows) x N x d, not N^2 d: the neighbours of a sample of points
    (``geometry.label_overlap_sampled``).

    >>> X = np.random.default_rng(0).normal(size=(300, 8))
    >>> bool((neighbours_of(X, np.array([5, 7]), 20, exact=True) == knn_graph(X, 20, exact=True).indices[[5, 7], 1:]).all())
    True
    """
    X = np.asarray(X)
    if not 1 <= k < len(X):
        raise GeometryError(f"{k} neighbours of {len(X)} points: need 1 <= k < N")
    dev = pick_device(device)
    points = _centred_points(X, X.mean(axis=0, dtype=np.float64), dev)
    sq_norms = (points * points).sum(1)
    n_cand = min(len(X) - 1, k + _EXTRA_CANDIDATES)
    height = max(1, min(len(rows), (1 << 28) // (4 * len(X))))
    out = np.empty((len(rows), k), dtype=np.int64)
    for a in range(0, len(rows), height):
        block = torch.as_tensor(np.asarray(rows[a : a + height]), device=dev)
        d2 = torch.addmm(sq_norms[None, :], points[block], points.T, alpha=-2.0)  # |y|^2 - 2 x.y
        d2[torch.arange(len(block), device=dev), block] = float("inf")  # not its own neighbour
        top = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False)
        distances, candidates = top.values + sq_norms[block, None], top.indices
        refine = (
            torch.ones(len(block), dtype=torch.bool, device=dev)
            if exact
            else _imprecise_rows(points[block], distances, sq_norms.max())
        )
        if refine.any():
            chosen = torch.nonzero(refine).flatten()
            distances[chosen] = _exact_distances(points, block[chosen], candidates[chosen]).square().float()
        order = torch.argsort(distances, dim=1, stable=True)[:, :k]
        out[a : a + len(block)] = torch.gather(candidates, 1, order).cpu().numpy()
    return out


def _candidate_neighbours(points: torch.Tensor, n_cand: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, n_cand) smallest squared distances to other points and their indices, unsorted.

    The distance matrix is symmetric: each block of rows is multiplied only with the points from
    its own first row on (half the N^2 d GEMM), and every product updates the neighbours of its
    rows and (above the diagonal) of its columns. On the CPU the products feed per-point
    reservoirs (``landscape.selection``); elsewhere see ``_rows_topk``.
    """
    if points.device.type != "cpu":
        return _rows_topk(points, n_cand)
    order = _locality_order(points)
    sq_dist, cand = _reservoir_topk(points[order], n_cand)
    unsorted = torch.empty_like(order)
    unsorted[order] = torch.arange(len(order))
    return sq_dist[unsorted], order[cand[unsorted]]


def _locality_order(points: torch.Tensor, sample: int = 2048, iterations: int = 10) -> torch.Tensor:
    """The points sorted along their first principal axis (power iteration on evenly spaced
    ``sample`` points, from a fixed start).

    Neighbours then tend to be near in order, and the blocks are visited so that each point is
    offered its near points first: its threshold tightens early and later distances are rejected
    by one comparison (on clustered data this halves the selection's time; the result does not
    depend on the order).
    """
    some = points[:: max(1, len(points) // sample)]
    axis = torch.ones(points.shape[1], dtype=points.dtype, device=points.device)
    for _ in range(iterations):
        axis = some.T @ (some @ axis)
        axis /= axis.norm().clamp_min(torch.finfo(points.dtype).tiny)
    return torch.argsort(points @ axis, stable=True)


def _reservoir_topk(points: torch.Tensor, n_cand: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_candidate_neighbours`` on the CPU. Row blocks go from the last to the first, and each
    one's columns from its own block on: a point is offered first the points just after it, then
    (as columns) those just before it, then farther ones."""
    n = points.shape[0]
    sq_norms = (points * points).sum(1)
    row_norms = sq_norms.numpy()
    reservoirs = Reservoirs.empty(n, n_cand)
    height = max(1, min(n, _CPU_BLOCK_ROWS))
    for a in reversed(range(0, n, height)):
        rows = slice(a, min(n, a + height))
        width = max(height, _CPU_BLOCK_BYTES // (4 * height))
        for b in range(a, n, width):
            cols = slice(b, min(n, b + width))
            # |y|^2 - 2 x.y; the kernels add |x|^2 (one pass over the product fewer)
            d2 = torch.addmm(sq_norms[None, cols], points[rows], points[cols].T, alpha=-2.0).numpy()
            if b == a:  # the block's own square: offered to its rows only (each pair once), never to itself
                own = rows.stop - a
                np.fill_diagonal(d2[:, :own], np.inf)
                reservoirs.offer_rows(d2, first=a, offset=b, row_terms=row_norms[rows])
                reservoirs.offer_columns(d2[:, own:], first=b + own, offset=a, row_terms=row_norms[rows])
            else:
                reservoirs.offer_rows(d2, first=a, offset=b, row_terms=row_norms[rows])
                reservoirs.offer_columns(d2, first=b, offset=a, row_terms=row_norms[rows])
    distances, neighbours = reservoirs.smallest()
    return torch.from_numpy(np.ascontiguousarray(distances)).clamp_min_(0), torch.from_numpy(
        np.ascontiguousarray(neighbours)
    )


def _rows_topk(points: torch.Tensor, n_cand: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_candidate_neighbours`` off the CPU: each block of rows against every point, one top-k
    per block over whole rows.

    On a GPU the GEMM is nearly free next to the selection, so the symmetric half is not worth
    its merges (folding a top-k of every 1024 x 1024 tile into running ones made the graph
    1.1-1.7x slower on an H200: ``bench/bench_gpu.py``); rows of all N columns get one top-k
    each, and only the blocks' height bounds memory.
    """
    n = points.shape[0]
    sq_norms = (points * points).sum(1)
    height = max(1, min(n, _BLOCK_BYTES // (4 * n)))
    best_d = torch.empty((n, n_cand), device=points.device)
    best_i = torch.empty((n, n_cand), dtype=torch.long, device=points.device)
    for a in range(0, n, height):
        rows = torch.arange(a, min(n, a + height), device=points.device)
        d2 = torch.addmm(sq_norms[None, :], points[rows], points.T, alpha=-2.0)  # |y|^2 - 2 x.y
        d2[torch.arange(len(rows), device=points.device), rows] = float("inf")  # not its own neighbour
        top = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False)
        best_d[rows] = top.values + sq_norms[rows, None]
        best_i[rows] = top.indices
    return best_d.clamp_min_(0), best_i


def _imprecise_rows(
    points: torch.Tensor, sq_dist: torch.Tensor, largest: torch.Tensor | None = None, tolerance: float = 1e-3
) -> torch.Tensor:
    """Rows whose nearest squared distance may be off by more than ``tolerance`` (relative).

    The GEMM's error on |x|^2 + |y|^2 - 2x.y is ~c eps32 (|x|^2 + |y|^2) with c of order one
    (blocked accumulation); we take c = 16 and the largest |y|^2 (of ``points``, or ``largest``
    when they are some rows of the data), so typical rows (measured error ~1e-5) keep the GEMM's
    distances and near-duplicate neighbourhoods are recomputed.
    """
    sq_norms = torch.linalg.vector_norm(points, dim=1).double() ** 2
    top = sq_norms.max() if largest is None else largest.double()
    bound = 16 * torch.finfo(torch.float32).eps * (sq_norms + top)
    return sq_dist.min(1).values.double() * tolerance < bound


def _exact_distances(points: torch.Tensor, rows: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """Distances from each row to its candidates, from float64 coordinate differences (no
    cancellation; relative error ~1e-16 of the distance, against ~1e-7 of the norms for a float32
    GEMM's |x|^2 + |y|^2 - 2x.y, and ~1e-7 of the distance for float32 differences, which
    misranked 12 % of the 100-neighbour lists of 4,000 concentrated points in 2,048 dimensions)."""
    out = torch.empty(cand.shape, dtype=torch.float64, device=points.device)
    n_cand, d = cand.shape[1], points.shape[1]
    step = max(1, (1 << 25) // (8 * d * n_cand))  # ~32 MB of gathered candidates at a time
    for s in range(0, len(rows), step):
        block = cand[s : s + step]
        gathered = points.index_select(0, block.reshape(-1)).view(len(block), n_cand, d).double()
        queries = points[rows[s : s + step]][:, None, :].double()
        out[s : s + step] = torch.cdist(queries, gathered, compute_mode="donot_use_mm_for_euclid_dist")[:, 0]
    return out
