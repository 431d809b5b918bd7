"""Excess description length (EDL), as the paper defines it, with its controls: pure functions of
per-example code lengths and choice scores (bits everywhere; ``K`` choices, ``n`` train rows coded
prequentially, ``m`` held-out rows).

Prequential code (MDL): each train example is coded by the model trained on the examples before
it, MDL = sum_i -log2 p_{theta_{i-1}}(y_i | x_i) (in batches: a batch is coded before its update).

EDL, held-out residual (the headline; the paper's "residual encoding cost under the final trained
model" is its *expected* loss on new examples)::

    EDL_heldout = MDL - n * mean_{j in held-out} -log2 p_{theta*}(y_j | x_j)

EDL, training-row residual (kept for comparison, named as such; a model that memorises its
training labels, random ones included, lowers this residual without knowing anything)::

    EDL_train = MDL - sum_i -log2 p_{theta*}(y_i | x_i)

Held-out labels are the true answers for a fine-tune on true labels. For the random-label
control they are what its training labels were, uniform random draws, so the held-out code is
its expectation, the mean over the K choices of -log2 p(choice) (no sampling noise).

Format-only learner (what "learning the format" alone is worth): the frozen base model's choice
scores s (n, K), recalibrated by a per-choice bias b and a temperature T, p = softmax(s / T + b):
K + 1 parameters, each fit as a MAP estimate (Gaussian prior N(0, 1) on b and log T) on every
example before the batch it codes; the same labels, order and batches as the fine-tune's first
epoch; the first batch is coded by the base model itself (b = 0, T = 1). Then::

    EDL_format_only = MDL_format_only - n * mean_{held-out} bits of its final recalibration
    gain_beyond_format = n * (held-out mean bits of the format-only final model
                              - held-out mean bits of the fine-tuned final model)

The gain beyond format is what the fine-tune knows about *new* labels that a recalibration does
not; EDL(LoRA) - EDL(format-only) would mix in how slowly LoRA learns the format.

Every total has a 95 % percentile bootstrap interval over examples (train and held-out rows
resampled independently, seeded).

Example:
    >>> rng = np.random.default_rng(0)
    >>> scores = rng.normal(size=(40, 4)); labels = rng.integers(0, 4, 40)
    >>> online, params = format_only_prequential(scores, labels, np.arange(40), bounds=batch_bounds(40, 8))
    >>> online.shape, params.shape
    ((40,), (5,))
    >>> bool(np.allclose(online[:8], choice_bits(scores[:8], labels[:8])))  # first batch: the base model
    True
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from landscape.stats import Interval, bootstrap_interval, mean_interval

LN2 = np.log(2.0)


def choice_bits(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-log2 p(label) under the K-way softmax of the choice scores; (n, K), (n,) -> (n,)."""
    log_p = log_softmax(np.asarray(scores, dtype=np.float64), axis=1)
    return -log_p[np.arange(len(labels)), np.asarray(labels)] / LN2


def expected_uniform_bits(scores: np.ndarray) -> np.ndarray:
    """(n,) expected code length of a uniformly random label: the mean over choices of -log2 p."""
    return -log_softmax(np.asarray(scores, dtype=np.float64), axis=1).mean(axis=1) / LN2


def recalibrate(scores: np.ndarray, params: np.ndarray) -> np.ndarray:
    """s / T + b, with ``params`` = (b_1..b_K, log T)."""
    return np.asarray(scores, dtype=np.float64) * np.exp(-params[-1]) + params[:-1]


def fit_recalibration(
    scores: np.ndarray, labels: np.ndarray, *, start: np.ndarray | None = None, prior: float = 1.0
) -> np.ndarray:
    """MAP bias + temperature (K + 1 parameters) on (scores (n, K), labels (n,)); N(0, prior^2) prior."""
    scores = np.asarray(scores, dtype=np.float64)
    k = scores.shape[1]
    onehot = np.eye(k)[np.asarray(labels)]

    def objective(params):
        z = recalibrate(scores, params)
        log_p = log_softmax(z, axis=1)
        nll = -(onehot * log_p).sum()
        residual = np.exp(log_p) - onehot  # d nll / d z
        grad_b = residual.sum(axis=0)
        grad_logt = -(residual * z + residual * -params[:-1]).sum()  # d z / d log T = -s / T
        penalty = 0.5 * (params**2).sum() / prior**2
        return nll + penalty, np.append(grad_b, grad_logt) + params / prior**2

    start = np.zeros(k + 1) if start is None else start
    return minimize(objective, start, jac=True, method="L-BFGS-B").x


def batch_bounds(n: int, batch_size: int) -> list[int]:
    """Ends of the consecutive batches of ``batch_size`` over n examples (the last may be short)."""
    return [min(n, end) for end in range(batch_size, n + batch_size, batch_size)]


def format_only_prequential(
    scores: np.ndarray, labels: np.ndarray, order: np.ndarray, *, bounds: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) prequential code of the format-only learner in ``order``, block by block (``bounds``:
    the end of each block in the order, the last = n), and the parameters fit on all n examples
    (its final model)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    bits = np.full(len(labels), np.nan)
    params = np.zeros(scores.shape[1] + 1)
    start = 0
    for end in bounds:
        block = order[start:end]
        bits[block] = choice_bits(recalibrate(scores[block], params), labels[block])
        seen = order[:end]
        params = fit_recalibration(scores[seen], labels[seen], start=params)
        start = end
    return bits, params


def edl_totals(
    online: np.ndarray,
    final_train: np.ndarray,
    final_heldout: np.ndarray,
    format_online: np.ndarray,
    format_heldout: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every EDL total with its interval (``<name>``, ``<name>_low``, ``<name>_high``).

    ``online``, ``final_train``, ``format_online``: (n,) bits of the train rows; ``final_heldout``,
    ``format_heldout``: (m,) held-out bits of the fine-tuned and the format-only final models."""
    n = len(online)
    stats = {
        "edl_heldout_bits": lambda i, j: online[i].sum() - n * final_heldout[j].mean(),
        "edl_train_bits": lambda i, j: online[i].sum() - final_train[i].sum(),
        "edl_format_only_bits": lambda i, j: format_online[i].sum() - n * format_heldout[j].mean(),
        "gain_beyond_format_bits": lambda i, j: n * (format_heldout[j].mean() - final_heldout[j].mean()),
        "mdl_bits": lambda i, j: online[i].sum(),
        "format_only_mdl_bits": lambda i, j: format_online[i].sum(),
    }
    out = {}
    for offset, (name, statistic) in enumerate(stats.items()):
        interval = bootstrap_interval(statistic, (n, len(final_heldout)), n_boot=n_boot, seed=seed + offset)
        out.update({name: interval.value, f"{name}_low": interval.low, f"{name}_high": interval.high})
    return out


def accuracy_gain(
    base_correct: np.ndarray, tuned_correct: np.ndarray, *, n_boot: int = 1000, seed: int = 0
) -> Interval:
    """Held-out accuracy of the fine-tune minus the base model's, paired bootstrap over rows."""
    return mean_interval(np.asarray(tuned_correct, float) - np.asarray(base_correct, float), n_boot=n_boot, seed=seed)
