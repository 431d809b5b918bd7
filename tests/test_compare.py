"""``landscape compare``: tiny runs of two depths, two seeds of one fine-tune, two recipes on one
extraction; the table true to each run's metrics.csv, paired differences where rows are shared,
refusals in one line with nothing written, and the page in Chromium."""

import csv
import shutil
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from analyses.compare import COMPARE_HEADER, paired_differences, shared_rows, summarize
from analyses.run import run_analysis
from extract.finetune import FinetuneConfig, run_finetune
from figures.compare import PAIRED_FILE, profile_figures, profile_series, run_compare
from figures.style import CHANCE
from landscape import cli
from tests.helpers import SMALL, build_tiny_model, extract_tiny, require_chromium

TUNE = dict(rank=4, alpha=8, dropout=0.0, lr=5e-3, epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    """seed0 and seed1: one extraction, fine-tuned with two seeds; normed: seed0's extraction and
    fine-tune analysed with another recipe; deep: a 5-block model on other rows."""
    root = tmp_path_factory.mktemp("compare")
    seed0, seed1, normed, deep = (root / n for n in ("seed0", "seed1", "normed", "deep"))
    extract_tiny(seed0, tiny_model_dir, tiny_mmlu)
    shutil.copytree(seed0, seed1)
    for folder, seed in ((seed0, 0), (seed1, 1)):
        run_finetune(folder, FinetuneConfig(**TUNE, seed=seed, task_data=str(tiny_mmlu)), progress=False)
        run_analysis(folder, SMALL, progress=False)
    shutil.copytree(seed0, normed)
    for name in ("analysis.h5", "metrics.csv"):
        (normed / name).unlink()
    run_analysis(normed, replace(SMALL, states="normed"), progress=False)
    extract_tiny(deep, build_tiny_model(root / "deep-model", layers=5), tiny_mmlu, per_subject=10)
    run_analysis(deep, SMALL, progress=False)
    return {"seed0": seed0, "seed1": seed1, "normed": normed, "deep": deep}


@pytest.fixture(scope="module")
def compared(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "page"
    result = run_compare(list(runs.values()), out, labels={"normed": "recipe-normed"}, n_boot=200)
    return out, result


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_the_table_is_every_runs_metrics_with_relative_depth(runs, compared):
    out, _ = compared
    table = _rows(out / "compare.csv")
    assert tuple(table[0]) == COMPARE_HEADER
    column = {name: i for i, name in enumerate(table[0])}
    labels = {"seed0": "seed0", "seed1": "seed1", "normed": "recipe-normed", "deep": "deep"}
    last = {"seed0": 3, "seed1": 3, "normed": 3, "deep": 5}  # 3 and 5 blocks: layers 0..3 and 0..5
    for name, folder in runs.items():
        own = _rows(folder / "metrics.csv")
        mine = [row for row in table[1:] if row[column["label"]] == labels[name]]
        assert len(mine) == len(own) - 1  # nothing lost or duplicated
        stripped = [[row[column[h]] for h in own[0]] for row in mine]
        assert stripped == own[1:]  # the run's own rows, in its order, values as written
        for row in mine:
            assert float(row[column["relative_depth"]]) == pytest.approx(int(row[column["layer"]]) / last[name])
            assert row[column["run"]] == str(folder)
    assert len(table) - 1 == sum(len(_rows(f / "metrics.csv")) - 1 for f in runs.values())


def test_runs_sharing_rows_get_paired_differences_and_the_others_a_reason(runs, compared):
    out, result = compared
    paired = _rows(out / PAIRED_FILE)
    header, body = paired[0], paired[1:]
    pairs = {(r[0], r[1]) for r in body}
    assert pairs == {("seed0", "seed1"), ("seed0", "recipe-normed"), ("seed1", "recipe-normed")}
    assert len(result.notes) == 3 and all("deep" in n and "different questions" in n for n in result.notes)
    at = {name: header.index(name) for name in header}
    for row in body:
        value, low, high = (float(row[at[k]]) for k in ("difference", "low", "high"))
        assert low - 1e-12 <= value <= high + 1e-12
    # one extraction, one fine-tune: the recipes' accuracies are the same questions answered the same way
    same = [r for r in body if r[:2] == ["seed0", "recipe-normed"] and r[at["metric"]] == "accuracy"]
    assert {r[at["condition"]] for r in same} == {"0shot", "1shot", "sft"}
    assert all(float(r[at["difference"]]) == 0 == float(r[at["low"]]) == float(r[at["high"]]) for r in same)

    # each difference is the two runs' own ARIs (as their analyses wrote them) subtracted
    def ari(folder, condition, layer, grouping):
        return next(
            float(r[5])
            for r in _rows(folder / "metrics.csv")
            if r[:5] == ["eval", condition, str(layer), "ari", grouping]
        )

    aris = [r for r in body if r[:2] == ["seed0", "seed1"] and r[at["metric"]].startswith("ari")]
    assert {r[at["condition"]] for r in aris} == {"0shot", "1shot", "sft"}
    for r in aris:
        grouping = r[at["metric"]][4:-1]
        expected = ari(runs["seed0"], r[2], r[4], grouping) - ari(runs["seed1"], r[2], r[4], grouping)
        assert float(r[at["difference"]]) == pytest.approx(expected, abs=1e-9)


def test_a_run_against_itself_differs_by_nothing(runs):
    view = summarize(runs["seed0"], "a", n_boot=100).view
    assert all(d.value == d.low == d.high == 0 for d in paired_differences(view, view, n_boot=100))


def test_paired_differences_asked_for_runs_on_other_rows_are_refused(runs, tmp_path, capsys):
    out = tmp_path / "page"
    code = cli.main(
        [
            "compare",
            str(runs["seed0"]),
            str(runs["deep"]),
            "--out",
            str(out),
            "--paired",
            "seed0,deep",
            "--n-boot",
            "100",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "different questions" in err
    assert not out.exists()


@pytest.mark.parametrize("case", ["no-analysis", "twice", "one-run", "foreign-out", "unknown-label"])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(runs, tmp_path, capsys, case):
    out = tmp_path / "page"
    bare = tmp_path / "bare"
    args = [str(runs["seed0"]), str(runs["seed1"])]
    if case == "no-analysis":
        shutil.copytree(runs["deep"], bare)
        (bare / "analysis.h5").unlink()
        args = [str(runs["seed0"]), str(bare)]
    elif case == "twice":
        args = [str(runs["seed0"]), str(runs["seed0"])]
    elif case == "one-run":
        args = [str(runs["seed0"])]
    elif case == "foreign-out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "unknown-label":
        args += ["--label", "nope=x"]
    code = cli.main(["compare", *args, "--out", str(out), "--n-boot", "100"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("landscape: error:") and "\n" not in err, err
    if case == "foreign-out":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_a_comparison_is_replaced_whole(runs, compared, tmp_path):
    out = tmp_path / "page"
    run_compare([runs["seed0"], runs["deep"]], out, n_boot=100)
    assert not (out / PAIRED_FILE).exists()  # nothing shares rows
    run_compare([runs["seed0"], runs["seed1"]], out, labels={f"{runs['seed0']}/": "first"}, n_boot=100)  # replaced
    assert (out / PAIRED_FILE).is_file()
    page = (out / "index.html").read_text()
    assert "landscape: first vs seed1" in page
    assert "EDL sft (bits, held-out)" in page and "gain beyond format, sft (bits/label)" in page
    assert page.count("plotly.js v") == 1 and '<script src="http' not in page
    assert "What differs between the runs" in page and "fine-tune sft: seed" in page


def test_what_differs_names_the_fine_tunes_seed_and_the_recipe(runs):
    from analyses.compare import differences

    summaries = [summarize(runs[n], n, n_boot=100) for n in ("seed0", "seed1", "normed")]
    differ = dict(differences(summaries)[0])
    assert differ["fine-tune sft: seed"] == ["0", "1", "0"]
    assert differ["analysis: states"] == ['"residual"', '"residual"', '"normed"']
    assert "model sha256" not in differ and "task sha256" not in differ


@pytest.mark.browser
def test_the_comparison_renders_in_headless_chromium(compared, tmp_path):
    from figures.browser import check_page

    require_chromium()
    _, result = compared
    check = check_page(result.index, tmp_path / "screenshot.png")
    assert check.ok, check.problems()
    assert set(check.drawn) == {"headline", "profiles", "paired"}
    assert np.isfinite(check.load_s)


@dataclass
class _Rows:
    """What ``profile_series`` reads of a run: its label, its metrics rows, its depth."""

    label: str
    last_layer: int
    rows: list = field(default_factory=list)

    def relative_depth(self, layer):
        return layer / self.last_layer


def _ari_rows(last_layer, null):
    rows = [("eval", "0shot", layer, "ari", "subject", 0.1 * layer, np.nan, np.nan) for layer in range(last_layer + 1)]
    if null:  # the permutation null: mean, 2.5 and 97.5 percentiles of the draws
        rows += [
            ("eval", "0shot", layer, "ari_null", "subject", 0.0, -0.02 - layer / 100, 0.03)
            for layer in range(last_layer + 1)
        ]
    return rows


def test_profiles_draw_each_runs_chance_band_where_its_metrics_hold_a_null():
    runs = [_Rows("with", 3, _ari_rows(3, null=True)), _Rows("without", 5, _ari_rows(5, null=False))]
    figures = profile_figures(profile_series(runs), {"with": "#1f77b4", "without": "#ff7f0e"})
    assert set(figures) == {"ari[subject]|0shot"}  # the null is drawn with its measure, not as a metric of its own
    fig = figures["ari[subject]|0shot"]
    bands = [t for t in fig.data if t.legendgroup == CHANCE and t.fill == "toself" and t.x[0] is not None]
    assert [b.name for b in bands] == [f"with: {CHANCE}"]  # only the run that has one
    assert np.allclose(bands[0].x, [0, 1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3, 0])  # over relative depth
    assert np.allclose(bands[0].y, [0.03] * 4 + [-0.05, -0.04, -0.03, -0.02])
    assert bands[0].fillcolor == "rgba(31, 119, 180, 0.12)"  # the run's colour, light
    assert sum(t.showlegend is True and t.legendgroup == CHANCE for t in fig.data) == 1
    plain = profile_figures(
        profile_series([_Rows("a", 3, _ari_rows(3, null=False)), runs[1]]), {"a": "#1f77b4", "without": "#ff7f0e"}
    )
    assert not [t for t in plain["ari[subject]|0shot"].data if t.legendgroup == CHANCE]


def test_runs_trained_on_other_rows_share_their_eval_rows():
    """Paired differences read eval rows only: a run fine-tuned on other subjects pairs with one
    fine-tuned on the evaluated ones (the same eval questions, other train rows)."""
    from types import SimpleNamespace

    own = SimpleNamespace(
        label="own", info={}, ids=np.array([4, 9, 11, 12]), splits=np.array(["eval"] * 2 + ["train"] * 2)
    )
    others = SimpleNamespace(
        label="others", info={}, ids=np.array([4, 9, 30, 31, 32]), splits=np.array(["eval"] * 2 + ["train"] * 3)
    )
    moved = SimpleNamespace(label="moved", info={}, ids=np.array([9, 4, 11]), splits=np.array(["eval"] * 2 + ["train"]))
    assert shared_rows(own, others) == ""
    assert "different questions (2 and 2 eval rows)" in shared_rows(own, moved)
