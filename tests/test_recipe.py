"""The paper's recipe: normed states from the stored residual, the doimo2024 preset, label
overlap at the requested class fraction, pairs with duplicate points."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from analyses.layer import RECIPES, AnalysisConfig, analyze_layer, compare_states, recipe_config
from analyses.run import run_analysis
from extract.readout import ReadoutError, norm_parameters
from landscape import cli, geometry, store
from landscape.knn import knn_graph
from landscape.normed import apply_norm
from tests.helpers import SMALL, assert_normed_equal_own


def _randomise_norms(model, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if "norm" in name or name.split(".")[-2] in ("ln_1", "ln_2", "ln_f"):
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5 + 0.3  # gains that matter


def _tiny(kind: str):
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                rms_norm_eps=1e-5,
            )
        )
    elif kind == "gemma3":
        model = Gemma3ForCausalLM(
            Gemma3TextConfig(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=8,
                sliding_window=4,
                rms_norm_eps=1e-6,
            )
        )
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=3, n_head=4, n_positions=64))
    _randomise_norms(model)
    return model.eval()


@pytest.mark.parametrize("arch,kind", [("llama", "rms"), ("gemma3", "rms_offset"), ("gpt2", "layer")])
def test_normed_states_equal_the_models_own_norm_output(arch, kind):
    # GPT-2 adds position embeddings after the input embedding that layer 0 records: from layer 1 on.
    assert_normed_equal_own(_tiny(arch), [3, 9, 4, 17, 5, 22, 8], kind, first_layer=1 if arch == "gpt2" else 0)


class ScaleOnly(torch.nn.Module):
    """A 'norm' that only scales: none of the known formulas."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(width) * 2)
        self.eps = 1e-6

    def forward(self, x):
        return x * self.weight


def test_a_norm_of_unknown_form_is_reported():
    model = _tiny("llama")
    model.model.norm = ScaleOnly(32)
    with pytest.raises(ReadoutError, match="ScaleOnly computes none of the norms"):
        norm_parameters(model)
    model = _tiny("llama")
    model.model.norm.variance_epsilon = "?"  # no epsilon it could read
    with pytest.raises(ReadoutError, match="epsilon"):
        norm_parameters(model)


def test_extraction_stores_the_norms_and_the_analysis_reads_normed_states(tiny_run, tiny):
    model, _ = tiny
    params = norm_parameters(model)
    with h5py.File(tiny_run / "hidden.h5", "r") as f:
        stored = store.readout.read_norms(f, "1shot")
        assert stored.kind == "rms" and stored.weight.shape == (4, 32)
        np.testing.assert_array_equal(stored.weight, params.weight)
        residual = store.hidden.read_layer(f, "1shot", 2)
        normed = store.hidden.read_layer(f, "1shot", 2, "normed")
    np.testing.assert_allclose(normed, apply_norm(residual, *params.layer(2), "rms"))
    assert not np.allclose(normed, residual)


