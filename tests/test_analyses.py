"""`landscape analyze` on a tiny extracted run, and analyze_layer on synthetic layers."""

import shutil
from dataclasses import replace

import h5py
import numpy as np
import pytest

from analyses.layer import AnalysisConfig, analyze_layer, compare_layers
from analyses.run import AnalysisMismatch, run_analysis
from landscape import cli, store
from tests.helpers import SMALL, mixture, read_metrics


def test_analysis_covers_every_condition_layer_and_pair(tiny_run):
    rows = read_metrics(tiny_run)
    assert set(rows[0]) == {"split", "condition", "layer", "metric", "grouping", "value", "low", "high"}
    assert {r["split"] for r in rows} == {"eval"}  # this run has no train rows
    keys = {(r["condition"], int(r["layer"])) for r in rows}
    # layer 0 is one point repeated: its pair comparison is skipped and has no metrics
    assert keys == {(c, layer) for c in ("0shot", "1shot") for layer in range(4)} | {
        ("0shot~1shot", layer) for layer in (1, 2, 3)
    }
    value = {
        (r["condition"], int(r["layer"]), r["metric"] + (f"[{r['grouping']}]" if r["grouping"] else "")): float(
            r["value"]
        )
        for r in rows
    }
    for c in ("0shot", "1shot"):
        assert value[(c, 0, "n_distinct")] == 1.0  # the embedding of ':' is the same for every prompt
        assert (c, 0, "ari[subject]") not in value
        for layer in (1, 2, 3):
            assert value[(c, layer, "n_distinct")] == 36
            assert value[(c, layer, "id_2nn")] > 0 and value[(c, layer, "n_clusters")] >= 1
            assert -1 <= value[(c, layer, "ari[subject]")] <= 1
            assert 0 <= value[(c, layer, "label_overlap[subject]")] <= 1
    for layer in (1, 2, 3):
        assert 0 <= value[("0shot~1shot", layer, "data_overlap")] <= 1
    with h5py.File(tiny_run / "analysis.h5", "r") as f:
        _, arrays, skipped = store.analysis.read_result(f, store.analysis.result_path("1shot", 2))
        assert skipped == "" and arrays["cluster"].shape == (36,) and arrays["knn"].shape == (36, 11)
        np.testing.assert_array_equal(arrays["rows"], np.arange(36))
        assert arrays["gride_ids"].shape == arrays["gride_scales"].shape == (4,)  # ranks 1, 2, 4, 8
        assert "1 distinct points" in store.analysis.read_result(f, store.analysis.result_path("0shot", 0))[2]


def test_rerun_skips_and_other_settings_are_refused(tiny_run):
    with h5py.File(tiny_run / "analysis.h5", "a") as f:  # as if killed while writing this layer
        del f[store.analysis.result_path("1shot", 3)]
    before = read_metrics(tiny_run)
    run_analysis(tiny_run, SMALL, progress=False)
    assert read_metrics(tiny_run) == before
    with pytest.raises(AnalysisMismatch, match="maxk=20, not 15"):
        run_analysis(tiny_run, AnalysisConfig(maxk=15, gride_range=15, density_k=8, overlap_k=10), progress=False)


def test_a_condition_extracted_again_is_analysed_again(tiny_run, tmp_path):
    """A re-extracted condition (new instance) has its results, pairs and correlations redone:
    the re-run equals an analysis of the new file from scratch, not the stale numbers."""
    copy, fresh = tmp_path / "copy", tmp_path / "fresh"
    copy.mkdir(), fresh.mkdir()
    shutil.copy(tiny_run / "hidden.h5", copy / "hidden.h5")
    shutil.copy(tiny_run / "analysis.h5", copy / "analysis.h5")
    with h5py.File(copy / "hidden.h5", "a") as f:  # as `extract --overwrite` would leave it: other states
        group = store.hidden.get_condition(f, "1shot")
        group["hidden"][...] = group["hidden"][...][:, ::-1]
        group.attrs["instance"] = "re-extracted"
    shutil.copy(copy / "hidden.h5", fresh / "hidden.h5")
    run_analysis(fresh, SMALL, progress=False)
    run_analysis(copy, SMALL, progress=False)
    assert read_metrics(copy) == read_metrics(fresh)
    assert read_metrics(copy) != read_metrics(tiny_run)


