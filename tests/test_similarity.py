"""Similarity of two representations against closed forms and DADApy."""

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import pytest

from landscape import similarity, similarity_nulls
from landscape.huh import huh_bound, huh_features, huh_neighbours
from landscape.knn import knn_graph


def _rotation(d: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


def test_cka_is_one_under_rotation_and_scale_and_debiased_near_zero_for_independent_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20))
    for debiased in (False, True):
        assert similarity.linear_cka(X, 2.5 * X @ _rotation(20, 1), debiased=debiased) == pytest.approx(1.0, abs=1e-9)
    A, B = rng.normal(size=(100, 200)), rng.normal(size=(100, 200))  # independent, d >> N
    assert similarity.linear_cka(A, B) > 0.5  # the biased estimator is inflated here...
    assert abs(similarity.linear_cka(A, B, debiased=True)) < 0.05  # ...the debiased one is not


def test_biased_cka_matches_the_gram_matrix_form():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(50, 7)), rng.normal(size=(50, 4))
    H = np.eye(50) - 1 / 50
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    expected = np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L))
    assert similarity.linear_cka(X, Y) == pytest.approx(expected, rel=1e-10)


def test_mutual_knn_of_identical_sets_is_one_and_of_independent_ones_near_k_over_n():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 5))
    g = knn_graph(X, 10).indices
    assert similarity.mutual_knn_euclidean(g, knn_graph(X @ _rotation(5, 3), 10).indices, 10) == 1.0
    h = knn_graph(rng.normal(size=(400, 5)), 10).indices
    assert similarity.mutual_knn_euclidean(g, h, 10) < 0.05  # chance: 10 / 399
    assert similarity.mutual_knn(X, 3 * X, 10) == 1.0  # (their clamp is per coordinate: not rotation-blind)
    assert similarity.mutual_knn(X, rng.normal(size=(400, 5)), 10) < 0.05


def _huh_mutual_knn(A: np.ndarray, B: np.ndarray, topk: int) -> float:
    """Huh et al.'s ``mutual_knn`` (platonic-rep metrics.py: argsort of inner products, binary
    masks) transcribed, on their features (``remove_outliers`` q=0.95, then L2-normalised)."""
    import torch

    A, B = (torch.as_tensor(huh_features(X)) for X in (A, B))
    n = len(A)
    knn = [(F @ F.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk] for F in (A, B)]
    masks = [torch.zeros(n, n).scatter_(1, k, 1.0) for k in knn]
    return float(((masks[0] * masks[1]).sum(dim=1) / topk).mean())


def test_mutual_knn_is_huh_et_al_s_code_and_nearly_blind_to_row_scale():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 64))
    scaled = X * rng.uniform(0.2, 5, size=(200, 1))
    other = np.tanh(X[:, :20]) + rng.normal(size=(200, 20))
    for Y in (scaled, other):
        assert similarity.mutual_knn(X, Y, 10) == pytest.approx(_huh_mutual_knn(X, Y, 10), abs=1e-6)  # theirs: float32
    # the same directions: Huh et al.'s mutual kNN sees one geometry (their clamp alone moves a
    # few neighbours), Euclidean neighbours of the raw rows do not
    assert similarity.mutual_knn(X, scaled, 10) > 0.8
    assert similarity.mutual_knn_euclidean(knn_graph(X, 10).indices, knn_graph(scaled, 10).indices, 10) < 0.5


