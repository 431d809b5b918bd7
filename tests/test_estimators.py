"""The ID estimators beside GRIDE / 2NN: planted manifolds, and skdim's own loops as the reference."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_swiss_roll

from landscape import estimators
from landscape.knn import knn_graph


def _gaussian_in_100_dims(n: int = 2000, dim: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, dim)) @ np.linalg.qr(rng.normal(size=(100, dim)))[0].T


@pytest.mark.parametrize(
    "points, dim, tolerance",
    [
        (_gaussian_in_100_dims(), 5, 1.0),  # a 5-dim Gaussian in 100 dims
        (make_swiss_roll(2000, random_state=0)[0], 2, 0.3),  # a rolled-up 2-dim sheet in 3 dims
    ],
)
def test_every_estimator_finds_the_planted_dimension(points, dim, tolerance):
    ids = estimators.estimate_ids(points, knn_graph(points, 30))
    assert set(ids) == set(estimators.ESTIMATORS)
    for name, value in ids.items():
        assert abs(value - dim) < tolerance, (name, value)


def test_batched_tle_and_local_pca_equal_skdims_pointwise_loops():
    import skdim

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 30)) + 0.05 * rng.normal(size=(300, 30))
    graph, k = knn_graph(X, 20), 12
    points = X[graph.keep]
    grams = estimators.neighbourhood_grams(points, graph.indices[:, : k + 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tle = skdim.id.TLE().fit(
            points, precomputed_knn_arrays=(graph.distances[:, 1 : k + 1], graph.indices[:, 1 : k + 1])
        )
        lpca = skdim.id.lPCA().fit_pw(points, precomputed_knn=graph.indices[:, : k + 1])
    # the neighbourhood Grams are float32 (relative error ~1e-7); the arithmetic after them is skdim's
    np.testing.assert_allclose(
        estimators.tight_local_ids(grams, graph.distances[:, 1 : k + 1]), tle.dimension_pw_, rtol=1e-5
    )
    np.testing.assert_array_equal(estimators.local_pca_ids(grams), lpca.dimension_pw_)


def test_mle_is_the_mackay_ghahramani_combination_of_levina_bickel():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 3))
    distances = knn_graph(X, 10).distances[:, 1:11]
    pointwise = (10 - 1) / np.log(distances[:, -1:] / distances[:, :-1]).sum(axis=1)  # Levina-Bickel, k-1 terms
    assert estimators.maximum_likelihood_id(distances) == pytest.approx(1 / np.mean(1 / pointwise), rel=1e-10)


def test_danco_subsamples_large_sets_and_gives_nan_on_tiny_ones():
    assert np.isnan(estimators.danco_id(np.random.default_rng(3).normal(size=(10, 4))))
    big = np.random.default_rng(4).normal(size=(estimators.DANCO_MAX_POINTS + 500, 3))
    assert abs(estimators.danco_id(big) - 3) < 0.5


def test_the_analysis_records_the_estimators_on_eval_rows(tiny_run):
    import h5py

    from landscape import store

    with h5py.File(tiny_run / "analysis.h5", "r") as f:
        scalars, _, _ = store.analysis.read_result(f, store.analysis.result_path("0shot", 2))
    for name in estimators.ESTIMATORS:
        assert scalars[name] > 0, name
