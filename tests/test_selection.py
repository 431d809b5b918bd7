"""The CPU selection (landscape.selection): reservoirs keep exactly the k smallest offered."""

import numpy as np
import pytest

from landscape.selection import Reservoirs


def offered(seed: int, n: int, m: int, ties: bool) -> np.ndarray:
    """(n, m) distances in steps of 1/1024 (so adding and removing an integer is exact), optionally
    with many exact ties."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 20 if ties else 2**20, size=(n, m)) / 1024).astype(np.float32)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [1, 7, 64])
def test_rows_keep_the_k_smallest(k, ties):
    full = offered(k, n=50, m=700, ties=ties)
    reservoirs = Reservoirs.empty(n=50, k=k)
    for lo in range(0, 700, 130):  # in blocks, with row terms added by the kernel
        terms = np.arange(50, dtype=np.float32)
        reservoirs.offer_rows(full[:, lo : lo + 130] - terms[:, None], first=0, offset=lo, row_terms=terms)
    distances, neighbours = reservoirs.smallest()
    np.testing.assert_array_equal(np.sort(distances, 1), np.sort(full, 1)[:, :k])
    np.testing.assert_array_equal(np.take_along_axis(full, neighbours, 1), distances)  # each neighbour's own distance
    assert all(len(set(row)) == k for row in neighbours.tolist())  # never one neighbour twice


@pytest.mark.parametrize("ties", [False, True])
def test_columns_keep_the_k_smallest(ties):
    full = offered(3, n=900, m=200, ties=ties)  # 900 row points offered to 200 column points
    k = 30
    reservoirs = Reservoirs.empty(n=1100, k=k)
    for lo in range(0, 900, 256):
        reservoirs.offer_columns(full[lo : lo + 256], first=900, offset=lo)
    reservoirs.offer_rows(np.full((900, k), np.float32(5.0)), first=0, offset=900)  # the row points get k each
    distances, neighbours = reservoirs.smallest()
    np.testing.assert_array_equal(np.sort(distances[900:], 1), np.sort(full.T, 1)[:, :k])
    np.testing.assert_array_equal(full.T[np.arange(200)[:, None], neighbours[900:]], distances[900:])


def test_a_point_offered_too_few_is_an_error():
    reservoirs = Reservoirs.empty(n=2, k=3)
    reservoirs.offer_rows(np.ones((2, 2), dtype=np.float32), first=0, offset=0)
    with pytest.raises(ValueError, match="fewer than k=3"):
        reservoirs.smallest()
