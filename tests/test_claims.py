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


@pytest.mark.parametrize(
    "low,high,region,expected",
    [
        (0.1, 0.3, cl.Region(above=0.05), cl.HOLDS),
        (-0.2, 0.01, cl.Region(above=0.05), cl.FAILS),
        (0.0, 0.2, cl.Region(above=0.05), cl.CANNOT_TELL),
        (0.4, 0.6, cl.Region(1 / 3, 2 / 3), cl.HOLDS),
        (0.7, 0.9, cl.Region(1 / 3, 2 / 3), cl.FAILS),
        (0.1, 0.9, cl.Region(1 / 3, 2 / 3), cl.CANNOT_TELL),
        (0.01, 0.1, cl.Region(below=0.15), cl.HOLDS),
        (np.nan, 0.1, cl.Region(below=0.15), cl.CANNOT_TELL),
    ],
)
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


def test_sharpest_fall_finds_a_gradual_fall_and_places_it_at_its_middle():
    profile = np.r_[np.full(10, 0.9), np.linspace(0.9, 0.1, 4)[1:], np.full(10, 0.1)]  # falls over layers 9 -> 12
    depths = np.arange(1, len(profile) + 1) / len(profile)
    spans = cl.fall_spans(depths, 0.15)
    best, fall = cl.sharpest_falls(profile[None, :], spans)
    assert spans[best[0]].tolist() == [9, 12] and np.isclose(fall[0], 0.8)
    assert np.isclose(cl.fall_place(profile[None, :], depths, [9], [12])[0], (depths[10] + depths[11]) / 2)
    best, _ = cl.sharpest_falls(profile[::-1][None, :], spans)  # a rise is no fall
    assert np.isnan(cl.fall_place(profile[::-1][None, :], depths, spans[best, 0], spans[best, 1])[0])


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
    assert few["icl.subject_early"].verdict == cl.CANNOT_TELL and few["icl.subject_early"].note.startswith(
        "too few rows"
    )
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
            view.overlap_rows[c][layer] = np.clip(rng.normal(0.8 if c == "sft" and late else 0.3, 0.1, n), 0, 1)
        view.overlaps[("0shot", "sft")] = view.overlaps.get(("0shot", "sft"), {})
        view.overlaps[("0shot", "sft")][layer] = np.clip(rng.normal(0.2 if late else 0.9, 0.05, n), 0, 1)
    view.correct["sft"] = view.correct["0shot"] | (rng.random(n) < 0.5)
    view.edl = {
        "sft": dict(
            n_train=100,
            gain_beyond_format_bits=30.0,
            gain_beyond_format_bits_low=12.0,
            gain_beyond_format_bits_high=50.0,
        ),
        "sft-random": dict(
            n_train=100,
            gain_beyond_format_bits=-1.0,
            gain_beyond_format_bits_low=-6.0,
            gain_beyond_format_bits_high=1.0,
        ),
    }
    return view


def test_a_planted_finetune_holds_where_it_was_planted():
    got = _by_key(ac.evaluate_claims(_finetuned_view(), n_boot=300))
    for key in (
        "accuracy.sft",
        "sft.answer_ari_vs_0shot",
        "sft.answer_ari_vs_icl",
        "sft.answer_overlap_vs_0shot",
        "sft.answer_overlap_vs_icl",
        "sft.base_early_apart_late",
        "icl.vs_sft_early",
        "edl.true_gain",
        "edl.random_gain",
    ):
        assert got[key].verdict == cl.HOLDS, got[key]
    assert np.isclose(got["edl.true_gain"].value, 0.3) and np.isclose(got["edl.random_gain"].high, 0.01)
    assert np.isclose(got["sft.base_early_apart_late"].value, 0.7, atol=0.03)
    assert got["icl_sft.agree_early_diverge_late"].note == "no pair 5shot~sft analysed"


def test_random_labels_that_gain_fail_the_edl_claim():
    view = _finetuned_view()
    view.edl["sft-random"] = dict(
        n_train=100, gain_beyond_format_bits=20.0, gain_beyond_format_bits_low=8.0, gain_beyond_format_bits_high=30.0
    )
    assert _by_key(ac.evaluate_claims(view, n_boot=200))["edl.random_gain"].verdict == cl.FAILS


# ---------------------------------------------------------------- a real analysed run


def test_claims_read_the_analysis_own_numbers(tiny_run):
    """At every layer, the ARI with the bootstrap's first draw (the data) is the analysis's ari[...]."""
    import h5py

    from landscape import store

    view = ac.read_run(tiny_run)
    ones = np.ones((1, view.n_rows))
    assert set(view.clusters) == {"0shot", "1shot"} and view.last_layer == 3
    with h5py.File(tiny_run / store.ANALYSIS_FILE, "r") as f:
        for condition, layers in view.clusters.items():
            assert layers, condition
            for layer, clusters in layers.items():
                scalars = store.analysis.read_result(f, store.analysis.result_path(condition, layer), ())[0]
                for grouping in ("subject", "answer"):
                    assert np.isclose(
                        cl.weighted_ari(clusters, view.labels[grouping], ones)[0], scalars[f"ari[{grouping}]"]
                    ), (condition, layer, grouping)


