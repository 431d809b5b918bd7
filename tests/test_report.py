"""The report of a tiny run: files, figures true to the stored numbers, and the page in Chromium."""


import numpy as np
import pytest

from analyses.run import run_analysis
from extract.finetune import FinetuneConfig, run_finetune
from extract.icl import ExtractConfig, run_extract
from figures import maps
from figures.collect import collect, trees
from figures.edl import code_length_curves
from figures.report import ReportConfig, run_report
from landscape import cli
from tests.conftest import SMALL, require_chromium

FAST = ReportConfig(map_method="pca", png="no")


@pytest.fixture(scope="module")
def reported(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    folder = tmp_path_factory.mktemp("report-run")
    run_extract(ExtractConfig(model=str(tiny_model_dir), task_data=str(tiny_mmlu), shots=(0, 1), subjects="all",
                              per_subject=12, demo_pool=2, train_per_subject=8, batch_size=8), folder, progress=False)
    run_finetune(folder, FinetuneConfig(rank=4, alpha=8, dropout=0.0, lr=5e-3, epochs=1, batch_size=4,
                                        task_data=str(tiny_mmlu)), progress=False)
    run_analysis(folder, SMALL, progress=False)
    report = run_report(folder, ReportConfig(map_method="pca", png="no", task_data=str(tiny_mmlu)), progress=False)
    return folder, report


def test_report_is_one_offline_page_with_every_figure_beside_it(reported):
    folder, report = reported
    page = report.index.read_text()
    assert report.index == folder / "report" / "index.html"
    assert page.count("plotly.js v") == 1  # plotly.js inlined once, no CDN
    assert '<script src="http' not in page  # (the browser test also blocks and counts any request)
    for section in ("Profiles across layers", "What can be read from each layer", "Density-peak dendrogram",
                    "Map of one layer", "Excess description length"):
        assert section in page
    names = {p.stem for p in report.figures}
    assert {"profiles", "pairs", "gride_curves", "dendrogram", "map", "code_length", "edl_distribution",
            "edl_correlations", "complexity", "map_explorer", "readout_subject", "readout_answer", "lens",
            "id_estimators", "layer_similarity"} <= names
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
    arrays, attrs = data.edl["sft"]
    ends = {trace.name: trace.y[-1] for trace in fig.data}
    assert ends["sft: online (prequential)"] == pytest.approx(attrs["mdl_bits"])
    assert ends["sft: final model"] == pytest.approx(attrs["final_bits"])
    assert ends["sft: base model"] == pytest.approx(attrs["base_bits"])


def test_dendrogram_leaves_are_named_by_their_dominant_subject(reported):
    folder, _ = reported
    data = collect(folder)
    subjects = data.examples.first_group[data.eval_rows]
    layers = data.profiles[("eval", "1shot")]["n_distinct"][0].tolist()
    for layer, tree in trees(folder, "1shot", layers, subjects).items():
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
    assert cli.main(["report", str(folder), "--map-layers", "99", "--png", "no", "--map-method", "pca", "--no-progress"]) == 1
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
    assert set(check.drawn) == {"claims", "profiles", "pairs", "gride_curves", "dendrogram", "map", "code_length",
                                "edl_distribution", "edl_correlations", "complexity", "readout_subject",
                                "readout_answer", "lens", "id_estimators", "layer_similarity"}
    assert (tmp_path / "screenshot.png").stat().st_size > 10_000
    standalone = check_page(folder / "report" / "figures" / "map_explorer.html")
    assert standalone.ok, standalone.problems()
