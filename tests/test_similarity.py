"""Similarity of two representations against closed forms and DADApy."""

import warnings

import numpy as np
import pytest

from landscape import similarity
from landscape.knn import knn_graph
from tests.test_analyses import tiny_run  # noqa: F401  (the module's extracted run)


def _rotation(d: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


def test_cka_is_one_under_rotation_and_scale_and_debiased_near_zero_for_independent_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20))
    for debiased in (False, True):
        assert similarity.linear_cka(X, 2.5 * X @ _rotation(20, 1), debiased=debiased) == pytest.approx(1.0, abs=1e-9)
    A, B = rng.normal(size=(100, 200)), rng.normal(size=(100, 200))  # independent, d >> N
    assert similarity.linear_cka(A, B) > 0.5  # the biased estimator is inflated here...
    assert abs(similarity.linear_cka(A, B, debiased=True)) < 0.05  # ...the debiased one is not


def test_biased_cka_matches_the_gram_matrix_form():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(50, 7)), rng.normal(size=(50, 4))
    H = np.eye(50) - 1 / 50
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    expected = np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L))
    assert similarity.linear_cka(X, Y) == pytest.approx(expected, rel=1e-10)


def test_mutual_knn_of_identical_sets_is_one_and_of_independent_ones_near_k_over_n():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 5))
    g = knn_graph(X, 10).indices
    assert similarity.mutual_knn(g, knn_graph(X @ _rotation(5, 3), 10).indices, 10) == 1.0
    h = knn_graph(rng.normal(size=(400, 5)), 10).indices
    assert similarity.mutual_knn(g, h, 10) < 0.05  # chance: 10 / 399


def test_information_imbalance_matches_dadapy_and_its_limits():
    from dadapy import MetricComparisons

    rng = np.random.default_rng(4)
    A = rng.normal(size=(300, 3))
    B = np.hstack([A[:, :1], rng.normal(size=(300, 2))])  # shares A's first coordinate only
    ours = similarity.information_imbalance(A, B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = MetricComparisons(coordinates=np.hstack([A, B]), maxk=299, verbose=False)
        theirs = data.return_inf_imb_two_selected_coords([0, 1, 2], [3, 4, 5], k=1)
    assert ours == pytest.approx(tuple(theirs), abs=1e-9)
    same = similarity.information_imbalance(A, A @ _rotation(3, 5))
    assert same == pytest.approx((2 / 300, 2 / 300))  # the nearest neighbour stays the nearest
    independent = similarity.information_imbalance(A, rng.normal(size=(300, 3)))
    assert all(0.8 < value < 1.2 for value in independent)


def test_the_analysis_compares_conditions_with_every_measure(tiny_run):
    import h5py

    from landscape import schema

    with h5py.File(tiny_run / "analysis.h5", "r") as f:
        scalars, _, skipped = schema.read_result(f, schema.result_path("0shot", 2, other="1shot"))
    assert skipped == ""
    assert 0 <= scalars["cka"] <= 1 + 1e-9 and -1 <= scalars["cka_debiased"] <= 1 + 1e-9
    assert 0 <= scalars["mutual_knn"] <= 1
    assert 0 < scalars["imbalance_a_to_b"] <= 2 and 0 < scalars["imbalance_b_to_a"] <= 2


def test_stored_neighbours_give_the_same_mutual_knn_as_a_new_search():
    from analyses.layer import AnalysisConfig, compare_representations

    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(120, 6)), rng.normal(size=(120, 6))
    config = AnalysisConfig(maxk=30, gride_range=30, overlap_k=30)
    stored = (knn_graph(X, 30).indices, knn_graph(Y, 30).indices)  # longer lists, as analyze_layer keeps them
    assert compare_representations(X, Y, config, neighbours=stored) == compare_representations(X, Y, config)
