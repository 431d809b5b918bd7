"""Tasks as data files: the built-in MMLU task reproduces the suite's MMLU prompts exactly, and every
kind of bad task file ends in one line naming the file, the row or key, and what is wrong."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from extract import data, demos, icl
from landscape import cli, names, tasks
from tests.helpers import ARITH_YAML, EXAM_YAML, fails_in_one_line, write_arith, write_exam

REFERENCE = Path(__file__).parent / "data" / "mmlu_prompts_before_tasks.json"


def _digests(spec: str, per: int, train: int, pool: int, seed: int) -> dict:
    """sha256 of the partition and of every condition's prompts (prefix, question) and demo plan."""
    task, items = tasks.load_items(tasks.load_task("mmlu"))
    by_id = {item.id: item for item in items}
    partition = data.make_partition(
        items, data.select_values(items, spec), demo_pool=pool, per_subject=per, train_per_subject=train, seed=seed
    )
    examples = icl.run_examples(task, partition, by_id)
    digest = hashlib.sha256()
    for array in (examples.ids, examples.answers):
        digest.update(np.asarray(array).tobytes())
    digest.update("\n".join(examples.first_group).encode())
    digest.update("\n".join(examples.splits).encode())
    digest.update(json.dumps(partition.demos, sort_keys=True).encode())
    out = {"partition": digest.hexdigest(), "n": len(examples)}
    for k in (0, 5):
        for sampling in names.SAMPLINGS:
            if k == 0 and sampling not in demos.ZERO_SHOT_SAMPLINGS:
                continue
            plan = demos.plan_demos(
                examples.ids, examples.first_group, partition.demos, k=k, sampling=sampling, seed=seed
            )
            prefix = icl._prefix_texts(task, plan, by_id, examples)
            digest = hashlib.sha256()
            for row in range(len(examples)):
                digest.update(prefix(row).encode() + b"\x00")
                digest.update(tasks.render_question(task, by_id[int(examples.ids[row])]).encode() + b"\x01")
            digest.update(plan.demo_ids.tobytes())
            digest.update(plan.demo_sets.tobytes())
            out[names.icl_condition(k, sampling)] = digest.hexdigest()
    return out


@pytest.mark.parametrize("key", list(json.loads(REFERENCE.read_text())))
def test_builtin_mmlu_reproduces_the_prompts_and_partitions_from_before_tasks(key):
    """Digests recorded with the code before tasks were data (commit 6477c60): same partition,
    same text of every prompt of every demo sampling, same demo plans; so the same states."""
    spec, per, train, pool, seed = key.split("|")
    assert _digests(spec, int(per), int(train), int(pool), int(seed)) == json.loads(REFERENCE.read_text())[key]


def test_tasks_command_lists_the_builtins(capsys):
    assert cli.main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "mmlu " in out and "14042" in out and "Your own task" in out


# ---------------------------------------------------------------- your own task, end to end


def test_task_file_rows_and_prompts(tmp_path):
    task, items = tasks.load_items(tasks.load_task(write_arith(tmp_path)))
    assert task.n_choices == 3 and task.letters == ("A", "B", "C") and task.groups == ("op", "size")
    first = items[0]
    assert first.id == 1000 and first.groups[0] == "addition"
    assert tasks.render_question(task, first).startswith(f"What is {first.fields['a']} + {first.fields['b']}?\nA. ")
    assert tasks.render_question(task, first).endswith("C. " + first.choices[2] + "\nAnswer:")
    assert tasks.render_prefix(task, first, []) == "The following are questions about addition.\n\n"
    exam, rows = tasks.load_items(tasks.load_task(write_exam(tmp_path)))
    assert exam.n_choices == 5 and all(
        r.choices[r.answer] == json.loads((tmp_path / "exam.jsonl").read_text().splitlines()[i])["correct"]
        for i, r in enumerate(rows)
    )


