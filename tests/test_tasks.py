"""Tasks as data files: the built-in MMLU task reproduces the suite's MMLU prompts exactly, and every
kind of bad task file ends in one line naming the file, the row or key, and what is wrong."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from extract import data, demos, icl
from landscape import cli, tasks

REFERENCE = Path(__file__).parent / "data" / "mmlu_prompts_before_tasks.json"


def _digests(spec: str, per: int, train: int, pool: int, seed: int) -> dict:
    """sha256 of the partition and of every condition's prompts (prefix, question) and demo plan."""
    task, items = tasks.load_items(tasks.load_task("mmlu"))
    by_id = {item.id: item for item in items}
    partition = data.make_partition(items, data.select_values(items, spec), demo_pool=pool, per_subject=per,
                                    train_per_subject=train, seed=seed)
    examples = icl.run_examples(task, partition, by_id)
    digest = hashlib.sha256()
    for array in (examples.ids, examples.answers):
        digest.update(np.asarray(array).tobytes())
    digest.update("\n".join(examples.first_group).encode())
    digest.update("\n".join(examples.splits).encode())
    digest.update(json.dumps(partition.demos, sort_keys=True).encode())
    out = {"partition": digest.hexdigest(), "n": len(examples)}
    for k in (0, 5):
        for sampling in demos.SAMPLINGS:
            if k == 0 and sampling not in demos.ZERO_SHOT_SAMPLINGS:
                continue
            plan = demos.plan_demos(examples.ids, examples.first_group, partition.demos, k=k, sampling=sampling, seed=seed)
            prefix = icl._prefix_texts(task, plan, by_id, examples)
            digest = hashlib.sha256()
            for row in range(len(examples)):
                digest.update(prefix(row).encode() + b"\x00")
                digest.update(tasks.render_question(task, by_id[int(examples.ids[row])]).encode() + b"\x01")
            digest.update(plan.demo_ids.tobytes())
            digest.update(plan.demo_sets.tobytes())
            out[demos.condition_name(k, sampling)] = digest.hexdigest()
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
