"""Readouts of one layer of one condition, beside its geometry: the logit lens and linear probes.

``layer_readouts`` runs in the layer's task (``analyses.run``), on the arrays that task read:

- **lens** (every split; letter-scored tasks whose stored head reproduced the model's logits):
  ``lens_accuracy``, ``lens_logprob`` (mean log-probability of the right choice, nats, over the
  K choices), ``lens_ece``; the per-row argmax ``lens_pred`` feeds ``decisions``.
- **probes** (eval rows): one per grouping field of the task and the answer, fit on the
  fitting rows (``probe_fit``: ``train`` rows, or ``eval-halves``: two halves of the eval rows
  cross-fit; ``auto``: train rows when they hold every evaluated value of every target, see
  ``targets_train_rows_lack``) and scored on eval rows only: ``probe_accuracy[G]`` with ``_low``/``_high``,
  ``probe_majority[G]``, ``probe_control[G]``, ``probe_control_fit[G]``, ``probe_selectivity[G]``,
  ``probe_C[G]``.

``decisions`` turns a condition's per-layer lens predictions into each example's decision layer
(the first layer from which the lens answer stays the model's final answer) and, per layer, the
share of examples decided by then (``lens_decided``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from landscape import readouts
from landscape.names import ANSWER, grouped
from landscape.normed import NormParameters
from landscape.readouts import Unembedding

PROBE_FITS = ("auto", "train", "eval-halves")


@dataclass(frozen=True)
class LensInputs:
    """What the lens needs of a condition: the final norm (the last row of its norms) and the head."""

    norms: NormParameters
    head: Unembedding

    def logits(self, residual: np.ndarray) -> np.ndarray:
        last = self.norms.weight.shape[0] - 1
        return readouts.lens_logits(residual, self.norms.layer(last), self.norms.kind, self.head)


def layer_readouts(
    residual: np.ndarray,
    states: np.ndarray,
    answers: np.ndarray,
    targets: Mapping[str, np.ndarray],
    *,
    lens: LensInputs | None,
    fit_rows: np.ndarray | None,
    score_rows: np.ndarray,
    probe_fit: str,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(scalars, arrays) of one layer.

    ``residual`` (n, d): the split's rows as stored (the lens applies the final norm itself);
    ``answers`` (n,) their right choices. ``states`` (N, d): every row of the run in the analysis's
    states, ``targets`` each grouping's labels for every row; probes fit on ``fit_rows`` (``train``)
    or on halves of ``score_rows`` (``eval-halves``) and score ``score_rows``; ``fit_rows`` None:
    no probes (the train split)."""
    scalars: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    if lens is not None:
        logits = lens.logits(residual)
        scalars.update(readouts.lens_metrics(logits, answers))
        arrays["lens_pred"] = logits.argmax(axis=1).astype(np.int8)
    if fit_rows is None:
        return scalars, arrays
    for name, given in targets.items():
        labels = np.asarray(given).astype(str)
        if probe_fit == "train":
            if len(np.unique(labels[fit_rows])) < 2 or not _names_every(labels[fit_rows], labels[score_rows]):
                continue  # one label among the fitting rows, or an evaluated one they lack: no probe
            result = readouts.linear_probe(
                states[fit_rows], labels[fit_rows], states[score_rows], labels[score_rows], seed=seed
            )
        else:
            result = readouts.linear_probe_halves(states[score_rows], labels[score_rows], seed=seed)
        scalars.update(
            {
                grouped("probe_accuracy", name): result.accuracy.value,
                grouped("probe_accuracy_low", name): result.accuracy.low,
                grouped("probe_accuracy_high", name): result.accuracy.high,
                grouped("probe_majority", name): result.majority,
                grouped("probe_control", name): result.control,
                grouped("probe_control_fit", name): result.control_fit,
                grouped("probe_selectivity", name): result.selectivity,
                grouped("probe_C", name): result.C,
            }
        )
    return scalars, arrays


def targets_train_rows_lack(examples) -> list[str]:
    """The probe targets (grouping fields, then ``answer``) with an evaluated value that no train
    row holds: a run trained on other values than it evaluates (``extract --train-subjects``). A
    probe fit on those rows cannot name such a value, so its accuracy would measure the shift
    between the parts, not what the layer holds.

    Example:
        >>> from types import SimpleNamespace as Examples
        >>> ex = Examples(splits=np.array(["eval", "eval", "train", "train"]), answers=np.array([0, 1, 1, 0]),
        ...               groups={"subject": np.array(["law", "law", "art", "art"])})
        >>> targets_train_rows_lack(ex)
        ['subject']
    """
    fit, score = examples.splits == "train", examples.splits == "eval"
    targets = {**examples.groups, ANSWER: examples.answers}
    return [name for name, values in targets.items() if not _names_every(values[fit], values[score])]


def _names_every(fit_labels: np.ndarray, score_labels: np.ndarray) -> bool:
    """Whether every label scored is among the labels fit."""
    return bool(np.isin(np.asarray(score_labels).astype(str), np.asarray(fit_labels).astype(str)).all())


def decisions(predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decision layer (N,), share decided by each layer (L+1,)) from lens predictions (L+1, N).

    Example:
        >>> layers, decided = decisions(np.array([[0, 1], [1, 1], [1, 1]]))
        >>> layers.tolist(), decided.tolist()
        ([1, 0], [0.5, 1.0, 1.0])
    """
    layers = readouts.decision_layers(predictions)
    decided = (layers[None, :] <= np.arange(len(predictions))[:, None]).mean(axis=1)
    return layers, decided
