"""Runs that keep some layers (``landscape extract --layers``): what they store equals the full
run's at those layers, and the analysis and report work on whatever layers a run holds."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from analyses.run import run_analysis
from extract.finetune import FinetuneConfig, run_finetune
from extract.icl import ExtractConfig, run_extract
from figures.report import ReportConfig, run_report
from landscape import cli, reader, store
from landscape.layers import select_layers
from tests.helpers import SMALL


def _run(folder, tiny_model_dir, tiny_mmlu, layers):
    run_extract(
        ExtractConfig(
            model=str(tiny_model_dir),
            task_data=str(tiny_mmlu),
            shots=(0, 1),
            subjects="all",
            per_subject=12,
            demo_pool=2,
            train_per_subject=4,
            batch_size=8,
            layers=layers,
        ),
        folder,
        progress=False,
    )
    run_finetune(
        folder,
        FinetuneConfig(
            rank=4, alpha=8, dropout=0.0, epochs=1, batch_size=4, checkpoints=(2,), task_data=str(tiny_mmlu)
        ),
        progress=False,
    )
    run_analysis(folder, SMALL, progress=False)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    """The same tiny run twice: every layer, and every second layer (0, 2 and the last, 3)."""
    root = tmp_path_factory.mktemp("layers")
    return (
        _run(root / "all", tiny_model_dir, tiny_mmlu, None),
        _run(root / "every2", tiny_model_dir, tiny_mmlu, "every:2"),
    )


def test_a_subset_stores_those_layers_as_the_full_run_does(runs):
    full, part = runs
    with h5py.File(full / "hidden.h5", "r") as a, h5py.File(part / "hidden.h5", "r") as b:
        for name in ("0shot", "1shot", "sft", "sft@step2"):  # the fine-tunes keep the 0-shot condition's layers
            assert store.hidden.stored_layers(b, name) == [0, 2, 3] and store.hidden.n_layers(b, name) == 4
            assert store.hidden.get_condition(b, name)["hidden"].shape[0] == 3
            for layer in (0, 2, 3, -1):
                np.testing.assert_array_equal(
                    store.hidden.read_layer(a, name, layer), store.hidden.read_layer(b, name, layer)
                )
            np.testing.assert_array_equal(store.hidden.read_outputs(a, name)[0], store.hidden.read_outputs(b, name)[0])
            with pytest.raises(store.SchemaError, match=r"layer 1 of .* is not stored"):
                store.hidden.read_layer(b, name, 1)
    assert reader.info(part)["conditions"]["0shot"]["layers_stored"] == [0, 2, 3]
    assert "3 of 4 layers (0,2,3)" in reader.describe_status(reader.info(part), reader.status(part))
    assert reader.load_layer(part, "sft", -2).layer == 2


def test_the_analysis_of_a_subset_is_the_full_analysis_at_those_layers(runs):
    full, part = runs
    with h5py.File(full / "analysis.h5", "r") as a, h5py.File(part / "analysis.h5", "r") as b:
        rows_a, rows_b = {}, {}
        for rows, f in ((rows_a, a), (rows_b, b)):
            for split, name, layer, scalars, _ in store.analysis.iter_results(f):
                rows.setdefault((split, name, layer), {}).update(scalars)
        # every number the subset has (layers, decisions, pairs, similarity, correlations) is the
        # full run's at the same layer; it has nothing at the other layers
        assert {layer for _, _, layer in rows_b} == {0, 2, 3} and len(rows_b) > 30
        for key, scalars in rows_b.items():
            assert key in rows_a, key
            np.testing.assert_allclose(
                [scalars[m] for m in scalars], [rows_a[key][m] for m in scalars], rtol=1e-6, atol=1e-9, err_msg=str(key)
            )
        # the lens's decision layer: among the stored layers
        _, arrays, _ = store.analysis.read_result(b, store.analysis.decision_path("0shot", 3, split="eval"))
        assert set(np.unique(arrays["decision_layer"])) <= {0, 2, 3}
        # layer x layer similarity: the full matrices restricted to the stored layers (0 has no geometry)
        layers_a, matrices_a, _ = store.analysis.read_similarity(
            a, store.analysis.similarity_path("eval", condition="sft")
        )
        layers_b, matrices_b, _ = store.analysis.read_similarity(
            b, store.analysis.similarity_path("eval", condition="sft")
        )
        assert layers_b.tolist() == [2, 3]
        keep = [layers_a.tolist().index(layer) for layer in layers_b]
        for measure, matrix in matrices_b.items():
            np.testing.assert_allclose(matrix, matrices_a[measure][np.ix_(keep, keep)], rtol=1e-6, atol=1e-9)


def test_the_report_of_a_subset_draws_its_layers(runs):
    _, part = runs
    report = run_report(part, ReportConfig(map_method="pca", png="no", task_data=None), progress=False)
    assert report.index.is_file() and len(report.figures) > 10


def test_asking_for_a_layer_that_is_not_there(runs, capsys, tmp_path, tiny_model_dir, tiny_mmlu):
    _, part = runs
    assert (
        cli.main(
            [
                "analyze",
                str(part),
                "--layers",
                "1",
                "--maxk",
                "20",
                "--overlap-k",
                "10",
                "--density-k",
                "8",
                "--no-progress",
            ]
        )
        == 1
    )
    assert "layer 1 of 0shot is not stored (it keeps 0, 2, 3" in capsys.readouterr().err
    argv = [
        "extract",
        "--run",
        str(tmp_path / "r"),
        "--model",
        str(tiny_model_dir),
        "--task-data",
        str(tiny_mmlu),
        "--subjects",
        "all",
        "--per-subject",
        "4",
        "--no-progress",
        "--layers",
    ]
    with pytest.raises(SystemExit):
        cli.main([*argv, "every:0"])
    assert "bad layers 'every:0'" in capsys.readouterr().err
    assert cli.main([*argv, "0,9"]) == 1
    assert "layer 9 out of range: the model has layers 0..3" in capsys.readouterr().err
    assert not (tmp_path / "r" / "hidden.h5").exists()  # refused before anything is written


def test_layer_specs():
    assert select_layers("every:4", 33) == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    assert select_layers("every:5", 33)[-2:] == [30, 32]  # the last layer is always kept
    assert select_layers("last:40", 5) == [0, 1, 2, 3, 4] and select_layers("all", 3) == [0, 1, 2]
    for bad in ("every:", "first:2", "1,,2", "x"):
        with pytest.raises(ValueError, match="bad layers"):
            select_layers(bad, 5)
