"""Chance levels: what a measure gives at the same rows, k and clusters when the structure it
looks for is destroyed by permutation (labels shuffled for the label measures, one side's rows
shuffled for the comparison of two conditions).

A measure means little without its null: the label overlap has a floor set by the class
proportions, the data overlap one near k / N, an ARI of a few large clusters scatters around 0
by more at small N. Each null here is ``draws`` seeded permutations, summarised as their mean and
95 % range (``Null``); the per-layer analysis stores them beside the measure as
``<measure>_null`` with ``_low`` and ``_high`` (``analyses.layer``).

Example:
    >>> import numpy as np
    >>> clusters = np.repeat([0, 1], 50)
    >>> null = ari_null(clusters, clusters.copy(), draws=40, seed=0)
    >>> abs(null.mean) < 0.05, null.high < 1.0
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import ArrayLike

from landscape.geometry import _as_int_labels, data_overlap, label_overlap_rows
from landscape.names import grouped, split_grouped


@dataclass(frozen=True)
class Null:
    """A permutation null: its draws' mean and the 2.5 / 97.5 percentiles."""

    mean: float
    low: float
    high: float

    def scalars(self, metric: str) -> dict[str, float]:
        """``{<m>_null, <m>_null_low, <m>_null_high}`` for a metric name ``<m>`` or ``<m>[<grouping>]``."""
        base, grouping = split_grouped(metric)
        return {
            grouped(f"{base}_null{suffix}", grouping) if grouping else f"{base}_null{suffix}": value
            for suffix, value in (("", self.mean), ("_low", self.low), ("_high", self.high))
        }


def summarise(draws: ArrayLike) -> Null:
    """Mean and 95 % range of the finite draws (NaN everywhere when none is)."""
    values = np.asarray(draws, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return Null(np.nan, np.nan, np.nan)
    low, high = np.quantile(values, [0.025, 0.975])
    return Null(float(values.mean()), float(low), float(high))


def permutations(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) seeded permutations of range(n)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(draws)]) if draws else np.zeros((0, n), dtype=int)


def ari_null(clusters: np.ndarray, labels: np.ndarray, *, draws: int, seed: int) -> Null:
    """ARI of ``clusters`` with ``labels`` shuffled over the rows."""
    return summarise(permuted_aris(clusters, labels, permutations(len(labels), draws, seed)))


def permuted_aris(clusters: np.ndarray, labels: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """(D,) the adjusted Rand index of ``clusters`` with ``labels[perms[d]]`` for each row of
    ``perms`` (D, N): every contingency table at once (one bincount), where scikit-learn's
    ``adjusted_rand_score`` would take a call each; a shuffle keeps both margins, so only the
    tables' cells differ.

    >>> import numpy as np
    >>> from sklearn.metrics import adjusted_rand_score
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.integers(0, 3, 50), rng.integers(0, 4, 50)
    >>> perms = np.stack([rng.permutation(50) for _ in range(3)])
    >>> bool(np.allclose(permuted_aris(a, b, perms), [adjusted_rand_score(a, b[p]) for p in perms]))
    True
    """
    a, b = _as_int_labels(clusters), _as_int_labels(labels)
    perms = np.atleast_2d(perms)
    n_a, n_b, draws, n = a.max() + 1, b.max() + 1, len(perms), len(a)
    cells = (a[None, :] * n_b + b[perms]) + (np.arange(draws) * n_a * n_b)[:, None]
    table = np.bincount(cells.ravel(), minlength=draws * n_a * n_b).reshape(draws, n_a * n_b).astype(float)

    def pairs(x):  # an array of counts, or one count
        return x * (x - 1) / 2

    index = pairs(table).sum(axis=1)
    rows, cols = pairs(np.bincount(a).astype(float)).sum(), pairs(np.bincount(b).astype(float)).sum()
    expected = rows * cols / pairs(float(n))
    best = (rows + cols) / 2
    if best == expected:  # one cluster and one label, or every row alone in both: scikit-learn's 1.0
        return np.ones(draws)
    return (index - expected) / (best - expected)


def label_overlap_null(
    neighbours: np.ndarray,
    labels: np.ndarray,
    *,
    class_fraction: float,
    draws: int,
    seed: int,
    rows: np.ndarray | None = None,
) -> Null:
    """The class-weighted label overlap (``geometry.label_overlap_rows``) with the labels shuffled
    over the points: each draw keeps the neighbours and the class sizes, so it is the overlap that
    the class proportions alone give at these k_i. ``neighbours`` (m, >= k_max + 1) of the points
    ``rows`` (None: all), column 0 the point itself."""
    labels = _as_int_labels(labels)
    values = []
    for p in permutations(len(labels), draws, seed):
        shuffled = labels[p]
        shares = label_overlap_rows(neighbours, shuffled, class_fraction=class_fraction, rows=rows)
        values.append(class_weighted_mean(shares, shuffled if rows is None else shuffled[rows]))
    return summarise(values)


@overload
def class_weighted_mean(shares: np.ndarray, labels: np.ndarray, weights: None = None) -> float: ...


@overload
def class_weighted_mean(shares: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray: ...


def class_weighted_mean(
    shares: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> float | np.ndarray:
    """The mean over classes of each class's mean share (DADApy's weighting: points by 1 / class
    size); with ``weights`` (B, n), one value a row of weights (a bootstrap of the points: (B,)).
    NaN shares (points without a value) are left out."""
    labels = _as_int_labels(labels)
    shares = np.asarray(shares, dtype=float)
    w = np.ones((1, len(shares))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    finite = np.isfinite(shares)
    w = w * finite
    values = np.where(finite, shares, 0.0)
    classes = np.unique(labels[finite])
    means = []
    for c in classes:
        member = labels == c
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(w[:, member] @ values[member] / w[:, member].sum(axis=1))
    out = np.nanmean(np.stack(means), axis=0) if means else np.full(len(w), np.nan)
    return float(out[0]) if weights is None else out


def shuffled_neighbours(indices: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """The neighbour lists of a representation whose rows are reordered by ``permutation`` (row i
    of the new one is row permutation[i] of the old), in the new rows' indices: the same
    neighbourhoods, attached to other examples."""
    inverse = np.argsort(permutation)
    return inverse[np.asarray(indices)[permutation]]


def data_overlap_null(indices_a: np.ndarray, indices_b: np.ndarray, *, k: int, draws: int, seed: int) -> Null:
    """Mean data overlap of two conditions' neighbour lists (N, >= k+1) with b's rows shuffled:
    about k / (N - 1) for any two representations."""
    return summarise(
        [
            data_overlap(indices_a, shuffled_neighbours(indices_b, p), k=k).mean()
            for p in permutations(len(indices_a), draws, seed)
        ]
    )
