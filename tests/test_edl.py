"""The EDL definitions (landscape.edl) against closed forms and planted data."""

import numpy as np
import pytest

from landscape import edl


def test_choice_bits_and_expected_uniform_bits():
    scores = np.log(np.array([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    np.testing.assert_allclose(edl.choice_bits(scores, np.array([0, 2])), [1.0, np.log2(3)])
    np.testing.assert_allclose(edl.expected_uniform_bits(scores), [(1 + 2 + 2) / 3, np.log2(3)])
    # no choice distribution beats log2 K in expectation over uniform labels
    rng = np.random.default_rng(0)
    assert (edl.expected_uniform_bits(rng.normal(size=(100, 4)) * 5) >= 2 - 1e-12).all()


def test_format_only_learner_removes_a_letter_bias_and_knows_nothing_more():
    """A base model that says 'A' (a +4 bias) over weak true signal: recalibration learns the bias
    away in the first batches; its final model beats the base on held-out rows."""
    rng = np.random.default_rng(1)
    n, m, k = 400, 400, 4
    labels, heldout = rng.integers(0, k, n), rng.integers(0, k, m)

    def scores(y):
        s = rng.normal(size=(len(y), k))
        s[np.arange(len(y)), y] += 1.0  # some real signal
        s[:, 0] += 4.0  # the letter bias
        return s

    train, test = scores(labels), scores(heldout)
    online, params = edl.format_only_prequential(train, labels, np.arange(n), bounds=edl.batch_bounds(n, 16))
    np.testing.assert_allclose(online[:16], edl.choice_bits(train[:16], labels[:16]))  # first batch: the base model
    assert online[200:].mean() < online[:16].mean() - 1.0  # the bias is learnt
    assert params[0] < -2.0  # ... as a negative bias on A
    base, recalibrated = (
        edl.choice_bits(test, heldout).mean(),
        edl.choice_bits(edl.recalibrate(test, params), heldout).mean(),
    )
    assert recalibrated < base - 1.0 and recalibrated < 2.0


def test_totals_and_their_intervals():
    rng = np.random.default_rng(2)
    online, final, heldout = rng.uniform(1, 3, 50), rng.uniform(0, 1, 50), rng.uniform(1, 2, 30)
    fmt_online, fmt_heldout = rng.uniform(1, 3, 50), rng.uniform(1.5, 2.5, 30)
    totals = edl.edl_totals(online, final, heldout, fmt_online, fmt_heldout, n_boot=200)
    assert totals["edl_heldout_bits"] == pytest.approx(online.sum() - 50 * heldout.mean())
    assert totals["edl_train_bits"] == pytest.approx((online - final).sum())
    assert totals["gain_beyond_format_bits"] == pytest.approx(50 * (fmt_heldout.mean() - heldout.mean()))
    for name in ("edl_heldout_bits", "edl_train_bits", "edl_format_only_bits", "gain_beyond_format_bits", "mdl_bits"):
        assert totals[f"{name}_low"] < totals[name] < totals[f"{name}_high"]
    same = edl.edl_totals(online, final, heldout, fmt_online, fmt_heldout, n_boot=200)
    assert same == totals  # seeded


def test_accuracy_gain_interval_is_paired():
    base = np.array([0, 1, 0, 1] * 25, dtype=float)
    gain = edl.accuracy_gain(base, base, n_boot=200)
    assert gain.value == gain.low == gain.high == 0.0
    better = edl.accuracy_gain(base, np.ones(100), n_boot=200)
    assert better.value == 0.5 and 0.35 < better.low <= better.high < 0.65
