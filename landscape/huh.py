"""Huh et al. 2024's preparation of a representation for mutual kNN and CKNNA ("platonic
representation", their ``compute_nearest_neighbors``): values clamped at the mean over rows of each
row's 95th percentile of |value| (their ``remove_outliers``, here per representation), rows
L2-normalised, neighbours by inner product. Blind to each row's scale.

``landscape.similarity`` compares representations with these neighbours; a layer's own task
(``analyses.run``) finds them once with ``huh_neighbours``, for every similarity group the layer
belongs to.
"""

from __future__ import annotations

import numpy as np
import torch

from landscape.devices import pick_device

OUTLIER_QUANTILE = 0.95  # Huh et al.'s feature clamp before mutual kNN and CKNNA
_BLOCK_BYTES = 1 << 27  # a block of Gram rows (128 MB)


def huh_bound(X: np.ndarray, q: float = OUTLIER_QUANTILE) -> float:
    """Huh et al.'s clamp of (N, d) features: the mean over rows of each row's ``q`` quantile of
    |value| (their ``remove_outliers``, here per representation), interpolated linearly (torch.quantile's
    default), bit for bit ``np.quantile(np.abs(X), q, axis=1).mean()`` in float64: the two order
    statistics around it selected in place along each row (np.quantile moves the axis first).

    >>> X = np.random.default_rng(0).standard_t(3, size=(50, 33))
    >>> huh_bound(X) == float(np.quantile(np.abs(X), 0.95, axis=1).mean())
    True
    """
    values = np.abs(np.asarray(X, dtype=np.float64))
    d = values.shape[1]
    position = (d - 1) * q  # numpy's virtual index of the linear method
    below = int(np.floor(position))
    above, weight = min(below + 1, d - 1), position - below
    values.partition([below, above], axis=1)
    low, high = values[:, below], values[:, above]
    gap = high - low
    # numpy's _lerp: from the nearer end, so that the result stays within [low, high]
    at = high - gap * (1 - weight) if weight >= 0.5 else low + gap * weight
    return float(at.mean())


def huh_features(X: np.ndarray, q: float = OUTLIER_QUANTILE, *, bound: float | None = None) -> np.ndarray:
    """Huh et al.'s preparation of (N, d) features for mutual kNN and CKNNA: values clamped at
    ``huh_bound`` (given, or computed from ``X`` and ``q``), then each row L2-normalised."""
    X = np.asarray(X, dtype=np.float64)
    bound = huh_bound(X, q) if bound is None else bound
    X = np.clip(X, -bound, bound)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def huh_neighbours(X: np.ndarray, k: int = 10, *, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices (N, k) int32, inner products (N, k) float64): each row's k nearest others among
    Huh et al.'s prepared features of ``X`` (N, d) (``huh_features``), nearest first, as
    ``similarity_matrices`` finds them (the same products, blocks of rows): what mutual kNN and
    CKNNA read of a representation, so that its own task can compute them once for every
    similarity group it belongs to (``huh_lists``). Rows must be distinct, as there.

    >>> from landscape.similarity import similarity_matrices
    >>> X = np.random.default_rng(0).normal(size=(50, 6))
    >>> indices, values = huh_neighbours(X, 3)
    >>> m = similarity_matrices([X, X[:, ::-1]], k=3, cknna_k=3)
    >>> given = similarity_matrices([X, X[:, ::-1]], k=3, cknna_k=3, huh_lists=[(indices, values)] * 2)
    >>> bool(np.array_equal(m.mutual_knn, given.mutual_knn)), bool(np.allclose(m.cknna, given.cknna))
    (True, True)
    """
    dev = pick_device(device)
    n = len(X)
    if not 1 <= k < n:
        raise ValueError(f"{n} rows, k={k}: need 1 <= k < n")
    huh = torch.as_tensor(huh_features(X), device=dev)
    indices = np.empty((n, k), dtype=np.int32)
    values = np.empty((n, k), dtype=np.float64)
    block = max(1, min(n, _BLOCK_BYTES // (16 * n)))  # the rows similarity_matrices takes at R <= 2
    for start in range(0, n, block):
        rows = torch.arange(start, min(n, start + block), device=dev)
        found, products = huh_top(huh, rows, k)
        indices[start : start + len(rows)] = found.cpu().numpy()
        values[start : start + len(rows)] = products.cpu().numpy()
    return indices, values


def huh_top(huh: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, inner products) of the k nearest others of ``rows`` among the prepared rows ``huh``."""
    similarities = huh[rows] @ huh.T
    similarities[torch.arange(len(rows), device=huh.device), rows] = -torch.inf
    values, indices = torch.topk(similarities, k, dim=1)
    return indices, values
