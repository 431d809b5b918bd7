"""The report of a tiny run: files, figures true to the stored numbers, and the page in Chromium."""

import numpy as np
import pytest

from analyses.claims import Claim
from analyses.run import run_analysis
from extract.finetune import FinetuneConfig, run_finetune
from extract.icl import ExtractConfig, run_extract
from figures import maps
from figures.claims import claims_figure
from figures.collect import LayerSimilarity, collect, null_series, trees
from figures.edl import code_length_curves
from figures.profiles import layer_profiles, pair_profiles
from figures.readouts import target_readouts
from figures.report import ReportConfig, run_report
from figures.similarity import layer_similarity_heatmaps
from figures.style import CHANCE
from landscape import claims as cl
from landscape import cli
from tests.helpers import SMALL, require_chromium

FAST = ReportConfig(map_method="pca", png="no")


@pytest.fixture(scope="module")
def reported(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    folder = tmp_path_factory.mktemp("report-run")
    run_extract(
        ExtractConfig(
            model=str(tiny_model_dir),
            task_data=str(tiny_mmlu),
            shots=(0, 1),
            subjects="all",
            per_subject=12,
            demo_pool=2,
            train_per_subject=8,
            batch_size=8,
        ),
        folder,
        progress=False,
    )
    run_finetune(
        folder,
        FinetuneConfig(rank=4, alpha=8, dropout=0.0, lr=5e-3, epochs=1, batch_size=4, task_data=str(tiny_mmlu)),
        progress=False,
    )
    run_analysis(folder, SMALL, progress=False)
    report = run_report(folder, ReportConfig(map_method="pca", png="no", task_data=str(tiny_mmlu)), progress=False)
    return folder, report


def test_report_is_one_offline_page_with_every_figure_beside_it(reported):
    folder, report = reported
    page = report.index.read_text()
    assert report.index == folder / "report" / "index.html"
    assert page.count("plotly.js v") == 1  # plotly.js inlined once, no CDN
    assert '<script src="http' not in page  # (the browser test also blocks and counts any request)
    for section in (
        "Profiles across layers",
        "What can be read from each layer",
        "Density-peak dendrogram",
        "Map of one layer",
        "Excess description length",
    ):
        assert section in page
    names = {p.stem for p in report.figures}
    assert {
        "profiles",
        "pairs",
        "gride_curves",
        "dendrogram",
        "map",
        "code_length",
        "edl_distribution",
        "edl_correlations",
        "complexity",
        "map_explorer",
        "readout_subject",
        "readout_answer",
        "lens",
        "id_estimators",
        "layer_similarity",
    } <= names
    assert all(p.is_file() for p in report.figures)
    assert (folder / "report" / "figures" / "plotly.min.js").is_file()
    for name in ("0shot", "1shot", "sft"):  # every condition's accuracy is in the header
        assert f"<td>{name}</td>" in page
    assert "in astronomy?" in page  # hover shows the question texts


def test_maps_are_cached_and_a_report_is_replaced_whole(reported, monkeypatch):
    folder, _ = reported

    def fails(*args, **kwargs):
        raise AssertionError("recomputed a cached map")

    monkeypatch.setattr(maps, "embed_2d", fails)
    again = run_report(folder, FAST, progress=False)
    kept = again.index.read_text()
    assert kept.count("plotly.js v") == 1
    # A failing report leaves the previous one in place.
    monkeypatch.setattr("figures.report.render_page", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        run_report(folder, FAST, progress=False)
    assert (folder / "report" / "index.html").read_text() == kept  # the failed report replaced nothing


def test_code_length_curves_end_at_the_stored_totals(reported):
    folder, _ = reported
    data = collect(folder)
    fig = code_length_curves(data.edl)
    _, attrs = data.edl["sft"]
    ends = {trace.name: trace.y[-1] for trace in fig.data}
    assert ends["sft: online (prequential)"] == pytest.approx(attrs["mdl_bits"])
    assert ends["sft: final model"] == pytest.approx(attrs["final_bits"])
    assert ends["sft: base model"] == pytest.approx(attrs["base_bits"])


def test_dendrogram_leaves_are_named_by_their_dominant_subject(reported):
    folder, _ = reported
    data = collect(folder)
    subjects = data.examples.first_group[data.eval_rows]
    layers = data.profiles[("eval", "1shot")]["n_distinct"][0].tolist()
    for tree in trees(folder, "1shot", layers, subjects).values():
        assert len(tree.leaf_labels) == len(tree.linkage) + 1 or len(tree.leaf_labels) < 2
        for label in tree.leaf_labels:
            assert label.split(" ")[0] in {"astronomy", "anatomy", "world"}


def test_embed_2d_is_seeded_and_separates_blobs():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (40, 16)), rng.normal(8, 1, (40, 16))]).astype(np.float32)
    for method in ("pca", "umap"):
        a = maps.embed_2d(X, method=method, seed=3)
        b = maps.embed_2d(X, method=method, seed=3)
        np.testing.assert_array_equal(a, b)
        gap = np.linalg.norm(a[:40].mean(0) - a[40:].mean(0))
        spread = max(a[:40].std(0).max(), a[40:].std(0).max())
        assert gap > 3 * spread, method
    with pytest.raises(ValueError, match="unknown map method"):
        maps.embed_2d(X, method="tsne")


