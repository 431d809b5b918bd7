"""Readouts beside the geometry: the logit lens reproduces the model's logits at the last layer,
probes read planted structure and not shuffled labels, and never see a row they score."""

import shutil

import h5py
import numpy as np
import pytest

from analyses import run as analysis_run
from analyses.layer import AnalysisConfig
from analyses.readouts import decisions, targets_train_rows_lack
from extract import conditions
from landscape import readouts, store
from landscape.readouts import Unembedding, lens_logits, linear_probe, linear_probe_halves
from tests.helpers import SMALL, assert_lens_is_the_models_logits, extract_tiny


def test_lens_at_the_last_layer_is_the_tiny_models_logits(tiny_run):
    assert_lens_is_the_models_logits(tiny_run)


def test_a_head_that_does_not_reproduce_the_logits_is_marked_unavailable(tiny_run, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    with h5py.File(run / "hidden.h5", "a") as f:
        group = store.hidden.get_condition(f, "0shot")
        del group["head"]
        store.readout.write_head(group, Unembedding(weight=np.ones((4, 32), np.float32)))  # not the model's rows
        conditions._verify_head(group, "0shot")
        assert "do not reproduce" in group["head"].attrs["unavailable"]
        with pytest.raises(store.SchemaError, match="unavailable"):
            store.readout.read_head(f, "0shot")


def test_softcap_and_bias_enter_the_lens():
    X = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    norm = (np.ones(3), None, 1e-6)
    plain = lens_logits(X, norm, "rms", Unembedding(weight=np.eye(3) * 40))
    capped = lens_logits(X, norm, "rms", Unembedding(weight=np.eye(3) * 40, bias=np.ones(3), softcap=30.0))
    np.testing.assert_allclose(capped, 30.0 * np.tanh((plain + 1) / 30.0))


def test_lens_metrics_and_decision_layers():
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]))
    m = readouts.lens_metrics(logits, np.array([0, 1, 1, 0]))
    assert m["lens_accuracy"] == 0.75
    assert m["lens_logprob"] == pytest.approx(np.mean(np.log([0.9, 0.8, 0.4, 0.5])))
    # bins: 0.9 (right), 0.8 (right), 0.6 (wrong), 0.5 (right): |1-.9| + |1-.8| + |0-.6| + |1-.5| over 4
    assert m["lens_ece"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.5) / 4)
    predictions = np.array([[2, 0, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]])
    layers, decided = decisions(predictions)
    assert layers.tolist() == [1, 2, 3] and decided.tolist() == [0.0, 1 / 3, 2 / 3, 1.0]


def test_probe_reads_planted_separable_structure_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 150)
    X = rng.normal(size=(600, 50))
    X[np.arange(600), y] += 5.0  # each class shifted along its own axis: linearly separable
    fit, score = np.arange(0, 600, 2), np.arange(1, 600, 2)
    planted = linear_probe(X[fit], y[fit], X[score], y[score])
    assert planted.accuracy.value > 0.97 and planted.selectivity > 0.6
    assert planted.majority == pytest.approx(0.25)
    shuffled = rng.permutation(y)
    chance = linear_probe(X[fit], shuffled[fit], X[score], shuffled[score])
    assert chance.accuracy.low <= 0.25 <= chance.accuracy.high
    halves = linear_probe_halves(X, y)
    assert halves.accuracy.value > 0.97


def test_probes_never_see_a_row_they_score(tiny_run, monkeypatch):
    seen = []
    real = readouts._fit_probe

    def spy(X_fit, y_fit, X_score, y_score, **kwargs):
        seen.append((X_fit.copy(), X_score.copy()))
        return real(X_fit, y_fit, X_score, y_score, **kwargs)

    monkeypatch.setattr(readouts, "_fit_probe", spy)
    hidden = str(tiny_run / "hidden.h5")
    with h5py.File(hidden, "r") as f:
        examples = store.hidden.read_examples(f)
        X = store.hidden.read_layer(f, "1shot", 2)
    eval_rows = {X[i].tobytes() for i in np.flatnonzero(examples.splits == "eval")}
    for fit in ("eval-halves",):  # the tiny run has no train rows
        seen.clear()
        result = analysis_run._task(hidden, "eval", "1shot", 2, AnalysisConfig(**{**SMALL.to_dict(), "probe_fit": fit}))
        assert "probe_accuracy[subject]" in result.scalars and seen
        for X_fit, X_score in seen:
            fitted = {row.tobytes() for row in X_fit}
            assert not fitted & {row.tobytes() for row in X_score}  # no scored row among the fitted ones
            assert fitted <= eval_rows


def test_train_rows_fit_and_eval_rows_score(tiny_model_dir, tiny_mmlu, tmp_path, monkeypatch):
    extract_tiny(tmp_path, tiny_model_dir, tiny_mmlu, shots=(0,), subjects="all")
    seen = []
    real = readouts._fit_probe
    monkeypatch.setattr(
        readouts,
        "_fit_probe",
        lambda X_fit, y_fit, X_score, y_score, **kw: (
            seen.append((X_fit.copy(), X_score.copy())),
            real(X_fit, y_fit, X_score, y_score, **kw),
        )[1],
    )
    hidden = str(tmp_path / "hidden.h5")
    with h5py.File(hidden, "r") as f:
        examples = store.hidden.read_examples(f)
        X = store.hidden.read_layer(f, "0shot", 2)
    train = {X[i].tobytes() for i in np.flatnonzero(examples.splits == "train")}
    evals = {X[i].tobytes() for i in np.flatnonzero(examples.splits == "eval")}
    analysis_run._task(hidden, "eval", "0shot", 2, AnalysisConfig(**{**SMALL.to_dict(), "probe_fit": "train"}))
    assert len(seen) == 2  # subject and answer
    for X_fit, X_score in seen:
        assert {r.tobytes() for r in X_fit} <= train and {r.tobytes() for r in X_score} <= evals


def test_probes_are_not_fit_on_rows_of_other_subjects(tiny_model_dir, tiny_mmlu, tmp_path, capsys):
    """A run trained on other subjects (--train-subjects others): a subject probe fit on its train
    rows could not name an evaluated subject, so auto cross-fits halves of the eval rows, and an
    explicit train fit probes the answer only, saying why."""
    extract_tiny(tmp_path, tiny_model_dir, tiny_mmlu, shots=(0,), subjects="anatomy,astronomy", train_subjects="others")
    hidden = str(tmp_path / "hidden.h5")
    with h5py.File(hidden, "r") as f:
        assert targets_train_rows_lack(store.hidden.read_examples(f)) == ["subject"]
    plan = analysis_run._plan(tmp_path, SMALL, None, None, None)
    assert plan.config.probe_fit == "eval-halves"
    capsys.readouterr()
    config = AnalysisConfig(**{**SMALL.to_dict(), "probe_fit": "train"})
    assert analysis_run._plan(tmp_path, config, None, None, None).config.probe_fit == "train"
    assert "lack evaluated values of subject" in capsys.readouterr().err
    result = analysis_run._task(hidden, "eval", "0shot", 2, config)
    assert "probe_accuracy[answer]" in result.scalars and "probe_accuracy[subject]" not in result.scalars
