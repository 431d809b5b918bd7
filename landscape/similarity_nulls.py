"""Chance levels of the similarity measures (``landscape.similarity``): each measure but the
information imbalance between representations a and b with b's rows shuffled, its correspondence
to a's rows destroyed (a permutation null), at the same rows, k and widths; summarised as the mean
and 95 % range of ``draws`` seeded permutations (``landscape.nulls.permutations``, the same ones for
every pair of a group), computed from what ``similarity_matrices``' one pass already holds:

- **mutual kNN (both) and CKNNA**: exact draws from the neighbour lists: shuffling b's rows by
  p maps b's neighbours of row i to p^-1(knn_b[p(i)]) and their inner products to those of row
  p(i), so a draw is the measure of (A, B[p]) from scratch (tested): O(R^2 N k) a draw.
- **CKA and debiased CKA**, route "draws": exact draws <K_a, P K_b P^T> from the centred Grams,
  held when the R Grams (R x N^2 x 8 bytes) fit in half the pass's memory budget: O(R N^2)
  memory-bound work a draw, about the pass's own cost at d ~ 1,500 on a CPU (less at larger d).
- **CKA and debiased CKA**, route "moments" (the Grams do not fit: a condition's many layers at
  large N): the exact permutation mean and variance, range mean -/+ 1.96 sd. Linear CKA is the
  RV coefficient of the centred configurations, whose moments are Kazi-Aoual et al. 1995's (as
  FactoMineR's ``coeffRV`` computes them; Josse, Pages & Husson 2008); debiased CKA is <K', P L'
  P^T> / (|K'| |L'|) with K', L' the U-centred Grams (zero diagonal and row sums; Szekely &
  Rizzo 2014), whose permutation mean is 0 and variance exactly 2 / (N (N - 3)) whatever the
  data. Both are tested against every permutation of 7 rows and against draws; the normal range
  ignores the RV's skew (at N = 40 its 97.5 percentile can lie ~20 % above mean + 1.96 sd).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Y = (Z - Z.mean(axis=0) for Z in (rng.normal(size=(50, 5)), rng.normal(size=(50, 5))))
    >>> mean, variance = cka_null_moments(np.stack([(X ** 2).sum(1), (Y ** 2).sum(1)]),
    ...                                   np.array([np.sum((X @ X.T) ** 2), np.sum((Y @ Y.T) ** 2)]), 50)
    >>> round(float(mean[0, 1]), 3), round(float(np.sqrt(variance[0, 1])), 3)  # CKA of unrelated 5-d sets
    (0.089, 0.026)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from landscape.hsic import masked_hsic_pairs, unbiased_hsic
from landscape.nulls import permutations

NULL_MEASURES = ("cka", "cka_debiased", "mutual_knn", "mutual_knn_euclidean", "cknna")  # with a permutation null
NULL_QUANTILES = (2.5, 97.5)  # the null's range: percentiles of the draws
_NORMAL_975 = 1.959963984540054  # the moments route's range: mean -/+ this many sd


def null_permutations(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) the row permutations of the nulls (``landscape.nulls.permutations``): draw d
    takes b's rows in the order ``perms[d]`` (B[perms[d]]), for every pair."""
    return np.asarray(permutations(n, draws, seed), dtype=np.int64).reshape(draws, n)