def test_categorical_marker_names_every_category():
    colouring = maps.Colouring.categories("answer", np.array(["B", "A", "D"]), ["A", "B", "C", "D"])
    marker = maps.marker(colouring)
    assert marker["color"] == [1, 0, 3]
    assert marker["colorbar"]["ticktext"] == ["A", "B", "C", "D"]
    assert (marker["cmin"], marker["cmax"]) == (-0.5, 3.5)


def test_report_cli_errors_are_one_line(tmp_path, capsys, reported):
    folder, _ = reported
    assert cli.main(["report", str(tmp_path)]) == 1
    assert "run `landscape extract` first" in capsys.readouterr().err
    assert (
        cli.main(["report", str(folder), "--map-layers", "99", "--png", "no", "--map-method", "pca", "--no-progress"])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "map layer 99 was not analysed" in err


@pytest.mark.browser
def test_the_page_renders_in_headless_chromium(reported, tmp_path):
    from figures.browser import check_page

    require_chromium()
    folder, report = reported
    check = check_page(report.index, tmp_path / "screenshot.png")
    assert check.console_errors == []
    assert check.external_requests == []
    assert check.missing == [], check.summary()
    assert set(check.drawn) == {
        "claims",
        "profiles",
        "pairs",
        "gride_curves",
        "dendrogram",
        "map",
        "code_length",
        "edl_distribution",
        "edl_correlations",
        "complexity",
        "readout_subject",
        "readout_answer",
        "lens",
        "id_estimators",
        "layer_similarity",
    }
    assert (tmp_path / "screenshot.png").stat().st_size > 10_000
    standalone = check_page(folder / "report" / "figures" / "map_explorer.html")
    assert standalone.ok, standalone.problems()


# ---------------------------------------------------------------- chance levels and the claims' intervals (no run)

LAYERS = np.arange(4)


def _with_null(metric, grouping=""):
    """A measure and its permutation null as analysis.h5 holds them ('<m>_null', '_null_low', '_null_high')."""
    name = (lambda m: f"{m}[{grouping}]") if grouping else (lambda m: m)
    return {
        name(metric): (LAYERS, np.array([0.1, 0.5, 0.8, 0.6])),
        name(f"{metric}_null"): (LAYERS, np.array([0.0, 0.01, -0.01, 0.02])),
        name(f"{metric}_null_low"): (LAYERS, np.array([-0.05, -0.04, -0.06, -0.03])),
        name(f"{metric}_null_high"): (LAYERS, np.array([0.05, 0.06, 0.04, 0.07])),
    }


def _bands(fig):
    return [t for t in fig.data if t.legendgroup == CHANCE and t.fill == "toself" and t.x[0] is not None]


def _legend_entries(fig):
    return [t for t in fig.data if t.legendgroup == CHANCE and t.showlegend]


def test_a_measure_with_a_permutation_null_gets_a_chance_band_and_one_without_none():
    profiles = {"0shot": _with_null("ari", "subject"), "1shot": {"ari[subject]": (LAYERS, np.full(4, 0.3))}}
    fig = layer_profiles(profiles, ["subject", "answer"])
    bands = _bands(fig)
    assert [b.name for b in bands] == [f"0shot: {CHANCE}"]  # 1shot has no null: no band
    assert bands[0].fillcolor.startswith("rgba(")
    assert list(bands[0].x) == [0, 1, 2, 3, 3, 2, 1, 0]
    assert list(bands[0].y) == [0.05, 0.06, 0.04, 0.07, -0.03, -0.06, -0.04, -0.05]  # high, then low back
    mean = next(t for t in fig.data if t.legendgroup == CHANCE and t.line.dash == "dot" and t.x[0] is not None)
    assert list(mean.y) == [0.0, 0.01, -0.01, 0.02] and CHANCE in mean.hovertemplate
    assert len(_legend_entries(fig)) == 1  # one legend entry for every band
    assert "ari_null" not in " ".join(fig.layout.annotations[i].text for i in range(len(fig.layout.annotations)))
    # pairs (data overlap, CKA, ...): the same band
    pairs = pair_profiles({"0shot~1shot": {**_with_null("cka"), **_with_null("data_overlap")}})
    assert len(_bands(pairs)) == 2 and len(_legend_entries(pairs)) == 1
    # the readout figure's ARI panel
    readout = target_readouts(profiles, "subject")
    assert [b.name for b in _bands(readout)] == [f"0shot: {CHANCE}"]
    # runs analysed before the nulls existed: nothing drawn, nothing in the legend
    plain = {c: {m: v for m, v in p.items() if "_null" not in m} for c, p in profiles.items()}
    for fig in (
        layer_profiles(plain, ["subject", "answer"]),
        target_readouts(plain, "subject"),
        pair_profiles({"0shot~1shot": {"cka": _with_null("cka")["cka"]}}),
    ):
        assert not [t for t in fig.data if t.legendgroup == CHANCE]


def test_a_null_without_bounds_is_a_dotted_mean_and_bounds_follow_the_means_layers():
    profile = {
        "ari[answer]": (LAYERS, np.zeros(4)),
        "ari_null[answer]": (LAYERS[1:], np.full(3, 0.01)),
        "ari_null_low[answer]": (LAYERS, np.array([9.0, -0.1, -0.2, -0.3])),
    }
    layers, _, low, high = null_series(profile, "ari[answer]")
    assert list(layers) == [1, 2, 3] and list(low) == [-0.1, -0.2, -0.3] and high is None
    fig = layer_profiles({"0shot": profile}, ["answer"])
    assert not _bands(fig)  # no high: no band, the mean alone
    assert [t.line.dash for t in fig.data if t.legendgroup == CHANCE and t.x[0] is not None] == ["dot"]
    assert null_series({"ari[answer]": (LAYERS, np.zeros(4))}, "ari[answer]") is None


def test_layer_similarity_heatmap_hover_names_the_null_where_there_is_one():
    eye = np.eye(3)
    plain = LayerSimilarity(layers=np.arange(3), matrices={"cka": eye, "imbalance": eye})
    fig = layer_similarity_heatmaps({"0shot": plain})
    assert fig.data[0].customdata is None and CHANCE not in fig.data[0].hovertemplate
    nulled = LayerSimilarity(
        layers=np.arange(3),
        matrices={
            "cka": eye,
            "imbalance": eye,
            "cka_null": np.full((3, 3), 0.1),
            "cka_null_low": np.full((3, 3), 0.05),
            "cka_null_high": np.full((3, 3), 0.2),
        },
    )
    fig = layer_similarity_heatmaps({"0shot": nulled, "1shot": plain})
    assert CHANCE in fig.data[0].hovertemplate and CHANCE not in fig.data[1].hovertemplate
    assert np.allclose(np.asarray(fig.data[0].customdata)[1, 2], [0.1, 0.05, 0.2])
    buttons = {b.label: b.args[0] for b in fig.layout.updatemenus[0].buttons}
    imbalance = buttons["information imbalance row -> column"]  # a measure without a null: hover without it
    assert imbalance["customdata"] == [None, None] and not any(CHANCE in h for h in imbalance["hovertemplate"])


def test_claims_figure_draws_an_interval_that_excludes_the_value_as_it_is():
    """A percentile interval of a maximum may lie below the point value: the segment runs low..high
    and the dot sits beside it; no error bar of negative length."""
    claims = [
        Claim(
            key="peak",
            statement="",
            statistic="max",
            paper="",
            value=0.9,
            low=0.5,
            high=0.8,
            region=cl.Region(above=0.3),
            verdict=cl.HOLDS,
        ),
        Claim(
            key="inside",
            statement="",
            statistic="mean",
            paper="",
            value=0.2,
            low=0.1,
            high=0.4,
            region=cl.Region(above=0.3),
            verdict=cl.CANNOT_TELL,
        ),
        Claim(
            key="no interval",
            statement="",
            statistic="x",
            paper="",
            value=0.1,
            region=cl.Region(above=0.3),
            verdict=cl.FAILS,
        ),
    ]
    fig = claims_figure(claims)
    spans = {}
    for t in fig.data:
        if t.mode == "lines":
            for i in range(0, len(t.x), 3):
                spans[t.y[i]] = (t.x[i], t.x[i + 1])
    assert spans == {"peak": (0.5, 0.8), "inside": (0.1, 0.4)}  # the interval as it is; none without one
    dots = {
        y: x for t in fig.data if t.mode == "markers" and t.name != "threshold" for x, y in zip(t.x, t.y, strict=True)
    }
    assert dots == {"peak": 0.9, "inside": 0.2, "no interval": 0.1}
    for t in fig.data:  # any error bar left is never negative
        if t.error_x is not None and t.error_x.array is not None:
            assert min(t.error_x.array) >= 0 and min(t.error_x.arrayminus) >= 0
    peak = next(t for t in fig.data if t.mode == "markers" and t.name == cl.HOLDS)
    assert "outside its interval" in peak.customdata[0][3]