def test_a_run_without_norms_says_how_to_add_them(tiny_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    with h5py.File(run / "hidden.h5", "a") as f:
        del f["conditions/0shot/norm"]
    with pytest.raises(ValueError, match="extract"):
        run_analysis(run, AnalysisConfig(**{**SMALL.to_dict(), "states": "normed"}), progress=False, force=True)


def test_doimo2024_is_the_papers_recipe():
    paper = RECIPES["doimo2024"]
    assert paper.recipe == "doimo2024"
    assert paper.states == "normed"  # input_layernorm output, gain included; the final norm's at the last layer
    assert paper.maxk == 1000 and paper.cluster_maxk == 300  # 300 for the cluster comparison and dendrograms
    assert paper.id_scale == 8  # GRIDE ranks 8 -> 16, ids[3] of the figure scripts
    assert paper.gride_range == 100 and paper.density_k == 16 and paper.Z == 1.6
    assert paper.class_fraction == 0.3 and paper.answer_class_fraction == 0.1
    assert paper.overlap_k == 30 and paper.tree_min_size == 30
    suite = RECIPES["suite"]
    assert (suite.states, suite.maxk, suite.cluster_maxk, suite.id_scale, suite.answer_class_fraction) == (
        "residual",
        100,
        None,
        16,
        0.3,
    )
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("doimo2025")


def test_cli_recipe_with_an_override_is_recorded(tiny_run, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    (run / "analysis.h5").unlink()
    # the tiny run has 36 eval rows: the paper's 1000 neighbours are lowered by hand, and recorded so
    assert (
        cli.main(
            [
                "analyze",
                str(run),
                "--recipe",
                "doimo2024",
                "--maxk",
                "20",
                "--cluster-maxk",
                "12",
                "--density-k",
                "8",
                "--overlap-k",
                "10",
                "--tree-min-size",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    with h5py.File(run / "analysis.h5", "r") as f:
        settings = store.analysis.analysis_settings(f)
        _, arrays, _ = store.analysis.read_result(f, store.analysis.result_path("1shot", 2))
    assert settings["recipe"] == "doimo2024" and settings["states"] == "normed" and settings["gride_range"] == 20
    assert settings["overrides"] == ["cluster_maxk", "density_k", "gride_range", "maxk", "overlap_k", "tree_min_size"]
    assert arrays["cluster_compared"].shape == arrays["cluster"].shape == (36,)


def test_label_overlap_keeps_the_requested_fraction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    labels = np.repeat(["a", "b"], 200)  # 0.3 x 200 = 60 neighbours, the graph keeps 20
    config = AnalysisConfig(maxk=20, gride_range=20, overlap_k=10, class_fraction=0.3, answer_class_fraction=0.1)
    result = analyze_layer(X, {"topic": labels, "answer": labels}, config)
    assert result.scalars["label_overlap_fraction[topic]"] == 0.3
    assert result.scalars["label_overlap_fraction[answer]"] == 0.1
    assert result.scalars["label_overlap_maxk[topic]"] >= 60
    reference = geometry.label_overlap(knn_graph(X, 60), labels, class_fraction=0.3)
    assert result.scalars["label_overlap[topic]"] == pytest.approx(reference, rel=1e-12)


def test_a_pair_with_one_duplicated_point_gets_numbers(tiny_run, tmp_path):
    run = tmp_path / "dup"
    shutil.copytree(tiny_run, run)
    with h5py.File(run / "hidden.h5", "a") as f:
        hidden = f["conditions/0shot/hidden"]
        layer = hidden[2]
        layer[1] = layer[0]  # one point duplicated in one condition
        hidden[2] = layer
    run_analysis(run, SMALL, progress=False, force=True)
    with h5py.File(run / "analysis.h5", "r") as f:
        scalars, arrays, skipped = store.analysis.read_result(f, store.analysis.result_path("0shot", 2, other="1shot"))
    assert skipped == "" and scalars["n_pair_dropped"] == 2.0 and 0 <= scalars["data_overlap"] <= 1
    assert np.isnan(arrays["data_overlap"][:2]).all() and np.isfinite(arrays["data_overlap"][2:]).all()


def test_compare_states_drops_duplicates_in_either_condition():
    rng = np.random.default_rng(1)
    X_a, X_b = rng.normal(size=(80, 5)), rng.normal(size=(80, 5))
    X_a[3] = X_a[7]
    X_b[10] = X_b[11] = X_b[12]
    config = AnalysisConfig(maxk=20, gride_range=20, overlap_k=10)
    clusters_b = np.arange(80) % 3
    clusters_b[[3, 7, 10, 11, 12]] = [2, 0, 2, 0, 1]  # disagree on the dropped rows only
    result = compare_states(X_a, X_b, np.arange(80) % 3, clusters_b, config)
    assert result.scalars["n_pair_dropped"] == 5 and result.scalars["ari_clusters"] == 1.0
    kept = np.setdiff1d(np.arange(80), [3, 7, 10, 11, 12])
    expected = geometry.data_overlap(knn_graph(X_a[kept], 10).indices, knn_graph(X_b[kept], 10).indices, k=10)
    np.testing.assert_allclose(result.arrays["data_overlap"][kept], expected)


def test_ablation_analyses_each_variant_through_run_analysis(tiny_run, tmp_path):
    from analyses.ablation import markdown, run_ablation

    run = tmp_path / "ab"
    shutil.copytree(tiny_run, run)
    small = dict(maxk=20, gride_range=20, density_k=8, overlap_k=10, tree_min_size=3)
    rows = run_ablation(
        run, ("0shot", "1shot"), only=["suite", "normed", "idscale8", "answer01"], settings=small, progress=False
    )
    assert [r["variant"] for r in rows] == ["suite", "normed", "idscale8", "answer01"]
    suite, normed, _, answer01 = rows
    assert suite["largest change of a layer's subject ARI"] == 0.0  # the baseline against itself
    # ...and a variant's is the largest per-layer difference of the two analyses' own numbers
    from analyses.ablation import read_profiles

    profiles = {
        v: read_profiles(run / "ablation" / v / "analysis.h5", ("0shot", "1shot"), "subject", 4)
        for v in ("suite", "normed")
    }
    expected = max(
        np.nanmax(np.abs(profiles["normed"][f"{c}:ari[subject]"] - profiles["suite"][f"{c}:ari[subject]"])[1:])
        for c in ("0shot", "1shot")
    )
    assert normed["largest change of a layer's subject ARI"] == pytest.approx(round(float(expected), 3))
    # the answer's class fraction moves only the answer's label overlap
    same = [k for k in suite if k not in ("variant", "change", "label overlap answer 0shot")]
    assert all(suite[k] == answer01[k] or (suite[k] != suite[k] and answer01[k] != answer01[k]) for k in same)
    assert (
        normed["subject ARI 0shot"] != suite["subject ARI 0shot"]
        or normed["2NN ID peak layer 0shot"] != suite["2NN ID peak layer 0shot"]
        or normed["data overlap 0shot~1shot"] != suite["data overlap 0shot~1shot"]
    )
    with h5py.File(run / "ablation" / "normed" / "analysis.h5", "r") as f:
        assert store.analysis.analysis_settings(f)["states"] == "normed"
    assert (run / "ablation" / "table.csv").is_file()
    assert markdown(rows).count("\n") == len(rows[0]) - 2 + 1
    again = run_ablation(
        run, ("0shot", "1shot"), only=["suite"], settings=small, progress=False
    )  # reused, same numbers
    assert json.dumps(again[0]) == json.dumps(suite)
