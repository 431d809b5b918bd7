"""The math, pinned on data of known structure and against DADApy run from coordinates."""

import warnings

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from landscape import geometry, knn
from landscape.knn import GeometryError, knn_graph
from tests.helpers import mixture


def hypercube(n=2000, dim=5, ambient=30, seed=0):
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.normal(size=(ambient, ambient)))[0][:, :dim]
    return rng.uniform(size=(n, dim)) @ rotation.T


def dadapy_from_coordinates(X, maxk):
    from dadapy import Data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = Data(coordinates=X, maxk=maxk, verbose=False)
        data.compute_distances(maxk=maxk)
    return data


@pytest.fixture(params=["reservoirs", "rows top-k"])
def small_blocks(request, monkeypatch):
    """Both selections (the CPU's reservoirs, the GPU's top-k of whole rows run here on the CPU),
    on blocks small enough that 400 or 500 points span many of them."""
    monkeypatch.setattr(knn, "_CPU_BLOCK_ROWS", 64)
    monkeypatch.setattr(knn, "_CPU_BLOCK_BYTES", 4 * 64 * 150)  # 64 rows x 150 columns
    monkeypatch.setattr(knn, "_BLOCK_BYTES", 4 * 500 * 37)  # 37 rows x N=500 columns (N=400: 46 rows)
    if request.param == "rows top-k":
        monkeypatch.setattr(knn, "_candidate_neighbours", knn._rows_topk)
    return request.param


def test_knn_equals_sklearn_exact_neighbours(small_blocks):
    X = np.random.default_rng(1).normal(size=(400, 20)) * 30 + 100  # large norms: GEMM cancellation
    g = knn_graph(X, maxk=25, exact=True)
    _, ind = NearestNeighbors(n_neighbors=26).fit(X).kneighbors(X)
    np.testing.assert_array_equal(g.indices, ind)
    exact = np.linalg.norm(X[:, None, :] - X[ind], axis=-1)
    np.testing.assert_allclose(g.distances, exact, rtol=1e-6)  # float32 differences
    assert g.distances.dtype == np.float64 and g.n_duplicates == 0
    # the default keeps the GEMM's distances: the same neighbours up to float32 near-ties
    fast = knn_graph(X, maxk=25)
    np.testing.assert_allclose(fast.distances, exact, rtol=1e-4)
    assert (fast.indices != ind).mean() < 0.01


def test_knn_on_clustered_data_in_any_row_order(small_blocks):
    """The CPU path visits points along their first principal axis: the graph must not depend on
    the rows' order (a permutation of the rows permutes the graph), nor on k against the blocks."""
    X, _ = mixture(n_per=100, centers=5, dim=30)
    order = np.random.default_rng(4).permutation(len(X))
    for maxk in (5, 150):  # fewer and more neighbours than a block has rows
        g, shuffled = knn_graph(X, maxk=maxk, exact=True), knn_graph(X[order], maxk=maxk, exact=True)
        _, ind = NearestNeighbors(n_neighbors=maxk + 1).fit(X).kneighbors(X)
        assert (g.indices != ind).mean() < 1e-3  # exact up to ties at float precision
        np.testing.assert_allclose(shuffled.distances, g.distances[order], rtol=1e-6)
        assert (order[shuffled.indices] != g.indices[order]).mean() < 1e-3


def test_near_duplicates_are_recomputed_exactly():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 64)) * 10 + 1000  # large offset and norms
    X[1] = X[0] + 1e-4  # a near-duplicate: the GEMM alone would give it distance 0 (or garbage)
    g = knn_graph(X, maxk=10)
    assert g.indices[0, 1] == 1 and g.indices[1, 1] == 0
    assert g.distances[0, 1] == pytest.approx(np.linalg.norm(X[1] - X[0]), rel=1e-3)


def test_knn_removes_duplicates_and_maps_back():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(60, 4))
    X = np.concatenate([base, base[[3, 3, 10]]])
    g = knn_graph(X, maxk=5)
    assert g.n_duplicates == 3 and g.n_points == 60
    np.testing.assert_array_equal(g.keep, np.arange(60))
    np.testing.assert_array_equal(g.inverse[60:], [3, 3, 10])
    np.testing.assert_array_equal(X[g.keep[g.inverse]], X)
    assert (g.distances[:, 1:] > 0).all()


