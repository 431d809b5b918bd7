"""A fine-tune on other subjects than the evaluated ones (``extract --train-subjects others``, the
paper's recipe), end to end on the tiny model: the same eval rows as a run fine-tuned on its own
subjects, probes not fit on rows that cannot name an evaluated subject, EDL on the other subjects'
rows, claims, and paired differences against the own-subject run."""

import h5py
import numpy as np
import pytest

from analyses.claims import evaluate_claims
from analyses.run import run_analysis
from analyses.run_view import read_run
from extract.finetune import FinetuneConfig, run_finetune
from figures.compare import PAIRED_FILE, run_compare
from landscape import reader, store
from tests.helpers import SMALL, extract_tiny

TUNE = dict(rank=4, alpha=8, dropout=0.0, lr=5e-3, epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def own_and_others(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    root = tmp_path_factory.mktemp("cross")
    folders = {}
    for name, train_subjects in (("own", None), ("others", "others")):
        folder = folders[name] = root / name
        extract_tiny(folder, tiny_model_dir, tiny_mmlu, subjects="anatomy,astronomy", train_subjects=train_subjects)
        run_finetune(folder, FinetuneConfig(**TUNE, task_data=str(tiny_mmlu)), progress=False)
        run_analysis(folder, SMALL, progress=False)
    return folders


def _examples(folder):
    with h5py.File(folder / "hidden.h5", "r") as f:
        return store.hidden.read_examples(f)


def test_the_eval_rows_are_shared_and_the_train_rows_are_the_other_subjects(own_and_others):
    own, others = (_examples(own_and_others[n]) for n in ("own", "others"))
    assert own.ids[own.splits == "eval"].tolist() == others.ids[others.splits == "eval"].tolist()
    assert set(others.first_group[others.splits == "train"]) == {"world religions"}
    assert set(own.first_group[own.splits == "train"]) == {"anatomy", "astronomy"}
    info = reader.info(own_and_others["others"])
    assert info["partition"]["train_values"] == ["world religions"]


def test_probes_and_claims_of_the_cross_subject_run(own_and_others):
    with h5py.File(own_and_others["others"] / "analysis.h5", "r") as f:
        assert store.analysis.analysis_settings(f)["probe_fit"] == "eval-halves"
    with h5py.File(own_and_others["own"] / "analysis.h5", "r") as f:
        assert store.analysis.analysis_settings(f)["probe_fit"] == "train"
    claims = {c.key: c for c in evaluate_claims(read_run(own_and_others["others"]), n_boot=100)}
    assert claims.keys() == {c.key for c in evaluate_claims(read_run(own_and_others["own"]), n_boot=100)}
    for name in ("accuracy.sft", "edl.true_gain"):  # the tiny run's answer classes are too small for the rest
        assert np.isfinite([claims[name].value, claims[name].low, claims[name].high]).all()


def test_the_two_runs_get_paired_differences(own_and_others, tmp_path):
    result = run_compare(
        [own_and_others["own"], own_and_others["others"]], tmp_path / "page", paired=[("own", "others")], n_boot=100
    )
    assert not result.notes
    text = (tmp_path / "page" / PAIRED_FILE).read_text()
    assert "own,others,sft,accuracy" in text and "own,others,0shot,accuracy" in text
