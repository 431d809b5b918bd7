"""Task ids of either kind: integers (as MMLU's runs store them, unchanged) or strings, kept exactly
as given through the items, the partition, hidden.h5, the readers, the fine-tune, the analysis,
the comparison and the report; a duplicate or empty id is a one-line error."""

from __future__ import annotations

import html
from dataclasses import replace
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import landscape
from extract import data, demos, icl
from landscape import cli, names, store, tasks
from tests.helpers import SMALL, fails_in_one_line, string_ids, write_string_id_task


def _ids_of(task_file):
    return [item.id for item in tasks.load_items(tasks.load_task(task_file))[1]]


def test_ids_are_integers_or_strings_as_given(string_id_task):
    assert _ids_of(string_id_task) == string_ids(60)  # "00001" stays "00001": the column is not all integers
    csv = string_id_task.parent / "questions.csv"
    lines = csv.read_text().splitlines()
    csv.write_text(
        "\n".join([lines[0]] + [f"{100 + i}" + line[line.index(",") :] for i, line in enumerate(lines[1:])]) + "\n"
    )
    ids = _ids_of(string_id_task)
    assert ids == list(range(100, 160)) and all(type(i) is int for i in ids)  # integer ids: ints, as ever


def test_string_ids_give_a_seeded_partition_and_demos(string_id_task):
    task, items = tasks.load_items(tasks.load_task(string_id_task))
    by_id = {item.id: item for item in items}

    def plan():
        partition = data.make_partition(
            items, data.select_values(items, "all"), demo_pool=3, per_subject=8, train_per_subject=4, seed=0
        )
        examples = icl.run_examples(task, partition, by_id)
        return (
            partition,
            examples,
            demos.plan_demos(examples.ids, examples.first_group, partition.demos, k=2, sampling="resampled", seed=0),
        )

    (partition, examples, resampled), (again, _, resampled2) = plan(), plan()
    assert partition == again and set(partition.eval) <= set(string_ids(60))
    assert examples.ids.dtype.kind == "U" and examples.ids.tolist() == partition.eval + partition.train
    np.testing.assert_array_equal(resampled.demo_ids, resampled2.demo_ids)
    assert resampled.demo_ids.dtype.kind == "U" and len(set(resampled.demo_sets)) > 1
    for row, value in enumerate(examples.first_group):
        assert set(resampled.demo_ids[row]) <= set(partition.demos[value])