def test_distinct_rows_by_value_and_on_a_hash_collision(monkeypatch):
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 2.0], [0.0, 1.0], [1.0, 2.5]])
    keep, inverse = knn.distinct_rows(X)  # -0.0 == 0.0: rows 0, 1 and 3 are one point
    assert keep.tolist() == [0, 2, 4] and inverse.tolist() == [0, 0, 1, 0, 2]
    monkeypatch.setattr(knn, "_row_hashes", lambda X: np.zeros(len(X), dtype=np.uint64))  # every row collides
    assert [a.tolist() for a in knn.distinct_rows(X)] == [[0, 2, 4], [0, 0, 1, 0, 2]]
    Y = np.random.default_rng(0).integers(0, 3, size=(3000, 3)).astype(np.float32)  # 27 distinct rows
    keep, inverse = knn.distinct_rows(Y)
    assert len(keep) == len(np.unique(Y, axis=0)) == 27 and keep.tolist() == sorted(keep.tolist())
    np.testing.assert_array_equal(Y[keep[inverse]], Y)


def test_knn_refuses_bad_data():
    with pytest.raises(GeometryError, match="non-finite"):
        knn_graph(np.array([[0.0, np.nan], [1.0, 2.0]]), maxk=1)
    with pytest.raises(GeometryError, match="1 distinct points"):
        knn_graph(np.ones((50, 3)), maxk=10)
    with pytest.raises(GeometryError, match="needs at least 11"):
        knn_graph(np.random.default_rng(0).normal(size=(10, 3)), maxk=10)


def test_intrinsic_dimension_of_a_hypercube():
    g = knn_graph(hypercube(), maxk=100)
    id_2nn, _ = geometry.intrinsic_dimension_2nn(g)
    assert id_2nn == pytest.approx(5, abs=0.5)
    curve = geometry.intrinsic_dimension_gride(g, 100)
    np.testing.assert_array_equal(curve.scales, [1, 2, 4, 8, 16, 32])
    assert curve.ids[:3] == pytest.approx([5, 5, 5], abs=0.6)
    assert curve.at(16) == curve.ids[4] and curve.at(20) == curve.ids[4]


def test_density_peaks_recover_the_mixture():
    X, labels = mixture()
    g = knn_graph(X, maxk=100)
    peaks = geometry.density_peaks(g, geometry.intrinsic_dimension_gride(g).at(16))
    assert peaks.n_clusters == 4
    assert geometry.ari(peaks.labels, labels) == 1.0
    assert geometry.label_overlap(g, labels, class_fraction=0.3) == 1.0
    random_labels = np.random.default_rng(0).integers(0, 4, len(labels))
    assert abs(geometry.ari(peaks.labels, random_labels)) < 0.02
    assert geometry.label_overlap(g, random_labels, k=30) == pytest.approx(0.25, abs=0.05)
    assert 0.3 < peaks.core.mean() <= 1.0
    np.testing.assert_array_equal(geometry.cluster_purity(peaks.labels, labels), np.ones(len(labels)))


