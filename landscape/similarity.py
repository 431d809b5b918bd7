"""How alike two representations of the same N examples are: ``(N, d1)`` and ``(N, d2)`` in, a number out.

- **Linear CKA** (Kornblith et al. 2019) and its **debiased** form (the unbiased HSIC estimator of
  Song et al. 2012): 1 for representations equal up to rotation and isotropic scale; the biased
  form is inflated for unrelated high-dimensional data at small N, the debiased one is near 0.
- **Mutual k-nearest-neighbour alignment** (Huh et al. 2024, "platonic representation"): the
  mean share of each example's k nearest neighbours that both representations agree on, the
  same quantity as DADApy's data overlap (``geometry.data_overlap``) on Euclidean neighbours.
- **Information imbalance** (Glielmo et al. 2022, DADApy): Delta(A -> B) = 2/N x the mean rank,
  in B, of each point's nearest neighbour in A; ~0 when A's neighbourhoods predict B's, ~1 when
  they say nothing about them. Asymmetric: report both directions.

``analyses.layer.compare_representations`` applies them to two conditions at a layer.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 10))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    >>> round(linear_cka(X, 3 * X @ Q), 6), round(linear_cka(X, X @ Q, debiased=True), 6)
    (1.0, 1.0)
"""

from __future__ import annotations

import numpy as np


def _centred(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(axis=0)


def linear_cka(X: np.ndarray, Y: np.ndarray, *, debiased: bool = False) -> float:
    """Linear CKA of ``X`` (N, d1) and ``Y`` (N, d2); ``debiased``: from the unbiased HSIC."""
    X, Y = _centred(X), _centred(Y)
    if len(X) != len(Y):
        raise ValueError(f"{len(X)} and {len(Y)} rows: CKA compares the same examples")
    if not debiased:  # feature-space form: no N x N matrix
        cross = np.linalg.norm(Y.T @ X) ** 2
        return float(cross / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))
    K, L = X @ X.T, Y @ Y.T
    return float(hsic_unbiased(K, L) / np.sqrt(hsic_unbiased(K, K) * hsic_unbiased(L, L)))


def hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC of two (N, N) Gram matrices (N > 3)."""
    n = len(K)
    if n < 4:
        raise ValueError("the unbiased HSIC needs at least 4 examples")
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    ones_K, ones_L = K.sum(axis=0), L.sum(axis=0)
    value = (np.sum(K * L) + ones_K.sum() * ones_L.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_K @ ones_L)
    return float(value / (n * (n - 3)))


def mutual_knn(indices_a: np.ndarray, indices_b: np.ndarray, k: int) -> float:
    """Mean share of the k nearest neighbours two representations agree on (Huh et al. 2024),
    from kNN index arrays (N, >= k+1) with each point itself in column 0 (``KnnGraph.indices``)."""
    from landscape.geometry import data_overlap

    return float(data_overlap(indices_a, indices_b, k=k).mean())


def information_imbalance(X_a: np.ndarray, X_b: np.ndarray, *, block: int = 1024) -> tuple[float, float]:
    """(Delta(A -> B), Delta(B -> A)) with k = 1, Euclidean distances, exact ranks (blocks of rows).

    Delta(A -> B) = 2/N x mean over i of the rank in B (1 = nearest) of i's nearest neighbour in A.
    """
    A, B = (np.asarray(Z, dtype=np.float64) for Z in (X_a, X_b))
    if len(A) != len(B):
        raise ValueError(f"{len(A)} and {len(B)} rows: information imbalance compares the same examples")
    n = len(A)
    ranks_ab, ranks_ba = np.empty(n), np.empty(n)
    sq_a, sq_b = (A ** 2).sum(axis=1), (B ** 2).sum(axis=1)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        d_a = sq_a[rows, None] + sq_a[None, :] - 2 * A[rows] @ A.T
        d_b = sq_b[rows, None] + sq_b[None, :] - 2 * B[rows] @ B.T
        for d in (d_a, d_b):
            d[np.arange(len(rows)), rows] = np.inf  # a point is not its own neighbour
        nn_a, nn_b = d_a.argmin(axis=1), d_b.argmin(axis=1)
        # rank = 1 + how many points are strictly closer than the neighbour (ties share the rank)
        ranks_ab[rows] = 1 + (d_b < d_b[np.arange(len(rows)), nn_a][:, None]).sum(axis=1)
        ranks_ba[rows] = 1 + (d_a < d_a[np.arange(len(rows)), nn_b][:, None]).sum(axis=1)
    return float(2.0 / n * ranks_ab.mean()), float(2.0 / n * ranks_ba.mean())