@pytest.mark.parametrize("writer,groups,k", [(write_arith, ["op", "size"], 3), (write_exam, ["area"], 5)])
def test_your_own_task_end_to_end(writer, groups, k, tmp_path, tiny_model_dir):
    """extract -> finetune -> analyze -> report on a task file, every grouping through to the report."""
    import csv

    import h5py

    from landscape import store

    task_file = writer(tmp_path / "task")
    run = tmp_path / "run"
    common = ["--no-progress"]
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(run),
                "--task",
                str(task_file),
                "--model",
                str(tiny_model_dir),
                "--subjects",
                "all",
                "--per-subject",
                "12",
                "--demo-pool",
                "2",
                "--train-per-subject",
                "6",
                "--shots",
                "0,1",
                "--batch-size",
                "4",
                *common,
            ]
        )
        == 0
    )
    assert cli.main(["finetune", str(run), "--rank", "4", "--epochs", "1", "--batch-size", "4", *common]) == 0
    assert (
        cli.main(
            [
                "analyze",
                str(run),
                "--maxk",
                "10",
                "--density-k",
                "5",
                "--overlap-k",
                "5",
                "--tree-min-size",
                "2",
                *common,
            ]
        )
        == 0
    )
    with h5py.File(run / "hidden.h5") as f:
        attrs = store.hidden.read_attrs(f)
        assert attrs["task_text"] == task_file.read_text() and attrs["groups"] == groups
        assert f["conditions/0shot/logits"].shape == (36, k) and store.hidden.read_examples(f).group_names == groups
        edl = store.edl.read_edl(f, "sft")[1]
        assert edl["uniform_bits"] == pytest.approx(
            6 * len(set(store.hidden.read_examples(f).first_group)) * np.log2(k)
        )
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for grouping in [*groups, "answer"]:
        assert any(r["metric"] == "ari" and r["grouping"] == grouping and r["condition"] == "sft" for r in rows)
    assert cli.main(["report", str(run), "--map-method", "pca", "--png", "no", *common]) == 0
    page = (run / "report" / "index.html").read_text()
    for grouping in groups:
        assert f"ARI ~ {grouping}" in page and f"label overlap: {grouping}" in page
    # the task is read from the run: a changed task file is refused on re-extraction, not used
    task_file.write_text(task_file.read_text().replace("question:", "description: changed\nquestion:"))
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(run),
                "--task",
                str(task_file),
                "--model",
                str(tiny_model_dir),
                "--subjects",
                "all",
                "--per-subject",
                "12",
                "--demo-pool",
                "2",
                "--train-per-subject",
                "6",
                "--shots",
                "0,1",
                "--batch-size",
                "4",
                *common,
            ]
        )
        == 1
    )


def test_text_scoring_equals_the_summed_log_probs_of_each_continuation(tiny, tmp_path):
    """score: text: the stored score of a choice is the sum of its tokens' log-probs after the prompt."""
    import torch

    from extract import forward

    model, tok = tiny
    prompts = [tok.encode("the star is a"), tok.encode("which bone of the cell")]
    conts = [[tok.encode(" planet", add_special_tokens=False), tok.encode(" god temple", add_special_tokens=False)]] * 2
    out = forward.last_token_states(model, prompts, prefix=None, letter_ids=None, continuations=conts)
    for b, prompt in enumerate(prompts):
        for j, cont in enumerate(conts[b]):
            ids = torch.tensor([prompt + cont])
            with torch.no_grad():
                log_p = torch.log_softmax(model(ids).logits.double(), -1)[0]
            expected = sum(float(log_p[len(prompt) - 1 + t, cont[t]]) for t in range(len(cont)))
            assert float(out.letter_logits[b, j]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
        alone = forward.last_token_states(model, [prompt], prefix=None, letter_ids=[5, 6])
        torch.testing.assert_close(out.hidden[:, b], alone.hidden[:, 0], rtol=1e-5, atol=1e-5)
    cache = forward.encode_prefix(model, prompts[0][:2])
    cached = forward.last_token_states(model, [prompts[0][2:]], prefix=cache, letter_ids=None, continuations=conts[:1])
    torch.testing.assert_close(cached.letter_logits[0], out.letter_logits[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("schedule", ["online", "blockwise"])
def test_text_scored_task_runs_and_fine_tunes(tmp_path, tiny_model_dir, schedule):
    import h5py

    from landscape import store

    folder = tmp_path / "task"
    write_exam(folder)
    (folder / "exam.yaml").write_text(EXAM_YAML + "score: text\n")
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(run),
                "--task",
                str(folder / "exam.yaml"),
                "--model",
                str(tiny_model_dir),
                "--subjects",
                "all",
                "--per-subject",
                "12",
                "--demo-pool",
                "2",
                "--train-per-subject",
                "6",
                "--shots",
                "0,1",
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "finetune",
                str(run),
                "--rank",
                "4",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--schedule",
                schedule,
                "--no-progress",
            ]
        )
        == 0
    )
    with h5py.File(run / "hidden.h5") as f:
        attrs = store.hidden.condition_attrs(store.hidden.get_condition(f, "0shot"))
        logits, lse, _ = store.hidden.read_outputs(f, "0shot")
        assert attrs["choice_scoring"] == "text" and 0 <= attrs["accuracy_norm"] <= 1
        assert (logits < 0).all() and (lse == 0).all()  # summed log-probabilities
        assert np.isfinite(store.edl.read_edl(f, "sft")[0]["online_bits"]).all()