def test_two_workers_give_the_same_numbers(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "hidden.h5").write_bytes((tiny_run / "hidden.h5").read_bytes())
    run_analysis(copy, SMALL, jobs=2, progress=False)
    assert read_metrics(copy) == read_metrics(tiny_run)


def test_analyze_layer_on_a_mixture_and_compare():
    X, labels = mixture(n_per=120, centers=3, seed=7)
    answers = np.random.default_rng(7).integers(
        0, 4, len(labels)
    )  # no structure (arange % 4 would be balanced in every cluster)
    config = AnalysisConfig()
    a = analyze_layer(X, {"subject": labels.astype(str), "answer": answers}, config)
    assert a.skipped == "" and a.scalars["n_clusters"] == 3 and a.scalars["ari[subject]"] == 1.0
    assert abs(a.scalars["ari[answer]"]) < 0.02 and a.scalars["label_overlap[subject]"] == 1.0
    assert a.arrays["tree_linkage"].shape == (2, 4)
    b = analyze_layer(X[:, ::-1].copy(), {"subject": labels.astype(str), "answer": answers}, config)  # same geometry
    pair = compare_layers(a, b, config)
    assert {k: v for k, v in pair.scalars.items() if "_null" not in k} == {
        "data_overlap": 1.0,
        "ari_clusters": 1.0,
        "n_pair_dropped": 0.0,
    }
    # chance levels: planted structure lies far above its null, the structure-free answers within theirs
    assert pair.scalars["data_overlap_null_high"] < 0.2 and pair.scalars["ari_clusters_null_high"] < 0.1
    assert a.scalars["ari_null_high[subject]"] < 0.1 and a.scalars["label_overlap_null_high[subject]"] < 0.5
    assert (
        a.scalars["ari_null_low[answer]"] < 0 < a.scalars["ari_null_high[answer]"]
    )  # coverage: tests/test_geometry.py
    assert (
        a.scalars["label_overlap_null_low[answer]"]
        <= a.scalars["label_overlap[answer]"]
        <= a.scalars["label_overlap_null_high[answer]"]
    )
    # the per-row shares average (by class) to the layer's label overlap
    from landscape.nulls import class_weighted_mean

    assert np.isclose(
        class_weighted_mean(a.arrays["label_overlap_rows[answer]"], answers), a.scalars["label_overlap[answer]"]
    )


def test_one_longer_graph_serves_the_layer_and_its_label_overlap(monkeypatch):
    """A class fraction reaching past maxk: the label overlap's longer graph is built once and the
    layer's graph is its start; every number equals building both graphs apart."""
    from analyses import layer

    X, labels = mixture(n_per=150, centers=4, dim=20)  # classes of 150: 0.3 x 150 = 45 neighbours > maxk 30
    config = AnalysisConfig(maxk=30, gride_range=30, overlap_k=10, id_estimators=False)
    real, built = layer.knn_graph, []
    monkeypatch.setattr(layer, "knn_graph", lambda X, k, **kw: built.append(k) or real(X, k, **kw))
    shared = analyze_layer(X, {"topic": labels}, config)
    assert built == [45] and shared.scalars["label_overlap_maxk[topic]"] == 45
    monkeypatch.setattr(layer, "_graphs", lambda X, groupings, config, gram: (real(X, config.maxk), real(X, 45)))
    apart = analyze_layer(X, {"topic": labels}, config)
    assert shared.scalars == pytest.approx(apart.scalars, nan_ok=True, rel=1e-12)
    for name, array in apart.arrays.items():
        np.testing.assert_array_equal(shared.arrays[name], array, err_msg=name)


def test_cli_analyze_errors(tmp_path, capsys):
    assert cli.main(["analyze", str(tmp_path)]) == 1
    assert "no hidden.h5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["analyze", str(tmp_path), "--Z", "nan"])


