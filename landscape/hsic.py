"""Song et al. 2012's unbiased HSIC in the two forms the similarity pass and its permutation
nulls share (``landscape.similarity``, ``landscape.similarity_nulls``): between centred linear
Grams from their Frobenius inner products and diagonals alone, and between sparse masked kernels
(CKNNA's) from their entries, many pairs at once.

Example:
    >>> import numpy as np, torch
    >>> rng = np.random.default_rng(0)
    >>> X, Y = (Z - Z.mean(axis=0) for Z in (rng.normal(size=(20, 3)), rng.normal(size=(20, 4))))
    >>> K, L = X @ X.T, Y @ Y.T
    >>> value = unbiased_hsic(torch.tensor(np.sum(K * L)), torch.tensor(np.diag(K) @ np.diag(L)),
    ...                       torch.tensor([np.trace(K), np.trace(L)]), 20)
    >>> K0, L0 = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    >>> dense = (np.sum(K0 * L0) + K0.sum() * L0.sum() / (19 * 18) - 2 / 18 * K0.sum(0) @ L0.sum(0)) / (20 * 17)
    >>> bool(np.isclose(float(value[0, 1]), dense))
    True
"""

from __future__ import annotations

import numpy as np
import torch


def unbiased_hsic(inner: torch.Tensor, diag_products: torch.Tensor, traces: torch.Tensor, n: int) -> torch.Tensor:
    """(R, R) unbiased HSIC between centred linear Grams K_a from <K_a, K_b> (``inner``), sum_i
    K_a[i, i] K_b[i, i] (``diag_products``) and their traces (R,): with centred features every row
    of K sums to 0, so the zero-diagonal K~ has row sums -diag(K) and total -trace(K)."""
    tilde_inner = inner - diag_products  # sum of K~ * L~
    value = tilde_inner + torch.outer(traces, traces) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * diag_products
    return value / (n * (n - 3))


def masked_hsic_pairs(
    pair: np.ndarray, rows: np.ndarray, cols: np.ndarray, K: np.ndarray, L: np.ndarray, *, n: int, n_pairs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased HSIC (K~, L~) and (L~, K~) of ``n_pairs`` pairs of N x N kernels with the same
    support, from their entries: entry e of pair ``pair[e]`` is (rows[e], cols[e]) and holds K[e]
    and L[e] (no diagonal entries); (n_pairs,) forward and backward (Huh et al.'s hsic_unbiased,
    whose K~ L~ term pairs (i, j) with (j, i): the masked kernels are not symmetric)."""
    pair, rows, cols = (np.asarray(a, dtype=np.int64) for a in (pair, rows, cols))
    keys = (pair * n + rows) * n + cols
    order = np.argsort(keys)
    sorted_keys, transposed_keys = keys[order], (pair * n + cols) * n + rows
    at = np.searchsorted(sorted_keys, transposed_keys)  # the transposed entry (j, i), where present
    found = sorted_keys[np.minimum(at, len(keys) - 1)] == transposed_keys if len(keys) else np.zeros(0, bool)
    transposed = np.bincount(pair[found], K[found] * L[order][at[found]], minlength=n_pairs)  # sum of K~_ij L~_ji
    col_K, col_L, row_K, row_L = (
        np.bincount(pair * n + index, weights, minlength=n_pairs * n).reshape(n_pairs, n)
        for index, weights in ((cols, K), (cols, L), (rows, K), (rows, L))
    )
    middle = np.bincount(pair, K, minlength=n_pairs) * np.bincount(pair, L, minlength=n_pairs) / ((n - 1) * (n - 2))
    forward = (transposed + middle - 2.0 / (n - 2) * np.einsum("pi,pi->p", col_K, row_L)) / (n * (n - 3))
    backward = (transposed + middle - 2.0 / (n - 2) * np.einsum("pi,pi->p", col_L, row_K)) / (n * (n - 3))
    return forward, backward