def test_a_string_id_task_end_to_end(string_id_task, tmp_path, tiny_model_dir):
    """extract (0-shot, 1-shot fixed and resampled) -> finetune -> analyze -> report: the ids come
    back exactly as given from every reader, and hidden.h5 keeps them as UTF-8 strings."""
    from analyses.compare import shared_rows, summarize
    from analyses.run import run_analysis
    from figures.collect import collect, question_texts
    from figures.map_section import _hover

    run = tmp_path / "run"
    quiet = ["--no-progress"]
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(run),
                "--task",
                str(string_id_task),
                "--model",
                str(tiny_model_dir),
                "--subjects",
                "all",
                "--per-subject",
                "8",
                "--demo-pool",
                "2",
                "--train-per-subject",
                "4",
                "--shots",
                "0,1",
                "--demos",
                "fixed,resampled",
                "--batch-size",
                "8",
                *quiet,
            ]
        )
        == 0
    )
    assert cli.main(["finetune", str(run), "--rank", "4", "--epochs", "1", "--batch-size", "6", *quiet]) == 0
    _, items = tasks.load_items(tasks.load_task(string_id_task))
    given = {item.id: item for item in items}

    ex = landscape.examples(run)
    assert ex.ids.dtype.kind == "U" and all(type(i) is str for i in ex.ids.tolist())
    assert set(ex.ids.tolist()) <= set(string_ids(60)) and len(set(ex.ids.tolist())) == len(ex) == 24 + 12
    assert [given[i].group for i in ex.ids.tolist()] == ex.first_group.tolist()  # each row is the question it names
    assert [given[i].answer for i in ex.ids.tolist()] == ex.answers.tolist()
    layer = landscape.load_layer(run, "sft", -1)
    assert layer.ids.tolist() == ex.ids.tolist()
    resampled = names.icl_condition(1, "resampled")
    with h5py.File(run / "hidden.h5") as f:
        assert h5py.check_string_dtype(f["examples/id"].dtype) is not None  # UTF-8 strings, not int64
        parts = store.hidden.read_partition(f)
        pool = {value: [] for value in set(parts["demos"][1].tolist())}
        for i, value in zip(*parts["demos"], strict=True):
            pool[value].append(i)
        assert set(parts["train"][0].tolist()) == set(ex.ids[ex.splits == "train"].tolist())
        fixed = store.hidden.condition_attrs(store.hidden.get_condition(f, "1shot"))["demo_ids"]
        assert fixed == {value: ids[:1] for value, ids in pool.items()}
        drawn = store.hidden.read_demo_ids(f, resampled)
        assert drawn.shape == (len(ex), 1) and all(drawn[r, 0] in pool[v] for r, v in enumerate(ex.first_group))
        assert store.hidden.read_demo_ids(f, "0shot").shape == (len(ex), 0)
        edl = store.edl.read_edl(f, "sft")[0]
        assert edl["id"].tolist() == ex.ids[edl["rows"]].tolist()

    run_analysis(
        run, replace(SMALL, id_estimators=False, null_draws=0, similarity=False, readouts=False), progress=False
    )
    summary = summarize(run, "strings", n_boot=20)
    assert summary.ids.tolist() == ex.ids.tolist() and shared_rows(summary, summary) == ""
    assert cli.main(["report", str(run), "--map-method", "pca", "--png", "no", *quiet]) == 0
    report = collect(run)
    texts = question_texts(report)
    assert texts == [" ".join(given[i].question.split()) for i in ex.ids.tolist()]  # the questions found by id
    hover = _hover(report, texts)
    shown = next(r for r, i in enumerate(ex.ids[report.eval_rows].tolist()) if "<" in i)
    assert f"id {html.escape(ex.ids[report.eval_rows][shown])} ·" in hover[shown]  # the id, escaped


def test_runs_with_ids_of_either_kind_share_no_rows():
    ints = SimpleNamespace(label="a", info={}, ids=np.array([0, 1]), splits=np.array(["eval"] * 2))
    texts = SimpleNamespace(label="b", info={}, ids=np.array(["0", "1"]), splits=np.array(["eval"] * 2))
    from analyses.compare import shared_rows

    assert "different questions" in shared_rows(ints, texts) and shared_rows(texts, texts) == ""


def test_integer_ids_are_stored_as_int64_as_ever(tmp_path):
    examples = store.hidden.Examples(
        ids=tasks.id_array([3, 7]),
        answers=np.array([0, 1]),
        splits=np.array(["eval"] * 2),
        groups={"g": np.array(["a", "b"])},
    )
    with h5py.File(tmp_path / "h.h5", "w") as f:
        store.hidden.write_header(f, {}, examples, {"train": (tasks.id_array([]), np.array([], dtype=str))})
    with h5py.File(tmp_path / "h.h5") as f:
        assert f["examples/id"].dtype == np.int64 and f["partition/train/id"].dtype == np.int64
        assert store.hidden.read_examples(f).ids.tolist() == [3, 7]


@pytest.mark.parametrize(
    "case,key,needles",
    [
        ("duplicate", "00001", ["row 5", "duplicate id '00001' (also row 1)"]),
        ("empty", "", ["row 5", "id field 'key' is empty"]),
        ("blank", "   ", ["row 5", "id field 'key' is empty"]),
    ],
)
def test_a_duplicate_or_empty_string_id_is_one_line(case, key, needles, tmp_path, capsys, tiny_model_dir):
    task_file = write_string_id_task(tmp_path / "task")
    csv = task_file.parent / "questions.csv"
    lines = csv.read_text().splitlines()
    lines[6] = f'"{key}"' + lines[6][lines[6].index(",", lines[6].index('"', 1)) :]
    csv.write_text("\n".join(lines) + "\n")
    fails_in_one_line(
        ["extract", "--run", tmp_path / "run", "--task", task_file, "--model", tiny_model_dir, "--no-progress"],
        capsys,
        "questions.csv",
        *needles,
    )
    assert not (tmp_path / "run" / "hidden.h5").exists()
