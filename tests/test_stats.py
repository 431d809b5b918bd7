import numpy as np
import pytest
from scipy.stats import spearmanr

from landscape.stats import spearman_bootstrap


def test_rho_equals_scipy_and_ci_covers_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = 0.5 * x + rng.normal(size=300)
    r = spearman_bootstrap(x, y, n_boot=500, seed=1)
    assert r.rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert r.low < r.rho < r.high and r.n == 300
    assert r.high - r.low < 0.25
    assert spearman_bootstrap(x, y, n_boot=500, seed=1) == r  # seeded


def test_independent_data_has_ci_around_zero_and_ties_are_handled():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, 400).astype(float)  # many ties, like cluster ids or core flags
    y = rng.normal(size=400)
    r = spearman_bootstrap(x, y, n_boot=500)
    assert r.rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert r.low < 0 < r.high


def test_nan_pairs_dropped_and_degenerate_inputs():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    y = np.array([2.0, 4.0, 1.0, 8.0, np.inf])
    r = spearman_bootstrap(x, y, n_boot=50)
    assert r.n == 3 and r.rho == pytest.approx(1.0)
    assert np.isnan(spearman_bootstrap(np.ones(10), np.arange(10.0)).rho)
    with pytest.raises(ValueError):
        spearman_bootstrap(np.ones(3), np.ones(4))


def test_resample_ranks_are_the_midranks_of_each_resample():
    from scipy.stats import rankdata

    from landscape.stats import _resample_ranks

    rng = np.random.default_rng(3)
    for x in (rng.normal(size=50), rng.integers(0, 2, 50).astype(float), np.round(rng.normal(size=50), 1)):
        samples = rng.integers(0, 50, size=(200, 50))
        np.testing.assert_array_equal(_resample_ranks(x, samples), rankdata(x[samples], axis=-1))
    assert _resample_ranks(np.array([5.0, 1.0, 5.0]), np.array([[0, 0, 1]])).tolist() == [[2.5, 2.5, 1.0]]
