"""The k smallest distances of every point, kept while blocks of the distance matrix stream by (CPU).

``landscape.knn`` multiplies each block of rows with the points after it (half of the symmetric
distance matrix) and offers every product to its rows and to its columns. A top-k of each
product in torch costs, at small d, several times the GEMM that made it. Here every point keeps a
reservoir of 2k slots and a threshold; a numba kernel compares each offered distance with the
threshold, so after the first blocks nearly every distance costs that one comparison. A distance
below it is appended; a full reservoir is cut back to its k smallest by a quickselect, which
tightens the threshold (faiss's ``ReservoirTopN`` does the same). Exact: what a point keeps is
the k smallest of what it was offered.

numba comes with umap-learn and scikit-dimension already; its threads follow torch's
(``torch.set_num_threads``, which the analysis workers set to one).

Example:
    >>> import numpy as np
    >>> reservoirs = Reservoirs.empty(n=3, k=1)
    >>> d2 = np.array([[np.inf, 4.0, 1.0]], dtype=np.float32)  # point 0 against points 0, 1, 2
    >>> reservoirs.offer_rows(d2, first=0, offset=0); reservoirs.offer_columns(d2[:, 1:], first=1, offset=0)
    >>> distances, indices = reservoirs.smallest()
    >>> distances[:, 0].tolist(), indices[:, 0].tolist()
    ([1.0, 4.0, 1.0], [2, 0, 0])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
import torch

# Distances compared at once (one vectorised test before any is looked at alone); when offered
# to columns, also the columns a thread owns: disjoint sets let threads append without locks.
_CHUNK = 64
# A reservoir's slots per neighbour kept: it is cut back after every k appends (3k to 6k slots
# measured no faster: fewer cuts, but thresholds that tighten later).
_SLOTS_PER_K = 2


@dataclass(frozen=True)
class Reservoirs:
    """Per point: up to 2k candidate (distance, neighbour) pairs, and the threshold below which
    a new distance can still be among its k smallest.

    distances:  (N, 2k) float32; the first ``counts[p]`` of row p are candidates.
    indices:    (N, 2k) int64, the neighbour of each candidate.
    counts:     (N,) int64.
    thresholds: (N,) float32, inf until a reservoir was first cut back.
    """

    distances: np.ndarray
    indices: np.ndarray
    counts: np.ndarray
    thresholds: np.ndarray
    k: int

    @classmethod
    def empty(cls, n: int, k: int) -> Reservoirs:
        slots = _SLOTS_PER_K * k
        return cls(
            np.empty((n, slots), dtype=np.float32),
            np.empty((n, slots), dtype=np.int64),
            np.zeros(n, dtype=np.int64),
            np.full(n, np.inf, dtype=np.float32),
            k,
        )

    def offer_rows(self, d2: np.ndarray, first: int, offset: int, row_terms: np.ndarray | None = None) -> None:
        """Offer ``d2[r, c] + row_terms[r]`` ((R, W) and (R,) float32; no terms: 0) to point
        ``first + r`` as the distance to ``offset + c``."""
        with numba_threads():
            _offer_rows(*_float32(d2, row_terms), first, offset, *self._arrays(), _CHUNK)

    def offer_columns(self, d2: np.ndarray, first: int, offset: int, row_terms: np.ndarray | None = None) -> None:
        """Offer ``d2[r, c] + row_terms[r]`` to point ``first + c`` as the distance to ``offset + r``."""
        with numba_threads():
            _offer_columns(*_float32(d2, row_terms), first, offset, *self._arrays(), _CHUNK)

    def smallest(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) distances and neighbours: each point's k smallest offered, unsorted (every
        point must have been offered at least k)."""
        if (self.counts < self.k).any():
            raise ValueError(f"a point was offered fewer than k={self.k} distances")
        with numba_threads():
            _cut_all(*self._arrays())
        return self.distances[:, : self.k], self.indices[:, : self.k]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        return self.distances, self.indices, self.counts, self.thresholds, self.k


def _float32(d2: np.ndarray, row_terms: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    d2 = np.asarray(d2, dtype=np.float32)
    return d2, np.zeros(len(d2), dtype=np.float32) if row_terms is None else np.asarray(row_terms, dtype=np.float32)


@contextmanager
def numba_threads() -> Iterator[None]:
    """numba's threads for one call: as many as torch uses (never more than numba started)."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]  # numba.config sets it at import
    try:
        yield
    finally:
        numba.set_num_threads(before)


@numba.njit(cache=True, nogil=True)
def _cut(values, neighbours, n, k):  # pragma: no cover - compiled
    """Reorder the first n pairs so the k smallest values come first (Wirth's quickselect);
    return the largest of them."""
    target = k - 1
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = values[target]
        i, j = lo, hi
        while True:
            while values[i] < pivot:
                i += 1
            while pivot < values[j]:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                neighbours[i], neighbours[j] = neighbours[j], neighbours[i]
                i += 1
                j -= 1
            if i > j:
                break
        if j < target:
            lo = i
        if target < i:
            hi = j
    return values[target]


@numba.njit(cache=True, nogil=True, inline="always")
def _append(point, value, neighbour, distances, indices, counts, thresholds, k):  # pragma: no cover - compiled
    count = counts[point]
    distances[point, count] = value
    indices[point, count] = neighbour
    count += 1
    if count == distances.shape[1]:
        thresholds[point] = _cut(distances[point], indices[point], count, k)
        count = k
    counts[point] = count


@numba.njit(parallel=True, cache=True, nogil=True, fastmath={"nnan"})
def _offer_rows(
    d2, row_terms, first, offset, distances, indices, counts, thresholds, k, chunk
):  # pragma: no cover - compiled
    rows, width = d2.shape
    for r in numba.prange(rows):
        point = first + r
        for lo in range(0, width, chunk):
            hi = min(width, lo + chunk)
            smallest = np.inf
            for c in range(lo, hi):  # a vectorised minimum: most runs of a row are rejected whole
                smallest = min(smallest, d2[r, c])
            if smallest + row_terms[r] < thresholds[point]:
                for c in range(lo, hi):
                    value = d2[r, c] + row_terms[r]
                    if value < thresholds[point]:
                        _append(point, value, offset + c, distances, indices, counts, thresholds, k)


@numba.njit(parallel=True, cache=True, nogil=True, fastmath={"nnan"})
def _offer_columns(
    d2, row_terms, first, offset, distances, indices, counts, thresholds, k, chunk
):  # pragma: no cover - compiled
    rows, width = d2.shape
    for block in numba.prange((width + chunk - 1) // chunk):
        lo = block * chunk
        hi = min(width, lo + chunk)
        tops = thresholds[first + lo : first + hi].copy()
        for r in range(rows):
            term = row_terms[r]
            hit = False
            for c in range(lo, hi):  # vectorised: does any column of this run take the distance?
                hit |= d2[r, c] + term < tops[c - lo]
            if hit:
                for c in range(lo, hi):
                    value = d2[r, c] + term
                    if value < tops[c - lo]:
                        _append(first + c, value, offset + r, distances, indices, counts, thresholds, k)
                        tops[c - lo] = thresholds[first + c]


@numba.njit(parallel=True, cache=True, nogil=True)
def _cut_all(distances, indices, counts, thresholds, k):  # pragma: no cover - compiled
    for point in numba.prange(len(counts)):
        if counts[point] > k:
            thresholds[point] = _cut(distances[point], indices[point], counts[point], k)
            counts[point] = k