# ---------------------------------------------------------------- bad task files


BAD = {
    "missing key": (lambda y: y.replace("answer: gold\n", ""), ["arith.yaml", "missing key 'answer'"]),
    "unknown field": (lambda y: y.replace("{sym}", "{symbol}"), ["key 'question'", "'symbol'"]),
    "yaml syntax": (lambda y: y + "groups: [op\n", ["YAML syntax error"]),
    "unknown key": (lambda y: y + "colour: red\n", ["unknown key 'colour'"]),
    "too many choices": (lambda y: y.replace("[c1, c2, c3]", "[" + ", ".join(["c1"] * 27) + "]"), ["2 to 26"]),
    "one choice": (lambda y: y.replace("[c1, c2, c3]", "[c1]"), ["2 to 26"]),
    "bad answer_as": (lambda y: y.replace("answer_as: letter", "answer_as: number"), ["answer_as"]),
    "quoted control": (lambda y: y + 'control: "false"\n', ["control must be true or false", "'false'"]),
    "missing source": (lambda y: y.replace("questions.csv", "nothing.csv"), ["nothing.csv", "does not exist"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_task_file_is_one_line_and_writes_nothing(case, tmp_path, capsys, tiny_model_dir):
    task_file = write_arith(tmp_path / "task")
    edit, needles = BAD[case]
    task_file.write_text(edit(ARITH_YAML))
    run = tmp_path / "run"
    fails_in_one_line(
        ["extract", "--run", run, "--task", task_file, "--model", tiny_model_dir, "--no-progress"], capsys, *needles
    )
    assert not (run / "hidden.h5").exists()


def _edit_rows(folder: Path, edit) -> None:
    import pandas as pd

    frame = pd.read_csv(folder / "questions.csv", dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(folder / "questions.csv", index=False)


BAD_ROWS = {
    "answer out of range": (
        lambda f: f.__setitem__("gold", ["D", *f["gold"][1:]]),
        ["row 0", "'D' is not one of the letters A..C"],
    ),
    "duplicate ids": (lambda f: f.__setitem__("qid", ["1000", *f["qid"][:-1]]), ["row 1", "duplicate id 1000"]),
    "empty group": (
        lambda f: f.__setitem__("size", [""] * 3 + list(f["size"][3:])),
        ["row 0", "group field 'size' is empty"],
    ),
    "empty id": (lambda f: f.__setitem__("qid", ["", *f["qid"][1:]]), ["row 0", "id field 'qid' is empty"]),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_rows_name_the_row(case, tmp_path, capsys, tiny_model_dir):
    task_file = write_arith(tmp_path / "task")
    edit, needles = BAD_ROWS[case]
    _edit_rows(task_file.parent, edit)
    fails_in_one_line(
        ["extract", "--run", tmp_path / "run", "--task", task_file, "--model", tiny_model_dir, "--no-progress"],
        capsys,
        "questions.csv",
        *needles,
    )
    assert not (tmp_path / "run" / "hidden.h5").exists()


def test_other_bad_sources(tmp_path, capsys, tiny_model_dir):
    task_file = write_exam(tmp_path / "task")
    lines = (tmp_path / "task" / "exam.jsonl").read_text().splitlines()
    row = json.loads(lines[3])
    row["options"] = row["options"][:4]  # 4 choices where the others have 5
    (tmp_path / "task" / "exam.jsonl").write_text("\n".join([*lines[:3], json.dumps(row), *lines[4:]]) + "\n")
    argv = ["extract", "--run", tmp_path / "run", "--task", task_file, "--model", tiny_model_dir, "--no-progress"]
    fails_in_one_line(argv, capsys, "row 3", "4 choices, but earlier rows have 5")
    row["options"], row["correct"] = json.loads(lines[3])["options"], "not a choice"
    (tmp_path / "task" / "exam.jsonl").write_text("\n".join([*lines[:3], json.dumps(row), *lines[4:]]) + "\n")
    fails_in_one_line(argv, capsys, "row 3", "is not one of the choices")
    (tmp_path / "task" / "exam.jsonl").write_text("")
    fails_in_one_line(argv, capsys, "exam.jsonl")
    (tmp_path / "task" / "exam.jsonl").write_text("\n".join(lines) + "\n")
    # a value with too few rows for the demos asked
    fails_in_one_line(
        [*argv, "--subjects", "all", "--demo-pool", "30", "--shots", "0"], capsys, "not more than the demo pool"
    )
    fails_in_one_line(
        ["extract", "--run", tmp_path / "run", "--task", "no-such-task", "--model", tiny_model_dir],
        capsys,
        "unknown task 'no-such-task'",
    )
    assert not (tmp_path / "run" / "hidden.h5").exists()


def test_parquet_source_with_a_list_field(tmp_path):
    import pandas as pd

    folder = tmp_path / "task"
    write_exam(folder)
    pd.read_json(folder / "exam.jsonl", lines=True).to_parquet(folder / "exam.parquet")
    (folder / "exam.yaml").write_text(EXAM_YAML.replace("exam.jsonl", "exam.parquet"))
    task, items = tasks.load_items(tasks.load_task(folder / "exam.yaml"))
    _, from_jsonl = tasks.load_items(tasks.load_task(write_exam(tmp_path / "other")))
    assert task.n_choices == 5 and items == from_jsonl


def test_a_control_task_gets_its_report_section(tmp_path, tiny_model_dir):
    """A task file marked `control: true`: the report asks whether the suite sees a real effect,
    with held-out accuracies and the EDL totals of true and random labels."""
    task_file = write_arith(tmp_path / "task")
    task_file.write_text(ARITH_YAML + "control: true\n")
    run = tmp_path / "run"
    flags = ["--rank", "4", "--epochs", "1", "--batch-size", "4", "--no-progress"]
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(run),
                "--task",
                str(task_file),
                "--model",
                str(tiny_model_dir),
                "--subjects",
                "all",
                "--per-subject",
                "12",
                "--demo-pool",
                "2",
                "--train-per-subject",
                "6",
                "--shots",
                "0",
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    assert cli.main(["finetune", str(run), *flags]) == 0
    assert cli.main(["finetune", str(run), "--labels", "random", *flags]) == 0
    assert (
        cli.main(
            [
                "analyze",
                str(run),
                "--maxk",
                "10",
                "--density-k",
                "5",
                "--overlap-k",
                "5",
                "--tree-min-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert cli.main(["report", str(run), "--map-method", "pca", "--png", "no", "--no-progress"]) == 0
    page = (run / "report" / "index.html").read_text()
    assert "Does the suite detect a real effect?" in page and "gain beyond format" in page
    assert (run / "report" / "figures" / "control_edl.html").is_file()
    assert (run / "report" / "figures" / "control_answer.html").is_file()


def test_transforms_plant_the_truth_and_are_seeded():
    import pandas as pd

    from landscape.tasks.transforms import apply_transform

    frame = pd.DataFrame({"subject": ["a", "b", "c", "a", "d"] * 20, "__row__": range(100)})
    drawn = apply_transform(frame, {"name": "label_choices", "field": "subject", "k": 3, "seed": 0}, "t")
    for own, choices, answer in zip(drawn["subject"], drawn["label_choices"], drawn["label_answer"], strict=True):
        assert len(choices) == 3 == len(set(choices)) and choices[answer] == own
    assert set(drawn["label_answer"]) == {0, 1, 2}  # the right one at every position
    fixed = apply_transform(frame, {"name": "label_choices", "field": "subject", "all": True}, "t")
    assert all(c == ["a", "b", "c", "d"] for c in fixed["label_choices"])
    assert [c[i] for c, i in zip(fixed["label_choices"], fixed["label_answer"], strict=True)] == list(frame["subject"])
    pools = apply_transform(frame, {"name": "buckets", "field": "pool", "n": 4, "seed": 0}, "t")
    again = apply_transform(frame, {"name": "buckets", "field": "pool", "n": 4, "seed": 0}, "t")
    assert list(pools["pool"]) == list(again["pool"]) and set(pools["pool"]) == {"pool-1", "pool-2", "pool-3", "pool-4"}
    task, items = tasks.load_items(tasks.load_task("mmlu-topic"))
    assert task.groups == ("pool", "subject") and all(i.choices[i.answer] == i.groups[1] for i in items)
