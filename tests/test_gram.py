"""The layer's float64 Gram (landscape.gram) and the kNN graph selected from it (landscape.knn)."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from landscape import estimators, gram
from landscape.knn import distinct_gram, knn_graph, truncate


def _brute_force(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    found = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(X - X.mean(0))
    return found.kneighbors(X - X.mean(0))


def test_graph_equals_an_exact_search_on_states_with_a_large_shared_offset():
    """A shared offset 1e3 times the spread (as hidden states have): a float32 product's error
    (~1e-7 of the norms) would exceed the gaps between neighbours (sklearn's float32 search on
    these rows ranks 1.4 % of them otherwise); the float64 Gram ranks them as an exact search and
    its distances are those from coordinate differences."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 40)) + 1e3 * rng.normal(size=40)
    graph = knn_graph(X, 20)
    _, indices = _brute_force(X, 20)  # sklearn's ranks, from float64 products (its distances lose ~1e-4 here)
    np.testing.assert_array_equal(graph.indices, indices)
    from_differences = np.linalg.norm(X[graph.indices] - X[:, None, :], axis=2)
    np.testing.assert_allclose(graph.distances, from_differences, rtol=1e-9)


def test_exact_ties_go_to_the_lower_index_so_a_longer_graph_starts_with_the_shorter():
    line = np.arange(60.0)[:, None] * np.ones((1, 3))
    X = np.concatenate([line, -line[1:]])  # every point but the ends has two neighbours at each distance
    short, long = knn_graph(X, 7), knn_graph(X, 15)
    np.testing.assert_array_equal(truncate(long, 7).indices, short.indices)
    assert short.indices[0].tolist() == [0, 1, 60, 2, 61, 3, 62, 4]  # 1 before 60 (= -1), 2 before 61 ...


def test_blocks_of_rows_without_a_kept_gram_give_the_same_graph():
    X = np.random.default_rng(1).normal(size=(300, 12)).astype(np.float32)
    kept = distinct_gram(X)
    rows = gram.layer_gram(X, max_bytes=0)  # too large to keep: every block of rows multiplied as needed
    assert kept.gram is not None and rows.gram is None
    for a, b in zip(gram.nearest_neighbours(kept, 25), gram.nearest_neighbours(rows, 25), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        gram.neighbourhood_grams(kept, knn_graph(X, 10).indices),
        gram.neighbourhood_grams(rows, knn_graph(X, 10).indices),
        rtol=1e-10,
        atol=1e-10,
    )


def test_the_gram_leaves_its_input_alone_and_is_the_same_each_time():
    X = np.random.default_rng(2).normal(size=(100, 6)) + 5.0
    before = X.copy()
    first, second = distinct_gram(X), distinct_gram(X)
    np.testing.assert_array_equal(X, before)
    assert np.array_equal(first.gram.numpy(), second.gram.numpy())


def test_duplicates_are_removed_before_the_gram():
    X = np.random.default_rng(3).normal(size=(50, 4))
    X[7] = X[3]
    g = distinct_gram(X)
    assert g.n_points == 49 and g.inverse[7] == g.inverse[3]
    assert knn_graph(X, 10, gram=g).n_duplicates == 1


def test_the_reference_path_agrees_with_the_gram_path():
    X = np.random.default_rng(4).normal(size=(400, 30))
    fast, reference = knn_graph(X, 15), knn_graph(X, 15, exact=True)
    np.testing.assert_array_equal(fast.indices, reference.indices)
    np.testing.assert_allclose(fast.distances, reference.distances, rtol=1e-6)


def test_id_estimators_read_the_gram_as_they_read_the_points():
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(600, 4)) @ rng.normal(size=(4, 50)) + 20).astype(np.float32)
    g = distinct_gram(X)
    graph = knn_graph(X, 25, gram=g)
    from_points, from_gram = estimators.estimate_ids(X, graph), estimators.estimate_ids(X, graph, gram=g)
    assert from_gram == pytest.approx(from_points, rel=1e-6)
    np.testing.assert_allclose(
        gram.neighbourhood_grams(g, graph.indices[:, :21]),
        estimators.neighbourhood_grams(X, graph.indices[:, :21]),
        rtol=1e-4,
        atol=1e-3,
    )


def test_the_symmetric_blocks_equal_the_full_product_a_gpu_computes():
    """On the CPU the Gram is built from the blocks on and above the diagonal; on a GPU it is one
    product: the two agree (and the CPU's is exactly symmetric)."""
    import torch

    points = torch.from_numpy(np.random.default_rng(6).normal(size=(2500, 30)))  # three blocks of 1024 rows
    blocks = gram._symmetric_gram(points)
    assert torch.equal(blocks, blocks.T)
    torch.testing.assert_close(blocks, points @ points.T, rtol=1e-12, atol=1e-12)