def test_information_imbalance_matches_dadapy_and_its_limits():
    from dadapy import MetricComparisons

    rng = np.random.default_rng(4)
    A = rng.normal(size=(300, 3))
    B = np.hstack([A[:, :1], rng.normal(size=(300, 2))])  # shares A's first coordinate only
    ours = similarity.information_imbalance(A, B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = MetricComparisons(coordinates=np.hstack([A, B]), maxk=299, verbose=False)
        theirs = data.return_inf_imb_two_selected_coords([0, 1, 2], [3, 4, 5], k=1)
    assert ours == pytest.approx(tuple(theirs), abs=1e-9)
    same = similarity.information_imbalance(A, A @ _rotation(3, 5))
    assert same == pytest.approx((2 / 300, 2 / 300))  # the nearest neighbour stays the nearest
    independent = similarity.information_imbalance(A, rng.normal(size=(300, 3)))
    assert all(0.8 < value < 1.2 for value in independent)


def _huh_cknna(A: np.ndarray, B: np.ndarray, topk: int) -> float:
    """Huh et al.'s ``cknna`` (platonic-rep metrics.py, unbiased) transcribed densely, on their features."""
    import torch

    A, B = (torch.as_tensor(huh_features(X)) for X in (A, B))
    n = len(A)

    def hsic(K, L):
        K, L = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
        return ((K * L.T).sum() + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 * (K @ L).sum() / (n - 2)) / (n * (n - 3))

    def masked(K, L):
        top = [torch.topk(M.clone().fill_diagonal_(-torch.inf), topk, dim=1).indices for M in (K, L)]
        masks = [torch.zeros(n, n, dtype=K.dtype).scatter_(1, t, 1) for t in top]
        mask = masks[0] * masks[1]
        return hsic(mask * K, mask * L)

    K, L = A @ A.T, B @ B.T
    return float(masked(K, L) / (torch.sqrt(masked(K, K) * masked(L, L)) + 1e-6))


def test_the_matrices_equal_the_pairwise_definitions():
    rng = np.random.default_rng(7)
    base = rng.normal(size=(150, 12))
    reps = [
        base,
        base @ rng.normal(size=(12, 20)) + 0.5 * rng.normal(size=(150, 20)),
        np.tanh(base[:, :6]) + rng.normal(size=(150, 6)),
        rng.normal(size=(150, 9)),
    ]
    m = similarity.similarity_matrices(reps, k=8, cknna_k=8)
    for a in range(4):
        assert m.cka[a, a] == pytest.approx(1) and m.imbalance[a, a] < 0.1
        for b in range(4):
            if a == b:
                continue
            A, B = reps[a], reps[b]
            assert m.cka[a, b] == pytest.approx(similarity.linear_cka(A, B), rel=1e-9)
            assert m.cka_debiased[a, b] == pytest.approx(
                similarity.linear_cka(A, B, debiased=True), rel=1e-9, abs=1e-12
            )
            assert m.imbalance[a, b] == pytest.approx(similarity.information_imbalance(A, B)[0], rel=1e-12)
            assert m.mutual_knn_euclidean[a, b] == pytest.approx(
                similarity.mutual_knn_euclidean(knn_graph(A, 8).indices, knn_graph(B, 8).indices, 8)
            )
            assert m.mutual_knn[a, b] == pytest.approx(_huh_mutual_knn(A, B, 8), abs=1e-6)
            assert m.cknna[a, b] == pytest.approx(_huh_cknna(A, B, 8), rel=1e-9, abs=1e-12)


def test_cknna_is_one_for_the_same_neighbourhoods_and_near_zero_for_independent_sets():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 10))
    assert similarity.cknna(X, 3 * X) == pytest.approx(1, abs=1e-3)  # not exactly: their +1e-6 in the denominator
    assert abs(similarity.cknna(X, rng.normal(size=(300, 10)))) < 0.1


def test_the_analysis_writes_layer_by_layer_and_condition_by_condition_similarity(tiny_run):
    import csv

    import h5py

    from landscape import store

    with h5py.File(tiny_run / "analysis.h5", "r") as f:
        layers, by_layer, attrs = store.analysis.read_similarity(
            f, store.analysis.similarity_path("eval", condition="0shot")
        )
        conditions, at_3, _ = store.analysis.read_similarity(f, store.analysis.similarity_path("eval", layer=3))
        assert (
            store.analysis.read_similarity(f, store.analysis.similarity_path("eval", layer=0)) is None
        )  # no geometry there
    with h5py.File(tiny_run / "hidden.h5", "r") as f:
        rows = np.flatnonzero(store.hidden.read_examples(f).splits == "eval")
        states = {
            (c, layer): store.hidden.read_layer(f, c, layer)[rows] for c in ("0shot", "1shot") for layer in (1, 2, 3)
        }
    # layer 0 (one point repeated) has no geometry and is left out
    assert layers.tolist() == [1, 2, 3] and conditions.tolist() == ["0shot", "1shot"]
    assert attrs["n_rows"] == len(rows) and attrs["n_dropped"] == 0 and attrs["k"] == 10
    assert by_layer["cka"][0, 2] == pytest.approx(similarity.linear_cka(states[("0shot", 1)], states[("0shot", 3)]))
    assert at_3["imbalance"][0, 1] == pytest.approx(
        similarity.information_imbalance(states[("0shot", 3)], states[("1shot", 3)])[0]
    )
    assert by_layer["cknna"][0, 2] == pytest.approx(_huh_cknna(states[("0shot", 1)], states[("0shot", 3)], 10))
    with open(tiny_run / "metrics.csv", newline="") as handle:
        metrics = {
            (r["condition"], r["layer"], r["metric"], r["grouping"]): float(r["value"]) for r in csv.DictReader(handle)
        }
    assert metrics[("0shot", "1", "cka", "layer:3")] == pytest.approx(by_layer["cka"][0, 2])
    assert metrics[("0shot", "3", "imbalance_a_to_b", "layer:1")] == pytest.approx(by_layer["imbalance"][2, 0])
    assert metrics[("0shot~1shot", "3", "imbalance_b_to_a", "")] == pytest.approx(at_3["imbalance"][1, 0])
    for measure in ("cka", "cka_debiased", "mutual_knn", "mutual_knn_euclidean", "cknna"):
        assert ("0shot~1shot", "2", measure, "") in metrics


