"""What can be read from a layer: the logit lens and linear probes, on ``(N, d)`` arrays.

The **logit lens** (nostalgebraist 2020; TransformerLens, tuned-lens) applies the model's final
norm and unembedding to an intermediate residual state, as if the remaining blocks were skipped.
Only the K choice tokens' unembedding rows are needed (stored per condition in hidden.h5), so the
lens costs one (N, d) x (d, K) product per layer and no forward pass. At the last layer it is the
model's own choice logits (tested).

A **linear probe** is a multinomial logistic regression (scikit-learn) on standardised states,
fit on one set of rows and scored on others; its regularisation is chosen by cross-validation on
the fitting rows only. A control probe on shuffled labels measures what the probe's capacity
alone reaches (selectivity = accuracy - control accuracy; after Hewitt & Liang 2019, whose control
tasks give word types random labels: here rows have no shared type, so the labels are shuffled,
and the control probe's accuracy on its own training labels shows its capacity to memorise).

Example:
    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    >>> m = lens_metrics(logits, np.array([0, 1, 1]))
    >>> round(m["lens_accuracy"], 3), m["lens_logprob"] < 0
    (0.667, True)
    >>> decision_layers(np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]]))
    array([1, 0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.normed import apply_norm
from landscape.stats import Interval, mean_interval


@dataclass(frozen=True)
class Unembedding:
    """The head of the model restricted to the K choice tokens."""

    weight: np.ndarray  # (K, d)
    bias: np.ndarray | None = None  # (K,)
    softcap: float | None = None  # final logit soft-capping: c * tanh(logits / c) (Gemma 2)


def lens_logits(
    X: np.ndarray, norm: tuple[np.ndarray, np.ndarray | None, float], norm_kind: str, head: Unembedding
) -> np.ndarray:
    """(N, K) choice logits of residual states ``X`` (N, d) through the final norm and the head."""
    logits = apply_norm(X, *norm, norm_kind).astype(np.float64) @ head.weight.astype(np.float64).T
    if head.bias is not None:
        logits = logits + head.bias
    if head.softcap is not None:
        logits = head.softcap * np.tanh(logits / head.softcap)
    return logits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def expected_calibration_error(probabilities: np.ndarray, answers: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE: |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == answers
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(answers))


def lens_metrics(logits: np.ndarray, answers: np.ndarray) -> dict[str, float]:
    """Accuracy over the K choices, mean log-probability (nats) of the right one, and ECE."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64))
    answers = np.asarray(answers, dtype=np.int64)
    return {
        "lens_accuracy": float((log_p.argmax(axis=1) == answers).mean()),
        "lens_logprob": float(log_p[np.arange(len(answers)), answers].mean()),
        "lens_ece": expected_calibration_error(np.exp(log_p), answers),
    }


def decision_layers(predictions: np.ndarray) -> np.ndarray:
    """(N,) first layer from which each example's lens prediction stays its final one.

    ``predictions`` (L+1, N): the lens argmax at every layer; the last row is the model's answer.
    """
    predictions = np.asarray(predictions)
    agrees = predictions == predictions[-1]
    # stays agreeing from l on = every layer from l to the end agrees: a reversed cumulative "and"
    stays = np.flip(np.logical_and.accumulate(np.flip(agrees, axis=0), axis=0), axis=0)
    return np.argmax(stays, axis=0).astype(np.int64)


# ---------------------------------------------------------------- linear probes

PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0)  # inverse L2 strengths tried by cross-validation
# Newton-CG: on these problems (d ~ n, weak regularisation) it converges in a few Newton steps
# where lbfgs at the same tolerance stops short (measured: 2-4x faster and 0-2 points more accurate).
# C is ranked by cross-validation at a loose tolerance (the ranking is what it decides), then the
# probe and its control are fit to the tight one: half the time of a CV at the tight tolerance.
PROBE_SOLVER, PROBE_TOL, PROBE_CV_TOL = "newton-cg", 1e-4, 1e-2


@dataclass(frozen=True)
class ProbeResult:
    accuracy: Interval  # on the scored rows, with a bootstrap interval over them
    control: float  # the same probe (same C) fit on shuffled labels, scored on the scored rows' shuffled labels
    control_fit: float  # that control probe's accuracy on the shuffled labels it was fit on: its capacity to memorise
    majority: float  # predicting the fitting rows' most frequent label
    C: float  # chosen by cross-validation on the fitting rows

    @property
    def selectivity(self) -> float:
        return self.accuracy.value - self.control