def test_landscape_claims_writes_a_verdict_for_every_claim(tiny_run, capsys):
    assert cli.main(["claims", str(tiny_run), "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    with open(tiny_run / ac.CLAIMS_FILE) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["claim"] for r in rows] == [c.key for c in ac.evaluate_claims(ac.planted_view(layers=6), n_boot=100)]
    assert all(r["verdict"] in (cl.HOLDS, cl.FAILS, cl.CANNOT_TELL) for r in rows)
    assert all(r["note"] or r["value"] for r in rows)  # each has a number or says why not
    assert "accuracy.icl" in printed and "no 5shot" in printed  # the tiny run's k-shot is 1-shot


def test_landscape_claims_refuses_a_run_without_analysis(tmp_path, capsys):
    assert cli.main(["claims", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("landscape: error: no analysis.h5") and "\n" not in err
    assert not (tmp_path / ac.CLAIMS_FILE).exists()


# ---------------------------------------------------------------- verdicts that could have gone the other way (issue 36)


def _cliff_view(last_layer: int, layers, cliff_after: int, *, n_per_class: int = 40, seed: int = 0, ids=None):
    """5-shot clusters by subject up to layer ``cliff_after`` and at random after it (one partition
    either side: ties in every window that holds the cliff), 0-shot at random; ``ids``: layer -> (ID, error)."""
    view = ac.planted_view(n_per_class=n_per_class, layers=last_layer, seed=seed)
    rng = np.random.default_rng(seed)
    after = rng.integers(0, 4, view.n_rows)
    for condition in ("0shot", "5shot"):
        view.clusters[condition] = {layer: view.clusters[condition].get(layer, after) for layer in layers}
        view.ids[condition] = {layer: (ids or {}).get(layer, (5.0, 0.1)) for layer in layers}
    for layer in layers:
        view.clusters["5shot"][layer] = view.labels["subject"].copy() if layer <= cliff_after else after
    return view


def test_a_one_layer_cliff_is_placed_at_its_step_not_before_it():
    """28 blocks, the subject ARI falls from 1 to ~0 between layers 15 and 16: the fall is placed at
    15.5 / 28, whichever of the tied windows the search meets first (the old code: 13 -> 16, 0.518),
    and the ID peak at layer 19 is 3.5 layers from it (0.125: holds), not 0.161."""
    ids = {layer: (5.0 + (10 if layer == 19 else 0), 0.01) for layer in range(1, 29)}
    got = _by_key(ac.evaluate_claims(_cliff_view(28, range(1, 29), 15, ids=ids), n_boot=200))
    assert got["transition.sharp"].verdict == cl.HOLDS and got["transition.sharp"].note.startswith(
        "from layer 15 to 16"
    )
    assert np.isclose(got["transition.middle"].value, 15.5 / 28) and got["transition.middle"].verdict == cl.HOLDS
    assert "the same in every draw" in got["transition.middle"].note  # a point interval says why
    assert np.isclose(got["transition.id_peak"].value, 3.5 / 28) and got["transition.id_peak"].verdict == cl.HOLDS


def test_a_cliff_one_step_before_the_middle_third_cannot_be_told_from_one_in_it():
    """30 blocks, a cliff from layer 9 to 10 (SmolLM2-135M's 5-shot subject ARI): the fall happened
    somewhere between depth 0.300 and 0.333, the edge of the middle third; placing the step at its
    middle (0.317) must not decide the verdict (it failed before the place's step was counted)."""
    got = _by_key(ac.evaluate_claims(_cliff_view(30, range(1, 31), 9), n_boot=200))
    middle = got["transition.middle"]
    assert np.isclose(middle.value, 9.5 / 30) and middle.verdict == cl.CANNOT_TELL
    assert middle.low <= 9 / 30 + 1e-12 and middle.high >= 10 / 30 - 1e-12
    assert "placed to ±0.017 (half a step)" in middle.note


@pytest.mark.parametrize("blocks,edge", [(24, 1 / 3), (36, 2 / 3)])
def test_a_fall_exactly_on_the_middle_thirds_edge_lies_in_it(blocks, edge):
    """Odd layers analysed, a cliff from layer 7 to 9 of 24 (23 to 25 of 36): the place is 8 / 24
    (24 / 36), exactly the edge, which the closed region contains; an interval ending there cannot tell."""
    at = round(edge * blocks)
    view = _cliff_view(blocks, range(1, blocks + 1, 2), at - 1)
    got = _by_key(ac.evaluate_claims(view, n_boot=200))
    middle = got["transition.middle"]
    assert middle.value == edge and cl.Region(1 / 3, 2 / 3).contains(middle.value)
    assert middle.verdict != cl.FAILS
    assert cl.verdict(edge - 0.1, edge, cl.Region(1 / 3, 2 / 3)) == (cl.CANNOT_TELL if edge < 0.5 else cl.HOLDS)
    assert cl.verdict(edge, edge + 0.1, cl.Region(1 / 3, 2 / 3)) == (cl.HOLDS if edge < 0.5 else cl.CANNOT_TELL)


def test_a_layer_subset_reads_the_fall_over_the_same_depth():
    """With every 4th of 32 layers one step is 0.125 of the depth, more than the 0.1 window: the
    fall is taken over one step, the same fall as with every layer, at nearly the same place."""
    every = _by_key(ac.evaluate_claims(_cliff_view(32, range(1, 33), 18), n_boot=100))
    subset = _by_key(ac.evaluate_claims(_cliff_view(32, range(4, 33, 4), 18), n_boot=100))
    assert np.isclose(every["transition.sharp"].value, subset["transition.sharp"].value)
    assert abs(every["transition.middle"].value - subset["transition.middle"].value) <= 2 / 32
    assert cl.fall_spans(np.arange(4, 33, 4) / 32, 0.1).tolist() == [[i, i + 1] for i in range(7)]
    assert (np.diff(cl.fall_spans(np.arange(1, 33) / 32, 0.1), axis=1) <= 3).all()


def test_layer_zero_never_enters_the_transition():
    view = _cliff_view(12, range(13), 6)
    view.clusters["5shot"][0] = view.labels["subject"].copy()
    view.ids["5shot"][0] = (1e3, 0.1)  # an ID peak at the embeddings would be absurd
    got = _by_key(ac.evaluate_claims(view, n_boot=100))
    assert "ID peak at layer 0" not in got["transition.id_peak"].note


def test_partly_undefined_draws_are_counted_and_too_many_cannot_tell():
    claim = ac.Claim("x", "s", "t", "p", region=cl.Region(above=0.0))
    draws = np.r_[np.full(90, 0.5), np.full(10, np.nan)]
    decided = ac._decide(claim, 0.5, draws)
    assert decided.verdict == cl.CANNOT_TELL and "90 of 100 draws defined" in decided.note
    few = ac._decide(claim, 0.5, np.r_[np.full(99, 0.5), np.nan])
    assert few.verdict == cl.HOLDS and "99 of 100 draws defined" in few.note


def test_an_edl_record_without_the_gain_cannot_tell():
    view = _finetuned_view()
    view.edl["sft"] = {"n_train": 100}
    got = _by_key(ac.evaluate_claims(view, n_boot=100))
    assert got["edl.true_gain"].verdict == cl.CANNOT_TELL and "no gain beyond format" in got["edl.true_gain"].note
    assert "one-sided" in got["edl.random_gain"].note


def test_every_draw_follows_the_seed():
    view = _finetuned_view()
    for layer in view.ids["5shot"]:
        view.ids["5shot"][layer] = (5.0, 2.0)  # a flat ID with large errors: the peak moves with the noise
    runs = {seed: _by_key(ac.evaluate_claims(view, n_boot=30, seed=seed)) for seed in (0, 1, 2, 3)}
    again = _by_key(ac.evaluate_claims(view, n_boot=30, seed=0))
    for key in ("transition.id_peak", "sft.answer_overlap_vs_0shot", "accuracy.sft"):
        assert (again[key].low, again[key].high) == (runs[0][key].low, runs[0][key].high)
        assert any((runs[s][key].low, runs[s][key].high) != (runs[0][key].low, runs[0][key].high) for s in (1, 2, 3)), (
            key
        )


def test_label_overlap_claims_resample_questions():
    """A steady small difference over few questions: the interval from questions is wide, where
    resampling layers made it narrow at any number of questions."""
    view = _finetuned_view()
    rng = np.random.default_rng(5)
    for layer in view.overlap_rows["sft"]:
        for c in ("0shot", "5shot", "sft"):
            view.overlap_rows[c][layer] = np.clip(
                rng.normal(0.3, 0.25, view.n_rows) + (0.06 if c == "sft" else 0), 0, 1
            )
    got = _by_key(ac.evaluate_claims(view, n_boot=300))["sft.answer_overlap_vs_0shot"]
    assert got.high - got.low > 0.02 and got.verdict == cl.CANNOT_TELL and "rows resampled" in got.statistic


def test_a_holds_without_the_shared_prefix_control_says_so():
    got = _by_key(ac.evaluate_claims(ac.planted_view(n_per_class=40, layers=8), n_boot=100))
    assert got["icl.subject_early"].verdict == cl.HOLDS and "5shot-resampled" in got["icl.subject_early"].note


def test_both_sides_within_chance_are_noted():
    view = _finetuned_view()
    for c in ("0shot", "5shot", "sft"):
        for layer in view.scalars[c]:
            view.scalars[c][layer].update({"ari_null_high[answer]": 1.0, "ari_null_high[subject]": 0.01})
    got = _by_key(ac.evaluate_claims(view, n_boot=100))
    assert "both within chance" in got["sft.answer_ari_vs_0shot"].note
    assert "both within chance" not in got["icl.subject_early"].note
