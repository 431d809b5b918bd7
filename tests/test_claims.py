"""The paper's claims as computations: the verdict rule, the bootstrap ARI, and planted runs whose
verdicts are known (a planted transition holds, a flat profile fails, a missing condition or too
few rows cannot tell); on a real analysed run the point values are the analysis's own numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from analyses import claims as ac
from landscape import claims as cl
from landscape import cli


def _by_key(claims):
    return {c.key: c for c in claims}


# ---------------------------------------------------------------- the pure parts


@pytest.mark.parametrize("low,high,region,expected", [
    (0.1, 0.3, cl.Region(above=0.05), cl.HOLDS),
    (-0.2, 0.01, cl.Region(above=0.05), cl.FAILS),
    (0.0, 0.2, cl.Region(above=0.05), cl.CANNOT_TELL),
    (0.4, 0.6, cl.Region(1 / 3, 2 / 3), cl.HOLDS),
    (0.7, 0.9, cl.Region(1 / 3, 2 / 3), cl.FAILS),
    (0.1, 0.9, cl.Region(1 / 3, 2 / 3), cl.CANNOT_TELL),
    (0.01, 0.1, cl.Region(below=0.15), cl.HOLDS),
    (np.nan, 0.1, cl.Region(below=0.15), cl.CANNOT_TELL),
])
def test_verdict_rule(low, high, region, expected):
    assert cl.verdict(low, high, region) == expected


def test_weighted_ari_is_sklearns_on_the_rows_drawn_once():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 300), rng.integers(0, 3, 300)
    b[:150] = a[:150] % 3  # some agreement
    keep = rng.random((4, 300)) < 0.7
    got = cl.weighted_ari(a, b, keep.astype(float))
    assert np.allclose(got, [adjusted_rand_score(a[k], b[k]) for k in keep])
    assert np.isclose(cl.weighted_ari(a, b, np.ones((1, 300)))[0], adjusted_rand_score(a, b))


def test_bootstrap_ari_of_unrelated_labellings_is_centred_on_zero():
    """Copies of a row are not paired with each other: repeated rows would lift it by ~1/N x 0.37."""
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    draws = cl.weighted_ari(a, b, cl.row_counts(200, 2000, seed=3)[1:])
    assert abs(draws.mean() - adjusted_rand_score(a, b)) < 2e-3
    assert np.allclose(cl.weighted_ari(a, a, cl.row_counts(200, 50)), 1.0)


def test_sharpest_drop_finds_the_planted_fall():
    profile = np.r_[np.full(10, 0.9), np.linspace(0.9, 0.1, 4)[1:], np.full(10, 0.1)]
    start, drop = cl.sharpest_drop(profile, window=3)
    assert start == 9 and np.isclose(drop, 0.8)
    starts, drops = cl.sharpest_drops(np.vstack([profile, profile[::-1]]), window=3)
    assert starts[0] == 9 and drops[1] <= 0


# ---------------------------------------------------------------- planted runs


def test_a_planted_transition_in_the_middle_holds():
    got = _by_key(ac.evaluate_claims(ac.planted_view(n_per_class=40, layers=16, transition=0.5), n_boot=300))
    for key in ("icl.subject_early", "transition.sharp", "transition.middle", "transition.id_peak"):
        assert got[key].verdict == cl.HOLDS, got[key]
    assert 1 / 3 <= got["transition.middle"].value <= 2 / 3
    assert got["transition.id_peak"].value < ac.PEAK_DISTANCE


def test_a_flat_profile_fails_and_so_does_a_late_fall():
    flat = _by_key(ac.evaluate_claims(ac.planted_view(n_per_class=40, layers=16, transition=1.0), n_boot=300))
    assert flat["transition.sharp"].verdict == cl.FAILS
    assert flat["transition.middle"].verdict == cl.FAILS and "no sharp fall" in flat["transition.middle"].note
    late = _by_key(ac.evaluate_claims(ac.planted_view(n_per_class=40, layers=16, transition=0.85), n_boot=300))
    assert late["transition.sharp"].verdict == cl.HOLDS
    assert late["transition.middle"].verdict == cl.FAILS and late["transition.middle"].value > 2 / 3


def test_no_subject_structure_in_5shot_fails_the_icl_claim():
    view = ac.planted_view(n_per_class=40, layers=12, transition=0.0)  # 5-shot random everywhere, like 0-shot
    assert _by_key(ac.evaluate_claims(view, n_boot=300))["icl.subject_early"].verdict == cl.FAILS


def test_missing_conditions_and_too_few_rows_cannot_tell():
    got = _by_key(ac.evaluate_claims(ac.planted_view(n_per_class=40, layers=12), n_boot=200))
    assert got["icl.subject_early_resampled"].verdict == cl.CANNOT_TELL
    assert got["icl.subject_early_resampled"].note == "no 5shot-resampled"
    for key in ("accuracy.sft", "sft.answer_ari_vs_0shot", "sft.answer_overlap_vs_icl", "sft.base_early_apart_late"):
        assert got[key].verdict == cl.CANNOT_TELL and "sft" in got[key].note
    assert got["edl.random_gain"].note == "no EDL record of sft-random"
    few = _by_key(ac.evaluate_claims(ac.planted_view(n_per_class=6, layers=12), n_boot=200))
    assert few["icl.subject_early"].verdict == cl.CANNOT_TELL and few["icl.subject_early"].note.startswith("too few rows")
    assert few["transition.sharp"].verdict == cl.CANNOT_TELL


def _finetuned_view(seed=0):
    """A planted fine-tune: clusters by answer in the second half, neighbourhoods of the base kept
    early (overlap 0.9) and lost late (0.2); label overlaps of answers high late."""
    view = ac.planted_view(n_per_class=50, layers=10, seed=seed, conditions=("0shot", "5shot", "sft"))
    rng = np.random.default_rng(seed)
    n = view.n_rows
    for layer in range(1, 11):
        late = layer / 10 > 0.5
        # the fine-tune: mixed early, by answer late
        view.clusters["sft"][layer] = view.labels["answer"].copy() if late else rng.integers(0, 4, n)
        for c in ("0shot", "5shot", "sft"):
            view.scalars[c][layer] = {"label_overlap[answer]": (0.8 if c == "sft" and late else 0.3) + rng.normal(0, 0.01)}
        view.overlaps[("0shot", "sft")] = view.overlaps.get(("0shot", "sft"), {})
        view.overlaps[("0shot", "sft")][layer] = np.clip(rng.normal(0.2 if late else 0.9, 0.05, n), 0, 1)
    view.correct["sft"] = view.correct["0shot"] | (rng.random(n) < 0.5)
    view.edl = {"sft": dict(n_train=100, gain_beyond_format_bits=30.0, gain_beyond_format_bits_low=12.0,
                            gain_beyond_format_bits_high=50.0),
                "sft-random": dict(n_train=100, gain_beyond_format_bits=-1.0, gain_beyond_format_bits_low=-6.0,
                                   gain_beyond_format_bits_high=1.0)}
    return view


def test_a_planted_finetune_holds_where_it_was_planted():
    got = _by_key(ac.evaluate_claims(_finetuned_view(), n_boot=300))
    for key in ("accuracy.sft", "sft.answer_ari_vs_0shot", "sft.answer_ari_vs_icl", "sft.answer_overlap_vs_0shot",
                "sft.answer_overlap_vs_icl", "sft.base_early_apart_late", "icl.vs_sft_early", "edl.true_gain",
                "edl.random_gain"):
        assert got[key].verdict == cl.HOLDS, got[key]
    assert np.isclose(got["edl.true_gain"].value, 0.3) and np.isclose(got["edl.random_gain"].high, 0.01)
    assert np.isclose(got["sft.base_early_apart_late"].value, 0.7, atol=0.03)
    assert got["icl_sft.agree_early_diverge_late"].note == "no pair 5shot~sft analysed"


def test_random_labels_that_gain_fail_the_edl_claim():
    view = _finetuned_view()
    view.edl["sft-random"] = dict(n_train=100, gain_beyond_format_bits=20.0, gain_beyond_format_bits_low=8.0,
                                  gain_beyond_format_bits_high=30.0)
    assert _by_key(ac.evaluate_claims(view, n_boot=200))["edl.random_gain"].verdict == cl.FAILS


# ---------------------------------------------------------------- a real analysed run


def test_claims_read_the_analysis_own_numbers(tiny_run):
    """At every layer, the ARI with the bootstrap's first draw (the data) is the analysis's ari[...]."""
    from landscape import store
    import h5py

    view = ac.read_run(tiny_run)
    ones = np.ones((1, view.n_rows))
    assert set(view.clusters) == {"0shot", "1shot"} and view.last_layer == 3
    with h5py.File(tiny_run / store.ANALYSIS_FILE, "r") as f:
        for condition, layers in view.clusters.items():
            assert layers, condition
            for layer, clusters in layers.items():
                scalars = store.analysis.read_result(f, store.analysis.result_path(condition, layer), ())[0]
                for grouping in ("subject", "answer"):
                    assert np.isclose(cl.weighted_ari(clusters, view.labels[grouping], ones)[0],
                                      scalars[f"ari[{grouping}]"]), (condition, layer, grouping)


def test_landscape_claims_writes_a_verdict_for_every_claim(tiny_run, capsys):
    assert cli.main(["claims", str(tiny_run), "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(tiny_run / ac.CLAIMS_FILE)))
    assert [r["claim"] for r in rows] == [c.key for c in ac.evaluate_claims(ac.planted_view(layers=6), n_boot=100)]
    assert all(r["verdict"] in (cl.HOLDS, cl.FAILS, cl.CANNOT_TELL) for r in rows)
    assert all(r["note"] or r["value"] for r in rows)  # each has a number or says why not
    assert "accuracy.icl" in printed and "no 5shot" in printed  # the tiny run's k-shot is 1-shot


def test_landscape_claims_refuses_a_run_without_analysis(tmp_path, capsys):
    assert cli.main(["claims", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("landscape: error: no analysis.h5") and "\n" not in err
    assert not (tmp_path / ac.CLAIMS_FILE).exists()