def test_every_metric_equals_dadapy_from_coordinates():
    X, labels = mixture(n_per=100, centers=3, sub=4, spread=3.0, seed=3)
    maxk = 60
    ours = knn_graph(X, maxk=maxk, exact=True)
    ref = dadapy_from_coordinates(X, maxk)
    np.testing.assert_array_equal(ours.indices, ref.dist_indices)
    # DADApy's own distances come from |x|^2 + |y|^2 - 2x.y: ~1e-7 off (its self-distance too)
    np.testing.assert_allclose(ours.distances, ref.distances, rtol=1e-6, atol=1e-6)

    curve = geometry.intrinsic_dimension_gride(ours, maxk)
    ids, errs, _ = ref.return_id_scaling_gride(range_max=maxk)
    np.testing.assert_allclose(curve.ids, ids, rtol=1e-5)
    np.testing.assert_allclose(curve.errors, errs, rtol=1e-5)
    assert geometry.intrinsic_dimension_2nn(ours)[0] == pytest.approx(ref.compute_id_2NN()[0], rel=1e-5)

    peaks = geometry.density_peaks(ours, curve.at(16), k=16, Z=1.6)
    ref.set_id(curve.at(16))
    ref.compute_density_kNN(k=16)
    np.testing.assert_array_equal(peaks.labels, ref.compute_clustering_ADP(Z=1.6, halo=False))
    np.testing.assert_allclose(peaks.log_density, ref.log_den, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(peaks.centers, ref.cluster_centers)
    np.testing.assert_allclose(peaks.saddle_log_density, ref.log_den_bord, rtol=1e-5, atol=1e-5)
    assert geometry.label_overlap(ours, labels, class_fraction=0.3) == pytest.approx(
        ref.return_label_overlap(labels, class_fraction=0.3), rel=1e-12
    )

    Y = X + np.random.default_rng(4).normal(scale=0.5, size=X.shape)
    ours_y = knn_graph(Y, maxk=maxk, exact=True)
    expected = ref.return_data_overlap(coordinates=Y, k=30, avg=False)
    np.testing.assert_allclose(geometry.data_overlap(ours.indices, ours_y.indices, k=30), expected)


def test_data_overlap_bounds():
    X, _ = mixture(n_per=50, centers=2)
    g = knn_graph(X, maxk=30)
    assert (geometry.data_overlap(g.indices, g.indices, k=30) == 1.0).all()
    shuffled = g.indices.copy()
    shuffled[:, 1:] = 1000 + np.argsort(np.random.default_rng(0).random(shuffled[:, 1:].shape), axis=1)
    assert (geometry.data_overlap(g.indices, shuffled, k=30) == 0.0).all()


def test_peak_tree_joins_the_closest_peaks_first():
    rng = np.random.default_rng(5)
    centers = np.array([[0.0, 0.0], [3.0, 0.0], [30.0, 0.0]])  # two near peaks, one far
    labels = np.repeat([0, 1, 2], 200)
    X = np.concatenate([rng.normal(size=(200, 2)) + c for c in centers])
    g = knn_graph(X, maxk=100)
    peaks = geometry.density_peaks(g, 2.0, k=16, Z=1.0)
    tree = geometry.peak_tree(peaks, min_size=30)
    assert len(tree.clusters) == 3 and tree.linkage.shape == (2, 4)
    first = set(tree.linkage[0, :2].astype(int))  # leaves are positions in tree.clusters
    near = {int(np.flatnonzero(tree.clusters == np.bincount(peaks.labels[labels == i]).argmax())[0]) for i in (0, 1)}
    assert first == near
    assert tree.linkage[0, 2] < tree.linkage[1, 2]


def test_permutation_nulls_cover_structure_free_values_and_exclude_planted_ones():
    """Over many structure-free labellings the observed ARI and label overlap fall within their
    nulls' 95 % range about 95 % of the time; planted classes lie above it."""
    from landscape import nulls
    from landscape.geometry import label_overlap_rows

    rng = np.random.default_rng(3)
    X = rng.normal(size=(240, 6))
    graph = knn_graph(X, 40)
    clusters = rng.integers(0, 3, len(X))
    inside_ari = inside_overlap = 0
    trials = 40
    for t in range(trials):
        labels = rng.integers(0, 4, len(X))
        ari_null = nulls.ari_null(clusters, labels, draws=40, seed=t)
        inside_ari += ari_null.low <= geometry.ari(clusters, labels) <= ari_null.high
        overlap_null = nulls.label_overlap_null(graph.indices, labels, class_fraction=0.1, draws=40, seed=t)
        observed = geometry.label_overlap(graph, labels, class_fraction=0.1)
        inside_overlap += overlap_null.low <= observed <= overlap_null.high
        assert np.isclose(
            nulls.class_weighted_mean(label_overlap_rows(graph.indices, labels, class_fraction=0.1), labels), observed
        )
    assert inside_ari >= 0.85 * trials and inside_overlap >= 0.85 * trials
    planted = np.repeat(np.arange(4), 60)
    Y = X + 6 * np.eye(6)[planted]
    planted_graph = knn_graph(Y, 40)
    null = nulls.label_overlap_null(planted_graph.indices, planted, class_fraction=0.3, draws=40, seed=0)
    assert geometry.label_overlap(planted_graph, planted, class_fraction=0.3) > null.high + 0.3


def test_data_overlap_null_is_near_k_over_n_and_a_shuffle_is_exact():
    from landscape import nulls

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    a, b = knn_graph(X, 30).indices, knn_graph(X * 3, 30).indices
    null = nulls.data_overlap_null(a, b, k=30, draws=30, seed=0)
    assert abs(null.mean - 30 / 299) < 0.01 and null.high < 0.2
    p = rng.permutation(len(X))
    # the neighbour lists of the shuffled rows are those a graph of the shuffled rows finds
    shuffled = nulls.shuffled_neighbours(b, p)
    direct = knn_graph(X[p] * 3, 30).indices
    assert (np.sort(shuffled[:, 1:], axis=1) == np.sort(direct[:, 1:], axis=1)).all()