def permutation_nulls(
    perms: np.ndarray,
    *,
    knn: torch.Tensor,
    huh_knn: torch.Tensor,
    huh_values: torch.Tensor,
    own: np.ndarray,
    k: int,
    cknna_k: int,
    grams: torch.Tensor | None,
    inner: torch.Tensor,
    sq: torch.Tensor,
    unbiased: torch.Tensor,
    block_bytes: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """(nulls, samples, attrs) of R representations from the pass's state: ``knn`` (R, N, k)
    Euclidean and ``huh_knn``, ``huh_values`` (R, N, >= max(k, cknna_k)) inner-product neighbours
    and their inner products, ``own`` (R,) CKNNA's denominators' terms, ``grams`` (R, N, N) the
    centred Grams or None (route "moments"), ``inner`` (R, R) their inner products, ``sq`` (R, N)
    their diagonals, ``unbiased`` (R, R) their unbiased HSICs. nulls: '<m>_null', '_null_low',
    '_null_high' (R, R), NaN diagonal; samples: each drawn measure's (draws, R, R); attrs:
    null_draws, null_route (measure -> "draws" or "moments") and, for moments, null_note."""
    R, n = sq.shape
    draws = NullDraws(n, perms, sq.device)
    samples = draws.knn_draws(knn, huh_knn, huh_values, own, k=k, cknna_k=cknna_k)
    route = dict.fromkeys(NULL_MEASURES, "draws")
    attrs = {}
    if grams is not None:
        samples.update(draws.cka_draws(grams, inner, sq, unbiased, block_bytes=block_bytes))
    else:
        route.update(cka="moments", cka_debiased="moments")
        attrs["null_note"] = (
            f"the {R} centred Grams ({R * n * n * 8 / 2**30:.3g} GiB) exceed half the memory budget: CKA's and "
            "debiased CKA's nulls are their exact permutation means, the range mean -/+ 1.96 sd of their exact "
            "permutation variances (RV coefficient: Kazi-Aoual et al. 1995; debiased: 2 / (N (N - 3)))"
        )
    nulls = summarise(samples, n, sq.cpu().numpy(), inner.diagonal().cpu().numpy())
    return nulls, samples, {"null_draws": len(perms), "null_route": route, **attrs}


class NullDraws:
    """The permutation draws of a group: draw d shuffles b's rows by ``perms[d]`` (B[perms[d]])
    for every pair a < b; entry (b, a) comes from the same draw (the same value for the symmetric
    measures; for CKNNA, Huh et al.'s cknna(B[p], A)). The diagonals are NaN. On the CPU the
    draws index numpy arrays (torch's small indexing ops are several times slower there), on the
    GPU torch tensors."""

    def __init__(self, n: int, perms: np.ndarray, device: torch.device):
        self.n, self.perms, self._device = n, perms, device

    def _permutation(self, d: int, on_cpu: bool) -> tuple:
        """(p, p^-1) of draw d, numpy arrays or tensors on the device."""
        p = self.perms[d]
        inverse = np.empty_like(p)
        inverse[p] = np.arange(self.n)
        if on_cpu:
            return p, inverse
        return torch.as_tensor(p, device=self._device), torch.as_tensor(inverse, device=self._device)

    def _mirrored(self, samples: np.ndarray) -> np.ndarray:
        upper = np.triu_indices(samples.shape[1], 1)
        samples[:, upper[1], upper[0]] = samples[:, upper[0], upper[1]]
        return samples

    def knn_draws(
        self,
        knn: torch.Tensor,
        huh_knn: torch.Tensor,
        huh_values: torch.Tensor,
        own: np.ndarray,
        *,
        k: int,
        cknna_k: int,
    ) -> dict[str, np.ndarray]:
        """Mutual kNN (both) and CKNNA draws from the pass's neighbour lists: B[p]'s neighbours of
        row i are p^-1(knn_b[p(i)]) and their inner products those of row p(i) (exact: the
        measures of (A, B[p]) from scratch, ties apart). Which of them a's row i holds too is
        looked up in an N x N table of a's neighbour slots (one, reused: its entries are set
        and cleared again per representation), O(N k) a pair."""
        R, n, huh_k = huh_knn.shape
        on_cpu = huh_knn.device.type == "cpu"
        dtype = np.uint8 if huh_k < 255 else np.int16
        # numpy arrays on the CPU (its indexing is faster there), tensors on a GPU: one code for both
        euclid_lists: Any
        huh_lists: Any
        huh_inner: Any
        table: Any = np.zeros((n, n), dtype=dtype)  # table[i, j]: 1 + j's slot among a's neighbours of i (0: none)
        rows: Any = np.arange(n)[:, None]
        slots: dict[int, Any] = {width: np.arange(1, width + 1, dtype=dtype) for width in {k, huh_k}}
        host: Callable[[Any], np.ndarray]
        nonzero: Callable[[Any], Any]
        as_index: Callable[[Any], Any]
        if on_cpu:
            euclid_lists, huh_lists, huh_inner = knn.numpy(), huh_knn.numpy(), huh_values.numpy()
            host, nonzero, as_index = np.asarray, np.nonzero, lambda x: x.astype(np.int64)
        else:
            euclid_lists, huh_lists, huh_inner = knn, huh_knn, huh_values
            host, as_index = lambda x: x.cpu().numpy(), lambda x: x.long()
            nonzero = lambda x: torch.nonzero(x, as_tuple=True)  # noqa: E731
            table, rows = torch.as_tensor(table, device=huh_knn.device), torch.as_tensor(rows, device=huh_knn.device)
            slots = {width: torch.as_tensor(v, device=huh_knn.device) for width, v in slots.items()}
        out = {m: np.full((len(self.perms), R, R), np.nan) for m in ("mutual_knn", "mutual_knn_euclidean", "cknna")}
        chunk = max(1, (1 << 25) // (n * huh_k))  # the pairs looked up at once
        for d in range(len(self.perms)):
            p, inverse = self._permutation(d, on_cpu)
            lists, values, euclidean = inverse[huh_lists[:, p]], huh_inner[:, p], inverse[euclid_lists[:, p]]
            for a in range(R - 1):
                for start in range(a + 1, R, chunk):
                    others = slice(start, min(R, start + chunk))
                    table[rows, huh_lists[a]] = slots[huh_k]
                    found = table[rows, lists[others]]  # (B, N, huh_k): a's slot (1-based) of b's t-th neighbour
                    table[rows, huh_lists[a]] = 0
                    head = found[:, :, :k]
                    shared = (head > 0) & (head <= k)
                    out["mutual_knn"][d, a, others] = host(shared.reshape(len(shared), -1).sum(1)) / (n * k)
                    head = found[:, :, :cknna_k]
                    pair, i, t = nonzero((head > 0) & (head <= cknna_k))
                    s = as_index(found[pair, i, t]) - 1  # the shared neighbour's slot in a's list
                    forward, backward = masked_hsic_pairs(
                        host(pair),
                        host(i),
                        host(lists[others][pair, i, t]),
                        host(huh_inner[a, i, s]),
                        host(values[others][pair, i, t]),
                        n=n,
                        n_pairs=others.stop - others.start,
                    )
                    scale = np.sqrt(own[a] * own[others]) + 1e-6
                    out["cknna"][d, a, others], out["cknna"][d, others, a] = forward / scale, backward / scale
                    table[rows, euclid_lists[a]] = slots[k]
                    shared = table[rows, euclidean[others]] > 0
                    table[rows, euclid_lists[a]] = 0
                    counts = host(shared.reshape(len(shared), -1).sum(1))
                    out["mutual_knn_euclidean"][d, a, others] = counts / (n * k)
        self._mirrored(out["mutual_knn"])
        self._mirrored(out["mutual_knn_euclidean"])
        return out

    def cka_draws(
        self, grams: torch.Tensor, inner: torch.Tensor, sq: torch.Tensor, unbiased: torch.Tensor, *, block_bytes: int
    ) -> dict[str, np.ndarray]:
        """CKA and debiased CKA draws from the held centred Grams: <K_a, P K_b P^T> by blocks of
        rows of the shuffled Grams (one matrix product of every pair a block); the diagonals'
        products are shuffled with them, the traces and each one's own terms stay."""
        R, n, _ = grams.shape
        traces = sq.sum(dim=1)
        scale = torch.sqrt(torch.outer(inner.diagonal(), inner.diagonal()))
        unbiased_scale = torch.sqrt(torch.outer(unbiased.diagonal(), unbiased.diagonal()))
        out = {m: np.full((len(self.perms), R, R), np.nan) for m in ("cka", "cka_debiased")}
        upper = np.triu_indices(R, 1)
        for d in range(len(self.perms)):
            p = torch.as_tensor(self.perms[d], device=grams.device)
            shuffled = _shuffled_inner(grams, p, block_bytes=block_bytes)
            diag_products = sq @ sq[:, p].T  # sum_i K_a[i, i] K_b[p(i), p(i)]
            for name, value in (
                ("cka", shuffled / scale),
                ("cka_debiased", unbiased_hsic(shuffled, diag_products, traces, n) / unbiased_scale),
            ):
                out[name][d][upper] = value.cpu().numpy()[upper]
        return {name: self._mirrored(samples) for name, samples in out.items()}


def _shuffled_inner(grams: torch.Tensor, p: torch.Tensor, *, block_bytes: int) -> torch.Tensor:
    """(R, R) [a, b] = <K_a, P K_b P^T> = sum_ij K_a[i, j] K_b[p(i), p(j)], by blocks of rows of
    the shuffled Grams; on the CPU by numpy (its indexing is several times torch's here) in blocks
    that stay in cache, on the GPU in blocks of the work arrays' size."""
    R, n, _ = grams.shape
    on_cpu = grams.device.type == "cpu"
    G: Any  # numpy on the CPU, tensors on a GPU (as order and out)
    order: Any
    out: Any
    G, order = (grams.numpy(), p.numpy()) if on_cpu else (grams, p)
    out = np.zeros((R, R)) if on_cpu else torch.zeros(R, R, dtype=grams.dtype, device=grams.device)
    block = 32 if on_cpu else max(1, min(n, block_bytes // (8 * n * R)))
    for start in range(0, n, block):
        stop = min(n, start + block)
        permuted = G[:, order[start:stop, None], order[None, :]]  # K_b[p(i), p(j)], i in the block
        out += G[:, start:stop].reshape(R, -1) @ permuted.reshape(R, -1).T
    return torch.from_numpy(out) if on_cpu else out


def cka_null_moments(sq: np.ndarray, self_inner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, R) exact permutation mean and variance of linear CKA (the RV coefficient) between
    every two of R centred configurations, from their Grams' diagonals ``sq`` (R, N) and
    tr(K^2) = ``self_inner`` (R,): Kazi-Aoual et al. 1995's moments, as FactoMineR's ``coeffRV``
    computes them (beta = tr(K)^2 / tr(K^2), delta = sum_i K_ii^2 / tr(K^2))."""
    sq, self_inner = np.asarray(sq, dtype=np.float64), np.asarray(self_inner, dtype=np.float64)
    beta = sq.sum(axis=1) ** 2 / self_inner
    delta = (sq**2).sum(axis=1) / self_inner
    alpha = n - 1 - beta
    alpha_gamma = (n - 1) * (n * (n + 1) * delta - (n - 1) * (beta + 2)) / (n - 3)  # alpha x coeffRV's gamma
    mean = np.sqrt(np.outer(beta, beta)) / (n - 1)
    variance = (
        2.0
        / ((n + 1) * (n - 1) ** 2 * (n - 2))
        * (np.outer(alpha, alpha) + (n - 3) / (2.0 * n * (n - 1)) * np.outer(alpha_gamma, alpha_gamma))
    )
    return mean, variance


def summarise(samples: dict[str, np.ndarray], n: int, sq: np.ndarray, self_inner: np.ndarray) -> dict[str, np.ndarray]:
    """'<m>_null', '_null_low', '_null_high' of every null measure: the finite draws' mean and 2.5 /
    97.5 percentiles (as ``landscape.nulls.summarise``), or (CKA, debiased CKA, not drawn) the exact
    permutation mean -/+ 1.96 sd."""
    R = len(sq)
    out = {}
    for m in NULL_MEASURES:
        if m in samples:
            with warnings.catch_warnings():  # the diagonal: no draws
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(samples[m], axis=0)
                low, high = np.nanpercentile(samples[m], NULL_QUANTILES, axis=0)
        else:
            if m == "cka":
                mean, variance = cka_null_moments(sq, self_inner, n)
            else:  # debiased CKA: <K', P L' P^T> / (|K'| |L'|) of U-centred Grams: mean 0, variance 2 / (n (n - 3))
                mean, variance = np.zeros((R, R)), np.full((R, R), 2.0 / (n * (n - 3)))
            sd = np.sqrt(np.maximum(variance, 0.0))
            low, high = mean - _NORMAL_975 * sd, mean + _NORMAL_975 * sd
        for matrix in (mean, low, high):
            np.fill_diagonal(matrix, np.nan)
        out.update({f"{m}_null": mean, f"{m}_null_low": low, f"{m}_null_high": high})
    return out