class _CountingReads(Sequence):
    """Representations read on access, counting the reads (as ``analyses.similarity.StoredStates``)."""

    def __init__(self, arrays):
        self.arrays, self.reads = arrays, [0] * len(arrays)

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, r):
        self.reads[r] += 1
        return self.arrays[r].copy()


def test_a_set_larger_than_the_memory_is_read_block_by_block_with_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(11)
    base = rng.normal(size=(120, 10))
    reps = [base @ rng.normal(size=(10, 16)) + s * rng.normal(size=(120, 16)) for s in (0.1, 0.5, 1.0, 2.0)]
    kept = similarity.similarity_matrices(_CountingReads(reps), k=6, cknna_k=6)  # all kept: one block
    monkeypatch.setattr(similarity, "_BLOCK_BYTES", 8 * 120 * 4 * 25)  # 25 rows a block: 5 blocks
    for memory, n_kept in ((0, 0), (2 * 2 * 120 * 16 * 16, 2)):  # nothing kept; two of the four kept
        reads = _CountingReads(reps)
        streamed = similarity.similarity_matrices(reads, k=6, cknna_k=6, memory_bytes=memory)
        assert sorted(reads.reads) == [1] * n_kept + [1 + 5] * (4 - n_kept)  # a first pass, then once a block
        for name, matrix in streamed.as_dict().items():
            np.testing.assert_allclose(matrix, kept.as_dict()[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_the_analysis_streams_a_condition_s_layers_to_the_same_matrices(tiny_run):
    import h5py

    from analyses.similarity import StoredStates, similarity_task
    from landscape import store

    representations = [("0shot", layer) for layer in (1, 2, 3)]
    args = (str(tiny_run / "hidden.h5"), "eval", representations, {"layer": np.array([1, 2, 3])}, "residual", 10, "cpu")
    kept, meta = similarity_task(*args)
    streamed, streamed_meta = similarity_task(*args, memory_bytes=0)
    unscanned, unscanned_meta = similarity_task(*args, known_distinct=True)  # no look for duplicates: none here
    assert meta == streamed_meta == unscanned_meta and meta["n_dropped"] == 0
    with h5py.File(tiny_run / "hidden.h5", "r") as f:
        rows = np.flatnonzero(store.hidden.read_examples(f).splits == "eval")
        lists = [huh_neighbours(store.hidden.read_layer(f, c, layer)[rows], 10) for c, layer in representations]
    given, given_meta = similarity_task(*args, known_distinct=True, huh_lists=lists)  # each layer's own task's lists
    assert given_meta == meta
    for name in similarity.MEASURES:
        np.testing.assert_allclose(streamed[name], kept[name], rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(unscanned[name], kept[name], err_msg=name)
        np.testing.assert_allclose(given[name], kept[name], rtol=1e-12, atol=1e-12, err_msg=name)
    with h5py.File(tiny_run / "hidden.h5", "r") as f:
        rows = np.flatnonzero(store.hidden.read_examples(f).splits == "eval")
        states = StoredStates(f, representations, rows, "residual")
        assert len(states) == 3 and np.array_equal(states[2], store.hidden.read_layer(f, "0shot", 3)[rows])


def _related(n: int, seed: int) -> list[np.ndarray]:
    """Three representations of n rows: a base, a noisy linear map of it, and independent noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 10))
    return [base, base @ rng.normal(size=(10, 16)) + 0.5 * rng.normal(size=(n, 16)), rng.normal(size=(n, 12))]


@pytest.mark.parametrize("memory", [similarity.MEMORY_BYTES, 0])  # CKA drawn from held Grams; from moments
def test_a_null_draw_is_the_measure_of_the_permuted_rows(memory):
    reps = _related(90, 12)
    m = similarity.similarity_matrices(
        reps, k=5, cknna_k=7, null_draws=4, null_seed=3, memory_bytes=memory, cka_null="draws"
    )
    drawn = ("cka", "cka_debiased") * (memory > 0) + ("mutual_knn", "mutual_knn_euclidean", "cknna")
    assert sorted(m.null_samples) == sorted(drawn)
    assert m.null_attrs["null_route"] == {
        name: "draws" if name in drawn else "moments" for name in similarity_nulls.NULL_MEASURES
    }
    assert ("null_note" in m.null_attrs) == (memory == 0)
    for d, p in enumerate(similarity_nulls.null_permutations(90, 4, 3)):
        for a, b in itertools.combinations(range(3), 2):
            shuffled = similarity.similarity_matrices([reps[a], reps[b][p]], k=5, cknna_k=7)  # b's rows shuffled
            for name in drawn:
                assert m.null_samples[name][d, a, b] == pytest.approx(
                    getattr(shuffled, name)[0, 1], rel=1e-12, abs=1e-15
                )
                assert m.null_samples[name][d, b, a] == pytest.approx(
                    getattr(shuffled, name)[1, 0], rel=1e-12, abs=1e-15
                )
    for name in similarity_nulls.NULL_MEASURES:
        for end in ("", "_low", "_high"):
            matrix = m.nulls[f"{name}_null{end}"]
            assert (
                matrix.shape == (3, 3)
                and np.isnan(np.diag(matrix)).all()
                and np.isfinite(matrix[~np.eye(3, dtype=bool)]).all()
            )
        if name in drawn:
            np.testing.assert_allclose(m.nulls[f"{name}_null"], m.null_samples[name].mean(axis=0))
    assert sorted(m.as_dict()) == sorted(similarity.measure_names(4))


def test_the_cka_null_moments_are_the_exact_permutation_moments():
    """Every permutation of 7 rows: the RV coefficient's moments (Kazi-Aoual et al.) and the
    debiased CKA's (mean 0, variance 2 / (n (n - 3))) are exact, whatever the data."""
    rng = np.random.default_rng(13)
    A, B = rng.standard_t(3, size=(7, 3)), rng.standard_t(3, size=(7, 4)) * [4, 1, 0.5, 0.1]
    every = np.array(
        [
            (similarity.linear_cka(A, B[list(p)]), similarity.linear_cka(A, B[list(p)], debiased=True))
            for p in itertools.permutations(range(7))
        ]
    )
    centred = [X - X.mean(axis=0) for X in (A, B)]
    mean, variance = similarity_nulls.cka_null_moments(
        np.array([(X**2).sum(axis=1) for X in centred]), np.array([np.sum((X @ X.T) ** 2) for X in centred]), 7
    )
    assert every[:, 0].mean() == pytest.approx(mean[0, 1], rel=1e-12)
    assert every[:, 0].var() == pytest.approx(variance[0, 1], rel=1e-10)
    assert every[:, 1].mean() == pytest.approx(0, abs=1e-12)
    assert every[:, 1].var() == pytest.approx(2 / (7 * 4), rel=1e-10)


def test_the_cka_nulls_from_moments_match_monte_carlo_permutation_draws():
    rng = np.random.default_rng(14)  # heavy-tailed and anisotropic: the moments' beta and delta matter
    reps = [
        rng.standard_t(3, size=(40, 8)) * np.geomspace(3, 0.3, 8),
        rng.standard_t(3, size=(40, 30)) * np.geomspace(2, 0.1, 30),
    ]
    drawn = similarity.similarity_matrices(reps, k=5, cknna_k=5, null_draws=1500, null_seed=2, cka_null="draws")
    moments = similarity.similarity_matrices(reps, k=5, cknna_k=5, null_draws=2)  # the default: moments
    for name in ("cka", "cka_debiased"):
        samples = drawn.null_samples[name][:, 0, 1]
        mean, low, high = (moments.nulls[f"{name}_null{end}"][0, 1] for end in ("", "_low", "_high"))
        sd = (high - mean) / 1.959963984540054
        assert abs(samples.mean() - mean) < 4 * sd / np.sqrt(len(samples))
        assert samples.std() == pytest.approx(sd, rel=0.1)
        assert 0.92 < np.mean((low <= samples) & (samples <= high)) < 0.98  # the normal range holds ~95 % of the draws


def test_independent_data_lie_within_their_nulls_and_a_rotation_far_above():
    rng = np.random.default_rng(15)
    independent = [rng.normal(size=(200, 20)) for _ in range(5)]
    rotated = independent[0] @ _rotation(20, 16) + 0.1 * rng.normal(size=(200, 20))
    pairs = list(itertools.permutations(range(5), 2))  # of independent ones (CKNNA differs with the order)
    for memory in (similarity.MEMORY_BYTES, 0):  # CKA: drawn; from its moments
        m = similarity.similarity_matrices(
            [*independent, rotated], k=10, cknna_k=10, null_draws=60, memory_bytes=memory, cka_null="draws"
        )
        within = []
        for name in similarity_nulls.NULL_MEASURES:
            observed, low, high = getattr(m, name), m.nulls[f"{name}_null_low"], m.nulls[f"{name}_null_high"]
            # independent: each observed value is itself one draw of its null, within the 95 % range ~95 % of the time
            within += [low[a, b] <= observed[a, b] <= high[a, b] for a, b in pairs]
            assert np.all(low[0, 1:5] < m.nulls[f"{name}_null"][0, 1:5]) and np.all(
                m.nulls[f"{name}_null"][0, 1:5] < high[0, 1:5]
            )
            assert observed[0, 5] > high[0, 5] + 10 * (high[0, 5] - low[0, 5]), name  # a rotation: far above chance
            assert observed[5, 0] > high[5, 0] + 10 * (high[5, 0] - low[5, 0]), name
        assert np.mean(within) > 0.85, np.mean(within)


def test_the_nulls_are_seeded():
    reps = _related(60, 17)
    first, again, other = (
        similarity.similarity_matrices(reps, k=5, cknna_k=5, null_draws=5, null_seed=seed, cka_null="draws")
        for seed in (4, 4, 5)
    )
    for name, matrix in first.nulls.items():
        np.testing.assert_array_equal(matrix, again.nulls[name], err_msg=name)
    assert not np.allclose(first.nulls["cka_null"][0, 1], other.nulls["cka_null"][0, 1])
    no_nulls = similarity.similarity_matrices(reps, k=5, cknna_k=5)
    assert not no_nulls.nulls and not no_nulls.null_attrs
    for name in similarity.MEASURES:  # the measures do not depend on the nulls
        np.testing.assert_array_equal(getattr(no_nulls, name), getattr(first, name), err_msg=name)


def test_the_analysis_writes_the_nulls_into_metrics_csv_and_redoes_groups_without_them(tiny_run):
    import csv

    import h5py

    from analyses.similarity import similarity_tasks
    from landscape import store
    from tests.helpers import SMALL

    with h5py.File(tiny_run / "analysis.h5", "r") as f:
        _, by_layer, attrs = store.analysis.read_similarity(
            f, store.analysis.similarity_path("eval", condition="0shot")
        )
        _, at_3, at_3_attrs = store.analysis.read_similarity(f, store.analysis.similarity_path("eval", layer=3))
        stored = {c: [0, 1, 2, 3] for c in ("0shot", "1shot")}

        def tasks(**nulls):
            return [
                path
                for path, *_ in similarity_tasks(
                    f, "hidden", "eval", ["0shot", "1shot"], stored, states="residual", k=10, device="cpu", **nulls
                )
            ]

        assert tasks(null_draws=SMALL.null_draws, null_seed=SMALL.null_seed) == []  # done
        # the layer tasks counted no duplicated row: the groups do not look for them again
        # and read each layer's Huh et al. neighbours as its own task found them
        (args,) = [
            args
            for *_, args in similarity_tasks(
                f, "hidden", "eval", ["0shot"], stored, states="residual", k=10, device="cpu"
            )
        ]
        counts = [
            store.analysis.read_result(f, store.analysis.result_path("0shot", layer), arrays=())[0]["n_duplicates"]
            for layer in (1, 2, 3)
        ]
        assert args[-2] is True and counts == [0, 0, 0]
        with h5py.File(tiny_run / "hidden.h5", "r") as hidden:
            rows = np.flatnonzero(store.hidden.read_examples(hidden).splits == "eval")
            for layer, (indices, values) in zip((1, 2, 3), args[-1], strict=True):
                again = huh_neighbours(store.hidden.read_layer(hidden, "0shot", layer)[rows], 10)
                np.testing.assert_array_equal(indices, again[0])
                np.testing.assert_allclose(values, again[1], rtol=1e-13)
        assert len(tasks(null_draws=SMALL.null_draws, null_seed=1)) == len(tasks()) == 5  # 2 conditions, 3 layers
    assert attrs["null_draws"] == SMALL.null_draws > 0 and attrs["null_seed"] == SMALL.null_seed
    assert attrs["null_route"] == {
        name: "moments" if name.startswith("cka") else "draws"  # CKA's: exact moments
        for name in similarity_nulls.NULL_MEASURES
    }
    assert attrs["measures"] == similarity.measure_names(SMALL.null_draws)
    with open(tiny_run / "metrics.csv", newline="") as handle:
        metrics = {(r["condition"], r["layer"], r["metric"], r["grouping"]): r for r in csv.DictReader(handle)}
    for name in similarity_nulls.NULL_MEASURES:
        row = metrics[("0shot", "1", f"{name}_null", "layer:3")]
        assert float(row["value"]) == pytest.approx(by_layer[f"{name}_null"][0, 2])
        assert float(row["low"]) == pytest.approx(by_layer[f"{name}_null_low"][0, 2])
        assert float(row["high"]) == pytest.approx(by_layer[f"{name}_null_high"][0, 2])
        assert float(row["low"]) <= float(row["value"]) <= float(row["high"])
        pair = metrics[("0shot~1shot", "3", f"{name}_null", "")]
        assert (float(pair["value"]), float(pair["low"]), float(pair["high"])) == pytest.approx(
            tuple(at_3[f"{name}_null{end}"][0, 1] for end in ("", "_low", "_high"))
        )
        assert not any(key[2].startswith(f"{name}_null_") for key in metrics)  # low/high folded into the row
    assert at_3_attrs["n_rows"] == attrs["n_rows"]


@pytest.mark.parametrize("d, q", [(4096, 0.95), (576, 0.95), (7, 0.95), (10, 0.5), (3, 0.9), (1, 0.95), (64, 1.0)])
def test_huh_bound_is_numpys_quantile_bit_for_bit(d, q):
    X = np.random.default_rng(d).standard_t(3, size=(40, d)).astype(np.float32)
    assert huh_bound(X, q) == float(np.quantile(np.abs(X.astype(np.float64)), q, axis=1, method="linear").mean())


@pytest.mark.parametrize("memory_bytes", [similarity.MEMORY_BYTES, 0])  # kept, and streamed block by block
def test_neighbours_found_once_give_every_measure_and_null_as_the_pass_finds_them(memory_bytes, monkeypatch):
    reps = _related(90, seed=5)
    monkeypatch.setattr(similarity, "_BLOCK_BYTES", 8 * 90 * 3 * 20)  # 20 rows a block
    settings = dict(k=5, cknna_k=7, null_draws=6, null_seed=3, memory_bytes=memory_bytes)
    found = similarity.similarity_matrices(reps, **settings)
    lists = [huh_neighbours(X, 7) for X in reps]
    given = similarity.similarity_matrices(reps, **settings, huh_lists=lists)
    for name, matrix in found.as_dict().items():
        np.testing.assert_allclose(given.as_dict()[name], matrix, rtol=1e-12, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match=r"one \(N, 7\) neighbour list"):
        similarity.similarity_matrices(reps, **settings, huh_lists=[(i[:, :5], v[:, :5]) for i, v in lists])


def test_a_group_with_a_duplicated_row_looks_for_duplicates_and_finds_its_own_neighbours(tiny_run, tmp_path):
    import shutil

    import h5py

    from analyses.similarity import similarity_tasks
    from landscape import store

    shutil.copy(tiny_run / "analysis.h5", tmp_path / "analysis.h5")
    stored = {"0shot": [0, 1, 2, 3]}
    with h5py.File(tmp_path / "analysis.h5", "a") as f:
        f[store.analysis.result_path("0shot", 2)].attrs["n_duplicates"] = 1.0  # as a layer task with a copy records it
        del f[store.analysis.similarity_path("eval", condition="0shot")]
        (args,) = [
            a
            for *_, a in similarity_tasks(f, "hidden", "eval", ["0shot"], stored, states="residual", k=10, device="cpu")
        ]
    assert args[-2] is False and args[-1] is None