def linear_probe(
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_score: np.ndarray,
    y_score: np.ndarray,
    *,
    Cs: tuple[float, ...] = PROBE_CS,
    folds: int = 3,
    seed: int = 0,
    max_iter: int = 100,
) -> ProbeResult:
    """Multinomial logistic regression on standardised states (fit rows (n, d) -> scored rows (m, d)).

    The standardisation and C are fit on the fitting rows alone (``folds``-fold cross-validation,
    stratified when every class has that many rows); the scored rows are never seen before scoring.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 100); X = rng.normal(size=(200, 5)); X[:, 0] += 4 * y
        >>> r = linear_probe(X[::2], y[::2], X[1::2], y[1::2])
        >>> r.accuracy.value > 0.95, abs(r.control - 0.5) < 0.2
        (True, True)
    """
    return _result([_fit_probe(X_fit, y_fit, X_score, y_score, Cs=Cs, folds=folds, seed=seed, max_iter=max_iter)], seed)


def linear_probe_halves(
    X: np.ndarray,
    y: np.ndarray,
    *,
    Cs: tuple[float, ...] = PROBE_CS,
    folds: int = 3,
    seed: int = 0,
    max_iter: int = 100,
) -> ProbeResult:
    """``linear_probe`` cross-fit on two seeded halves of the same rows (each half fit, the other
    scored), for runs whose only rows are the scored ones: every row is scored once, by the probe
    that never saw it."""
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = order[: len(y) // 2], order[len(y) // 2 :]
    y = np.asarray(y)
    settings = dict(Cs=Cs, folds=folds, seed=seed, max_iter=max_iter)
    return _result(
        [_fit_probe(X[a], y[a], X[b], y[b], **settings), _fit_probe(X[b], y[b], X[a], y[a], **settings)], seed
    )


@dataclass(frozen=True)
class _Fitted:
    correct: np.ndarray  # (m,) the probe's prediction is right, per scored row
    control_correct: np.ndarray  # (m,) the shuffled-label probe's
    majority_correct: np.ndarray  # (m,) the fitting rows' most frequent label is right
    control_fit: float
    C: float


def _fit_probe(X_fit, y_fit, X_score, y_score, *, Cs, folds, seed, max_iter) -> _Fitted:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    y_fit, y_score = np.asarray(y_fit), np.asarray(y_score)
    scaler = StandardScaler().fit(X_fit)
    A, B = scaler.transform(X_fit), scaler.transform(X_score)
    labels, counts = np.unique(y_fit, return_counts=True)
    splitter = (StratifiedKFold if counts.min() >= folds else KFold)(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # a weakly regularised fit may stop at max_iter; scored anyway
        warnings.simplefilter("ignore", ConvergenceWarning)
        # separable rows at weak regularisation: Newton-CG's line search ends early, the fit stands
        for message in ("The line search algorithm did not converge", "Line Search failed"):
            warnings.filterwarnings("ignore", message=message)
        C = float(
            LogisticRegressionCV(
                Cs=list(Cs),
                cv=splitter,
                max_iter=max_iter,
                tol=PROBE_CV_TOL,
                solver=PROBE_SOLVER,
                l1_ratios=(0.0,),
                scoring="accuracy",
                use_legacy_attributes=False,
            )
            .fit(A, y_fit)
            .C_
        )
        probe = LogisticRegression(C=C, max_iter=max_iter, tol=PROBE_TOL, solver=PROBE_SOLVER).fit(A, y_fit)
        # The control task: the same probe on shuffled labels, scored on independently shuffled
        # labels of the scored rows (chance in expectation); its fit on its own labels is the capacity.
        rng = np.random.default_rng(seed)
        shuffled, shuffled_score = rng.permutation(y_fit), rng.permutation(y_score)
        control = LogisticRegression(C=C, max_iter=max_iter, tol=PROBE_TOL, solver=PROBE_SOLVER).fit(A, shuffled)
    return _Fitted(
        correct=probe.predict(B) == y_score,
        control_correct=control.predict(B) == shuffled_score,
        majority_correct=y_score == labels[counts.argmax()],
        control_fit=float((control.predict(A) == shuffled).mean()),
        C=C,
    )


def _result(parts: list[_Fitted], seed: int) -> ProbeResult:
    def pooled(field: str) -> np.ndarray:
        return np.concatenate([getattr(p, field) for p in parts])

    return ProbeResult(
        accuracy=mean_interval(pooled("correct"), seed=seed),
        control=float(pooled("control_correct").mean()),
        control_fit=float(np.mean([p.control_fit for p in parts])),
        majority=float(pooled("majority_correct").mean()),
        C=float(np.exp(np.mean([np.log(p.C) for p in parts]))),  # geometric mean over the fits
    )