def test_incomplete_conditions_are_left_out_unless_named(tiny_run, tmp_path):
    copy = tmp_path / "partial"
    copy.mkdir()
    (copy / "hidden.h5").write_bytes((tiny_run / "hidden.h5").read_bytes())
    with h5py.File(copy / "hidden.h5", "a") as f:  # as if 1shot were still being extracted
        store.hidden.get_condition(f, "1shot").attrs["complete"] = False
    run_analysis(copy, SMALL, progress=False)
    assert {r["condition"] for r in read_metrics(copy)} == {"0shot"}
    with pytest.raises(ValueError, match=r"1shot .* is incomplete"):
        run_analysis(copy, SMALL, conditions=["1shot"], progress=False)


def test_a_train_split_too_small_for_maxk_is_skipped_and_said_so(tmp_path, tiny_model_dir, tiny_mmlu, capsys):
    from extract.icl import ExtractConfig, run_extract

    run_extract(
        ExtractConfig(
            model=str(tiny_model_dir),
            task_data=str(tiny_mmlu),
            shots=(0,),
            subjects="all",
            per_subject=12,
            demo_pool=1,
            train_per_subject=4,
            batch_size=8,
        ),
        tmp_path,
        progress=False,
    )
    capsys.readouterr()
    run_analysis(tmp_path, SMALL, progress=False)
    said = [line for line in capsys.readouterr().err.splitlines() if "train split" in line]
    assert said == [
        "the train split's 12 rows are fewer than maxk + 1 = 21: its layers are skipped "
        "(no train-row geometry, so no EDL correlations); lower --maxk to analyse them"
    ]
    with h5py.File(tmp_path / "analysis.h5") as f:
        _, _, skipped = store.analysis.read_result(f, store.analysis.result_path("0shot", 2, split="train"))
        assert "maxk=20 needs at least 21" in skipped


def test_a_sampled_label_overlap_builds_no_longer_graph_and_estimates_the_exact_one(monkeypatch):
    """``label_overlap_sample``: the layer's graph alone (maxk), the label overlap from a stratified
    sample's own neighbours; with every point sampled it is the exact number, with a few it is
    within its standard error's reach of it, and everything else is unchanged."""
    from analyses import layer
    from landscape import geometry
    from landscape.knn import neighbours_of

    rng = np.random.default_rng(3)
    X, labels = mixture(n_per=150, centers=4, dim=20, spread=0.5)
    X = X + rng.normal(scale=1.0, size=X.shape)  # overlapping classes: an overlap of 0.59
    config = AnalysisConfig(maxk=30, gride_range=30, overlap_k=10, id_estimators=False)
    exact = analyze_layer(X, {"topic": labels}, config)
    real, built = layer.knn_graph, []
    monkeypatch.setattr(layer, "knn_graph", lambda X, k, **kw: built.append(k) or real(X, k, **kw))
    sampled = analyze_layer(X, {"topic": labels}, replace(config, label_overlap_sample=120))
    assert built == [30]  # no 45-neighbour graph
    value, error = sampled.scalars["label_overlap[topic]"], sampled.scalars["label_overlap_se[topic]"]
    assert sampled.scalars["label_overlap_sample[topic]"] == 120 and sampled.scalars["label_overlap_maxk[topic]"] == 45
    assert 0 < error < 0.05 and abs(value - exact.scalars["label_overlap[topic]"]) < 4 * error
    assert 0.2 < exact.scalars["label_overlap[topic]"] < 0.9
    for name in exact.scalars:
        if not name.startswith("label_overlap"):
            assert sampled.scalars[name] == pytest.approx(exact.scalars[name], rel=1e-9, nan_ok=True), name
    every = np.arange(len(X))  # every point: the exact overlap, with no error
    full = geometry.label_overlap_sampled(neighbours_of(X, every, 45, exact=True), every, labels, class_fraction=0.3)
    assert full == (
        pytest.approx(geometry.label_overlap(real(X, 45, exact=True), labels, class_fraction=0.3), rel=1e-12),
        0.0,
    )
